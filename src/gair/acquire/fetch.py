"""Read one window of a scene's COG assets over HTTP, mask clouds with SCL, write the tile.

Only the blocks under a window are read: GDAL's ``/vsicurl/`` sends HTTP range requests,
so a 96 x 96 px window of a 10980 x 10980 px band costs a few of its internal tiles plus
the header, not the file.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from gair.acquire.stac import SCL, Scene, SceneError
from gair.io.l2a import L2A_BANDS, NODATA_DN

logger = logging.getLogger(__name__)

PIXEL_M = 10.0
"""The tile grid: GAIR reads Sentinel-2 at 10 m."""


def gdal_http_options(max_retry: int, retry_delay_s: float, timeout_s: float) -> dict:
    """GDAL settings for reading COGs over HTTP: no directory listings, range requests
    merged, 429/5xx retried, and a block cache shared by the windows of one process."""
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no listing of the bucket per open
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF",
        "GDAL_HTTP_MULTIRANGE": "YES",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MAX_RETRY": str(max_retry),
        "GDAL_HTTP_RETRY_DELAY": str(retry_delay_s),
        "GDAL_HTTP_TIMEOUT": str(math.ceil(timeout_s)),
        "GDAL_HTTP_CONNECTTIMEOUT": str(math.ceil(timeout_s)),
        "VSI_CACHE": "TRUE",
        "VSI_CACHE_SIZE": str(32 << 20),
    }


@cache
def _gdal_library() -> ctypes.CDLL | None:
    """The GDAL library rasterio loaded (its wheels bundle one), or None if not found."""
    package = Path(rasterio.__file__).parent
    for pattern in ("../rasterio.libs/libgdal*", ".dylibs/libgdal*", "../rasterio.libs/gdal*.dll"):
        for path in sorted(package.glob(pattern)):
            try:
                return ctypes.CDLL(str(path.resolve()))
            except OSError:
                continue
    try:
        return ctypes.CDLL("libgdal.so")  # rasterio built against a system GDAL
    except OSError:
        return None


def clear_gdal_http_cache() -> None:
    """Forget what GDAL's ``/vsicurl/`` cached in this process, failures included: GDAL
    remembers a URL that answered 5xx after its retries as unreadable until the process
    ends, so a second run in one process (a notebook, a test) would not try it again."""
    library = _gdal_library()
    if library is None or not hasattr(library, "VSICurlClearCache"):
        logger.debug("GDAL's VSICurlClearCache not found; /vsicurl/ cache kept")
        return
    library.VSICurlClearCache()


def _block_bytes(src: rasterio.DatasetReader, window: Window) -> int:
    """Compressed bytes of the internal blocks of band 1 that ``window`` touches: what a
    range read of the window transfers, headers aside."""
    block_h, block_w = src.block_shapes[0]
    rows = range(max(0, int(window.row_off // block_h)),
                 min(math.ceil(src.height / block_h),
                     math.ceil((window.row_off + window.height) / block_h)))
    cols = range(max(0, int(window.col_off // block_w)),
                 min(math.ceil(src.width / block_w),
                     math.ceil((window.col_off + window.width) / block_w)))
    total = 0
    for row in rows:
        for col in cols:
            size = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1)
            total += int(size or 0)
    return total


def read_asset_window(href: str, epsg: int, transform: Affine, size_px: int
                      ) -> tuple[np.ndarray, int]:
    """One band of a scene on the tile grid ``transform`` (size_px x size_px, 10 m): coarser
    bands by nearest neighbour (a 20 m pixel covers 2 x 2 tile pixels exactly when the grids
    align, as Sentinel-2's do), 0 outside the asset. Returns the pixels and the block bytes
    read."""
    left, top = transform.c, transform.f
    right, bottom = left + size_px * transform.a, top + size_px * transform.e
    with rasterio.open(href) as src:
        if src.crs is None or src.crs.to_epsg() != epsg:
            raise SceneError(f"{href}: CRS {src.crs} is not the item's EPSG:{epsg}")
        window = from_bounds(left, bottom, right, top, transform=src.transform)
        inside = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= src.width + 1e-6
                  and window.row_off + window.height <= src.height + 1e-6)
        data = src.read(1, window=window, out_shape=(size_px, size_px),
                        resampling=Resampling.nearest, boundless=not inside,
                        fill_value=NODATA_DN)
        return data, _block_bytes(src, window)


def masked_pixels(scl: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """Pixels whose scene class is one of ``classes`` (clouds, shadows, no data ...)."""
    return np.isin(scl, np.asarray(list(classes), dtype=scl.dtype))


def read_scene_window(scene: Scene, transform: Affine, size_px: int,
                      bands: Sequence[str] = L2A_BANDS) -> tuple[np.ndarray, int]:
    """The L2A bands of a scene on the tile grid, (len(bands), size, size) uint16, and the
    block bytes read."""
    out = np.zeros((len(bands), size_px, size_px), dtype=np.uint16)
    total = 0
    for index, band in enumerate(bands):
        out[index], read = read_asset_window(scene.hrefs[band], scene.epsg, transform, size_px)
        total += read
    return out, total


def read_scl_window(scene: Scene, transform: Affine, size_px: int) -> tuple[np.ndarray, int]:
    """The scene classification on the tile grid (0, no data, outside the asset)."""
    return read_asset_window(scene.hrefs[SCL], scene.epsg, transform, size_px)
