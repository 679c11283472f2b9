"""Multi-device entry point: ``python -m gair.training <spec.json>``.

Run it directly (Lightning starts one process per local device), under ``torchrun``, or
under a cluster scheduler on each node (set ``trainer.num_nodes``). The Kedro ``pretrain``
node writes the spec and launches this for more than one device, then waits.
"""

import json
import sys
from pathlib import Path

from gair.tracking import Tracking
from gair.training.run import run_pretraining


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m gair.training <spec.json>")
    spec = json.loads(Path(args[0]).read_text())
    # The Kedro node's tracking travels beside the spec (not part of it: see tracking.py).
    run_pretraining(spec, tracking=Tracking.from_spec(spec.pop("tracking", None)))


if __name__ == "__main__":
    main()
