"""Time and size of generating the sample world; prints one JSON line.

Usage: .venv/bin/python benchmarks/sample_world.py [parameters_sample_world.yml]
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import yaml

from gair.io.directories import replace_directory
from gair.sample_world import (
    SampleWorldConfig,
    build_world,
    write_sentinel2,
    write_streetscapes,
    write_truth,
)


def main(params_path: Path) -> dict[str, float]:
    config = SampleWorldConfig(**yaml.safe_load(params_path.read_text())["sample_world"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        world = build_world(config)
        timings = {"layout_s": time.perf_counter() - start}
        for name, write in (("sentinel2", write_sentinel2), ("streetscapes", write_streetscapes),
                            ("truth", write_truth)):
            begin = time.perf_counter()
            replace_directory(root / name, partial(write, world))
            timings[f"{name}_s"] = time.perf_counter() - begin
        total = time.perf_counter() - start
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {
        "benchmark": "sample_world",
        "tiles": len(world.tiles),
        "street_views": len(world.street_views),
        "total_s": round(total, 2),
        **{k: round(v, 2) for k, v in timings.items()},
        "megabytes": round(size / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[1] / "conf/base/parameters_sample_world.yml"
    print(json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)))
