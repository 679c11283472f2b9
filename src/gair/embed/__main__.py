"""``python -m gair.embed <what> --checkpoint C --input I --output O.parquet``

``locations``: a CSV/Parquet table with ``lat``, ``lon`` columns (degrees), read strictly
(a header line, every row complete, values in range; the first bad row is named);
``rs-points``: the same, plus ``--sentinel2-dir`` (RS at the points and their locations);
``rs-patches``: GeoTIFF files or a folder of them (``--band-order``, ``--boa-add-offset``);
``street-views``: image files or a folder of them (``--max-image-pixels``);
``convert``: write the checkpoint (this project's, or the official GAIR release) as a
self-describing folder without pickle (``--output FOLDER``; ``--trained-on`` for its card).

rs-patches, street-views and rs-points (its tiles) skip a file they cannot use, with a
warning, and list it in ``O.rejects.csv`` beside the output. Bad input stops with one line ``error: <file>:
<reason>`` and exit status 2 (also when no file at all can be used).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from gair.contract import ContractError
from gair.embed.api import (
    embed_locations,
    embed_rs_at_points,
    embed_rs_patches_with_rejects,
    embed_street_views_with_rejects,
    read_location_table,
    write_geoparquet,
)
from gair.embed.model import FrozenGAIR, load_model, save_pretrained
from gair.io.images import MAX_IMAGE_PIXELS
from gair.io.l2a import L2A_BANDS
from gair.io.rejects import InputConfigurationError, ReadResult
from gair.io.sentinel2 import read_tile_index
from gair.model.weights import WeightsError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TILE_SUFFIXES = (".tif", ".tiff")


def _files(inputs: list[Path], suffixes: tuple[str, ...]) -> list[Path]:
    files = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.suffix.lower() in suffixes and p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise InputConfigurationError(f"{path}: no such file or folder")
    if not files:
        raise InputConfigurationError(f"{', '.join(map(str, inputs))}: no "
                                      f"{'/'.join(suffixes)} files")
    return files


def rejects_path(output: Path) -> Path:
    """Where the files a run could not use are listed: ``<output stem>.rejects.csv``."""
    return output.with_name(f"{output.stem}.rejects.csv")


def _embed_files(args: argparse.Namespace, model: FrozenGAIR) -> pd.DataFrame:
    if args.what == "rs-patches":
        result = embed_rs_patches_with_rejects(model, _files(args.input, TILE_SUFFIXES),
                                               args.band_order, args.boa_add_offset,
                                               args.batch_size)
    else:
        result = embed_street_views_with_rejects(model, _files(args.input, IMAGE_SUFFIXES),
                                                 args.batch_size, args.max_image_pixels)
    return _accepted(result, args.input, args.output)


def _accepted(result: ReadResult, inputs: list[Path], output: Path) -> pd.DataFrame:
    """What ``result`` accepted; what it rejected goes to the rejects file beside ``output``
    (a stale one from an earlier run is removed), and if nothing is left, an error."""
    listed = rejects_path(output)
    if result.rejects.empty:
        listed.unlink(missing_ok=True)
        return result.accepted
    listed.parent.mkdir(parents=True, exist_ok=True)
    result.rejects.to_csv(listed, index=False)
    logger.warning("%d of %d files rejected (listed in %s)", len(result.rejects), result.read,
                   listed)
    if result.accepted.empty:
        named = inputs[0] if len(inputs) == 1 else listed
        raise InputConfigurationError(f"{named}: none of the {result.read} files could be "
                                      f"used (reasons in {listed})")
    return result.accepted


def _run(args: argparse.Namespace) -> int:
    model = load_model(args.checkpoint, args.device)
    if args.what == "convert":
        save_pretrained(model, args.output, trained_on=args.trained_on)
        logger.info("%s -> %s", args.checkpoint, args.output)
        return 0
    if args.what == "locations":
        result = embed_locations(model, read_location_table(args.input[0]))
    elif args.what == "rs-points":
        points = read_location_table(args.input[0])
        index = read_tile_index(args.sentinel2_dir, band_order=args.band_order,
                                processing_baseline=args.processing_baseline, verify="header")
        tiles = _accepted(index, [args.sentinel2_dir], args.output)
        result = embed_rs_at_points(model, points, args.sentinel2_dir, tiles=tiles,
                                    batch_size=args.batch_size)
    else:
        result = _embed_files(args, model)
    write_geoparquet(result, args.output)
    logger.info("%d rows -> %s", len(result), args.output)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


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
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--sentinel2-dir", type=Path, help="tiles for rs-points")
    parser.add_argument("--band-order", nargs="+", default=list(L2A_BANDS),
                        help="bands of stacked GeoTIFFs, in file order")
    parser.add_argument("--processing-baseline", default="auto", help="rs-points tiles")
    parser.add_argument("--boa-add-offset", type=int, default=-1000,
                        help="rs-patches: -1000 for processing baseline >= 04.00, else 0")
    parser.add_argument("--max-image-pixels", type=_positive_int, default=MAX_IMAGE_PIXELS,
                        help="street-views: refuse images declaring more pixels (checked "
                             "before decoding)")
    args = parser.parse_args(argv)
    if args.what != "convert" and not args.input:
        parser.error(f"{args.what} needs --input")
    if args.what in ("locations", "rs-points") and len(args.input) > 1:
        parser.error(f"{args.what} reads one table: give one --input")
    if args.what == "rs-points" and args.sentinel2_dir is None:
        parser.error("rs-points needs --sentinel2-dir")
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f"--device {args.device}: {error}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is available")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _run(args)
    # Bad input, not bugs: each of these names its file; anything else keeps its traceback.
    except (ContractError, WeightsError, InputConfigurationError, FileExistsError) as error:
        message = str(error)
    except OSError as error:  # a file that cannot be opened, read or written
        message = f"{error.filename}: {error.strerror}" if error.filename else str(error)
    print(f"error: {message}", file=sys.stderr)  # noqa: T201
    return 2


if __name__ == "__main__":
    sys.exit(main())
