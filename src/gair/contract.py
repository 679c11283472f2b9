"""The preprocessing contract: what a GAIR checkpoint expects of its inputs.

Band order, units and normalisation that live only in a training script are how features
silently come out wrong. Training writes one :class:`PreprocessingContract` into every
checkpoint (``checkpoint["gair_contract"]``, plain types, so ``weights_only=True`` loads
it); everything that uses a checkpoint reads it back and checks its inputs against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from gair.io.l2a import GAIR_BANDS, QUANTIFICATION_VALUE

CONTRACT_KEY = "gair_contract"
CONTRACT_VERSION = 2
"""2: RS normalisation and resampling stated (version 1 meant z-score and area/bilinear)."""

SV_MEAN = (135.47184384, 142.28621995, 145.12271992)
SV_STD = (59.19978436, 59.35279219, 72.02295734)
"""Street-view normalisation of the official code, on the 0-255 scale."""

OFFICIAL_BAND_MEAN = (1172.9397, 1378.0846, 1509.3327, 1750.0275, 2073.2758, 2207.3283,
                      2245.1629, 2284.6384, 2231.7283, 1899.1932)
OFFICIAL_BAND_STD = (706.6250, 720.1862, 783.1424, 707.1962, 714.2782, 748.1827, 852.3585,
                     762.0849, 690.0165, 669.9036)
"""The official GAIR band statistics (B02 ... B12 in GAIR_BANDS order, digital numbers of
its harmonized L2A tiles = reflectance x 10000)."""

RSNormalization = Literal["zscore", "official"]
Interpolation = Literal["area", "bilinear", "bicubic"]


class ContractError(ValueError):
    """An input contradicts the checkpoint's preprocessing contract."""


@dataclass(frozen=True)
class RSContract:
    """Sentinel-2 input: ``bands`` in this order, as harmonised L2A surface reflectance x
    10000 (uint16 digital numbers with the BOA offset of processing baseline >= 04.00
    removed: reflectance = value / 10000), 0 = nodata; ``patch_size_px`` pixels at
    ``ground_resolution_m``, resized to ``model_input_px`` with ``interpolation``.

    ``normalization``: ``zscore`` = (value - band_mean) / band_std, nodata set to 0 (the
    mean); ``official`` = the official GAIR code's: [mean - 2 std, mean + 2 std] mapped to
    [0, 255], clipped, truncated to uint8, divided by 255 (nodata is not masked).
    """

    band_mean: tuple[float, ...]
    band_std: tuple[float, ...]
    patch_size_px: int
    model_input_px: int
    bands: tuple[str, ...] = GAIR_BANDS
    units: str = "reflectance_x10000"
    boa_offset_removed: bool = True
    ground_resolution_m: float = 10.0
    nodata: int = 0
    normalization: RSNormalization = "zscore"
    interpolation: Interpolation = "area"

    def check(self, patches: np.ndarray, band_names: Sequence[str] | None = None,
              units: str | None = None) -> None:
        """Raise :class:`ContractError` if ``patches`` [N, bands, H, W] (or one patch
        [bands, H, W]) cannot be what this contract expects: another band count or order,
        a float array of reflectance in [0, 1] where x 10000 is expected, RGB."""
        expected = len(self.bands)
        shape = np.shape(patches)
        if len(shape) not in (3, 4):
            raise ContractError(f"RS input must be [bands, H, W] or [N, bands, H, W], "
                                f"got shape {shape}")
        count = shape[-3]
        if count != expected:
            hint = {3: " (an RGB image?)", 12: " (all 12 L2A bands? keep "
                    f"{', '.join(self.bands)})", 13: " (a 13-band L1C stack such as EuroSAT? "
                    f"keep {', '.join(self.bands)})"}.get(count, "")
            raise ContractError(f"RS input has {count} bands where {expected} are expected "
                                f"({', '.join(self.bands)}, in this order){hint}")
        if band_names is not None and tuple(band_names) != self.bands:
            raise ContractError(f"RS bands {list(band_names)} where {list(self.bands)} are "
                                "expected, in this order")
        if units is not None and units != self.units:
            raise ContractError(f"RS units {units!r} where {self.units!r} are expected")
        array = np.asarray(patches)
        if array.dtype.kind == "f":
            finite = array[np.isfinite(array)]
            if finite.size and finite.max() <= 2.0:
                raise ContractError(
                    f"RS values look like reflectance in [0, 1] (max {finite.max():.3f}); "
                    f"expected reflectance x {QUANTIFICATION_VALUE} ({self.units}): "
                    f"multiply by {QUANTIFICATION_VALUE}")
        elif array.dtype.kind not in "ui":
            raise ContractError(f"RS dtype {array.dtype} where uint16 (or float) is expected")


@dataclass(frozen=True)
class SVContract:
    """Street-view input: RGB on the 0-255 scale, resized to ``size_px`` square with
    ``interpolation`` (antialiased), z-scored with ``mean`` / ``std``."""

    size_px: int
    mean: tuple[float, ...] = SV_MEAN
    std: tuple[float, ...] = SV_STD
    channels: str = "RGB"
    value_scale: str = "0-255"
    interpolation: Interpolation = "bilinear"


@dataclass(frozen=True)
class LocationContract:
    """Locations: (lat, lon) in degrees, WGS 84, in that order, projected with Equal Earth
    scaled as GeoCLIP before the random Fourier features."""

    order: tuple[str, str] = ("lat", "lon")
    crs: str = "EPSG:4326"
    projection: str = "equal_earth_geoclip"

    @staticmethod
    def check(latlon: np.ndarray) -> None:
        """Refuse coordinates that cannot be (lat, lon): |lat| > 90 means (lon, lat) was
        given (or garbage), and non-finite values cannot be embedded."""
        array = np.asarray(latlon, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2:
            raise ContractError(f"locations must be [N, 2] (lat, lon), got shape {array.shape}")
        if not np.isfinite(array).all():
            bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
            raise ContractError(f"location {bad} is not finite: {array[bad].tolist()}")
        outside = np.abs(array[:, 0]) > 90
        if outside.any():
            bad = int(np.flatnonzero(outside)[0])
            raise ContractError(
                f"latitude outside [-90, 90] at row {bad} ({array[bad, 0]}): coordinates must "
                "be (lat, lon) in degrees; were (lon, lat) given?")
        if (np.abs(array[:, 1]) > 180).any():
            bad = int(np.flatnonzero(np.abs(array[:, 1]) > 180)[0])
            raise ContractError(f"longitude outside [-180, 180] at row {bad} ({array[bad, 1]})")


@dataclass(frozen=True)
class PreprocessingContract:
    """Everything a checkpoint expects of its inputs, as one typed object."""

    rs: RSContract
    sv: SVContract
    location: LocationContract = field(default_factory=LocationContract)
    version: int = CONTRACT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, numbers and strings (``torch.load(weights_only=True)`` reads them)."""
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            return value

        return plain(asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessingContract:
        """Read a stored contract; version 1 (before normalisation and resampling were
        stated) reads as what it meant: z-score, area/bilinear RS resize, bilinear SV."""
        version = values.get("version")
        if version not in (1, CONTRACT_VERSION):
            raise ContractError(f"preprocessing contract version {version} where "
                                f"1 or {CONTRACT_VERSION} is understood")

        def tuples(section: dict[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}

        return cls(rs=RSContract(**tuples(values["rs"])), sv=SVContract(**tuples(values["sv"])),
                   location=LocationContract(**tuples(values["location"])),
                   version=CONTRACT_VERSION)

    @classmethod
    def for_training(cls, band_mean: Sequence[float], band_std: Sequence[float],
                     patch_size_px: int, model: dict[str, Any],
                     preprocessing: dict[str, Any] | None = None) -> PreprocessingContract:
        """The contract of a model trained on the pairing shards with this configuration
        (``preprocessing``: ``rs_normalization``, ``rs_interpolation``,
        ``sv_interpolation``; the defaults are today's z-score recipe)."""
        options = preprocessing or {}
        return cls(
            rs=RSContract(band_mean=tuple(float(v) for v in band_mean),
                          band_std=tuple(float(v) for v in band_std),
                          patch_size_px=int(patch_size_px),
                          model_input_px=int(model["rs_encoder"]["img_size"]),
                          normalization=options.get("rs_normalization", "zscore"),
                          interpolation=options.get("rs_interpolation", "area")),
            sv=SVContract(size_px=int(model["sv_encoder"]["img_size"]),
                          interpolation=options.get("sv_interpolation", "bilinear")),
        )

    @classmethod
    def official(cls, patch_size_px: int = 224, model_input_px: int = 96,
                 sv_size_px: int = 224) -> PreprocessingContract:
        """The official GAIR code's preprocessing: its band statistics, [mean +- 2 std] to
        uint8 scaling and bicubic resizing; its SV statistics and bicubic resizing. Its
        inference cuts a 224 px window (2.24 km at 10 m) around a point and resizes it to
        96 px, so that is the patch this contract asks for."""
        return cls(
            rs=RSContract(band_mean=OFFICIAL_BAND_MEAN, band_std=OFFICIAL_BAND_STD,
                          patch_size_px=patch_size_px, model_input_px=model_input_px,
                          normalization="official", interpolation="bicubic"),
            sv=SVContract(size_px=sv_size_px, interpolation="bicubic"),
        )
