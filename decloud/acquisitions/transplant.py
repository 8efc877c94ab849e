"""Same-date truth: the cloudy acquisition of a sample is made from a clear image with the real cloud mask of
another product of the same tile transplanted onto it, and its target is that same clear image. A user rarely
has a clear image a few days from every cloudy one; every tile has many clear images and many real masks.

Where the transplanted mask says cloud, the image's pixels are set to no-data (S2_NODATA): the model sees
the hole (and so the mask, as the no-data pattern) and must produce the pixels from its other inputs. Pasting
the donor's cloudy values instead would show the model, under thin clouds, the ground of another date, which a
real cloudy image never shows. Inference agrees: a model trained this way (``decloud_model.json``:
``"cloudy_pixels": "nodata"``) is fed its cloudy image with the cloudy pixels set to no-data the same way.

This module is the one definition of that rule, used by sampling (records) and production (processors).
"""

from __future__ import annotations

import numpy as np

from decloud.core.constants import S2_NODATA

#: The ``decloud_model.json`` key telling how the cloudy pixels of the image to reconstruct reach the model.
DESCRIPTION_KEY = "cloudy_pixels"
#: Trained on transplanted masks: cloudy pixels are set to no-data before the model sees them.
CLOUDY_AS_NODATA = "nodata"
#: Trained on real cloudy images (Decloud's original recipe): cloudy pixels are fed as acquired.
CLOUDY_AS_ACQUIRED = "as_acquired"


def cloud_holes(cloud_mask: np.ndarray) -> np.ndarray:
    """The holes of a THEIA cloud mask (CLM, any non-zero bit is cloud or shadow), as booleans."""
    return np.asarray(cloud_mask) != 0


def holes_at_scale(holes: np.ndarray, scale: int) -> np.ndarray:
    """Holes (rows, cols) on a grid ``scale`` times coarser: a coarse pixel is a hole when any of its fine
    pixels is (a partial last block counts what it has)."""
    if scale == 1:
        return holes
    rows, cols = -(-holes.shape[0] // scale), -(-holes.shape[1] // scale)
    padded = np.zeros((rows * scale, cols * scale), dtype=bool)
    padded[: holes.shape[0], : holes.shape[1]] = holes
    return padded.reshape(rows, scale, cols, scale).any(axis=(1, 3))


def punch_holes(image: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (rows, cols, bands) with the pixels of ``holes`` (rows, cols) set to S2_NODATA."""
    if image.shape[:2] != holes.shape:
        raise ValueError(f"holes {holes.shape} do not match the image {image.shape}")
    return np.where(holes[..., np.newaxis], np.asarray(S2_NODATA, image.dtype), image)
