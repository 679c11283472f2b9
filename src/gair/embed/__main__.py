"""``python -m gair.embed <what> --checkpoint C --input I --output O.parquet``

``locations``: a CSV/Parquet table with ``lat``, ``lon`` columns (degrees, in that order);
``rs-points``: the same, plus ``--sentinel2-dir`` (RS at the points and their locations);
``rs-patches``: GeoTIFF files or a folder of them (``--band-order``, ``--boa-add-offset``);
``street-views``: image files or a folder of them;
``convert``: write the checkpoint (this project's, or the official GAIR release) as a
self-describing folder without pickle (``--output FOLDER``; ``--trained-on`` for its card).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from gair.contract import ContractError
from gair.embed.api import (
    embed_locations,
    embed_rs_at_points,
    embed_rs_patches,
    embed_street_views,
    write_geoparquet,
)
from gair.embed.model import load_model, save_pretrained
from gair.io.sentinel2 import L2A_BANDS
from gair.model.weights import WeightsError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _files(inputs: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    files = []
    for path in inputs:
        files += sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes) \
            if path.is_dir() else [path]
    if not files:
        raise ContractError(f"no {'/'.join(suffixes)} files in {[str(p) for p in inputs]}")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gair.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["locations", "rs-points", "rs-patches", "street-views",
                                         "convert"])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a gair checkpoint or folder, or the official GAIR checkpoint")
    parser.add_argument("--input", type=Path, nargs="+")
    parser.add_argument("--output", type=Path, required=True,
                        help="a .parquet file (convert: a new folder)")
    parser.add_argument("--trained-on", help="convert: what the model was trained on")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sentinel2-dir", type=Path, help="tiles for rs-points")
    parser.add_argument("--band-order", nargs="+", default=list(L2A_BANDS),
                        help="bands of stacked GeoTIFFs, in file order")
    parser.add_argument("--processing-baseline", default="auto", help="rs-points tiles")
    parser.add_argument("--boa-add-offset", type=int, default=-1000,
                        help="rs-patches: -1000 for processing baseline >= 04.00, else 0")
    args = parser.parse_args(argv)
    if args.what != "convert" and not args.input:
        parser.error(f"{args.what} needs --input")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = load_model(args.checkpoint, args.device)
        if args.what == "convert":
            save_pretrained(model, args.output, trained_on=args.trained_on)
            logging.getLogger(__name__).info("%s -> %s", args.checkpoint, args.output)
            return 0
        if args.what == "locations":
            result = embed_locations(model, _table(args.input[0]))
        elif args.what == "rs-points":
            if args.sentinel2_dir is None:
                parser.error("rs-points needs --sentinel2-dir")
            result = embed_rs_at_points(model, _table(args.input[0]), args.sentinel2_dir,
                                        band_order=args.band_order,
                                        processing_baseline=args.processing_baseline,
                                        batch_size=args.batch_size)
        elif args.what == "rs-patches":
            result = embed_rs_patches(model, _files(args.input, (".tif", ".tiff")),
                                      args.band_order, args.boa_add_offset, args.batch_size)
        else:
            result = embed_street_views(model, _files(args.input, IMAGE_SUFFIXES),
                                        args.batch_size)
    except (ContractError, WeightsError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)  # noqa: T201
        return 2
    write_geoparquet(result, args.output)
    logging.getLogger(__name__).info("%d rows -> %s", len(result), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
