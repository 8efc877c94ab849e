"""Band orders and factors of the super-resolution system, on top of the prepared products' constants."""

from __future__ import annotations

from decloud.core.constants import S2_BANDS_10M, S2_BANDS_20M
from decloud.core.errors import InvalidArgumentError

#: The ten bands, in the order of the prepared stacks (10 m then 20 m), which is also the order of the
#: ``sentinel2_superresolution`` tool: B2 B3 B4 B8 B5 B6 B7 B8A B11 B12.
SUPERRES_BANDS = S2_BANDS_10M + S2_BANDS_20M
#: Upsampling factors the system knows.
FACTORS = (2, 4)


def check_factor(factor: float) -> int:
    """``factor`` as an int, if it is one the system knows (2 or 4); a clear error otherwise."""
    if factor not in FACTORS:
        raise InvalidArgumentError(f"factor {factor:g} is not supported (use {' or '.join(map(str, FACTORS))})")
    return int(factor)


def check_bands(bands: list[str] | tuple[str, ...], what: str) -> list[str]:
    """``bands`` if every one is a Sentinel-2 band of the system and none repeats; a clear error otherwise."""
    unknown = [band for band in bands if band not in SUPERRES_BANDS]
    if unknown or not bands or len(set(bands)) != len(bands):
        raise InvalidArgumentError(
            f"{what}: bands {list(bands)} must be distinct, non-empty, among {', '.join(SUPERRES_BANDS)}"
        )
    return list(bands)
