"""Street-view image files, read the same way everywhere: size bounded before decoding,
EXIF orientation applied, every failure a one-line reason.

A header can declare any size (a 2 KB JPEG can claim 30000 x 30000 px): the declared
size is checked against a limit before a pixel is decoded, so memory stays bounded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageOps

MAX_IMAGE_PIXELS = 100_000_000
"""Default limit on the pixels an image may declare: a 14000 x 7000 equirectangular
panorama (the largest street views) fits; decoding one takes about 300 MB. Pillow's own
bomb check (about 179 MP) still applies above it."""


class ImageRejected(ValueError):
    """An image that cannot be used, with the reason that goes to the rejects table."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@contextmanager
def open_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Iterator[Image.Image]:
    """The image at ``path`` with only its header read, its declared size within
    ``max_pixels`` (else :class:`ImageRejected`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageRejected("image too large", str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected("unreadable image", str(error) or type(error).__name__) from error
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(
                "image too large",
                f"declares {width} x {height} px, more than the limit of {max_pixels:,}",
            )
        yield image


def load_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS,
             short_side: int | None = None) -> Image.Image:
    """The image at ``path`` decoded as upright RGB (EXIF orientation applied, so a portrait
    view stays portrait). With ``short_side``, JPEGs decode at the smallest DCT scale (1/2,
    1/4, 1/8) that still covers it: far cheaper for 2048-px views."""
    with open_image(path, max_pixels) as image:
        try:
            if short_side:
                scale = short_side / min(image.size)
                if scale < 1.0:
                    image.draft("RGB", (max(1, int(image.size[0] * scale)),
                                        max(1, int(image.size[1] * scale))))
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageRejected("unreadable image", str(error) or type(error).__name__) from error
