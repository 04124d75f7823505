"""The canonical head frame, the tri-plane box and the input view: the one source of these constants.

Conventions (docs/design.md section 3):

* Units are metres. The canonical head frame is Blender's: Z up, the face looks along -Y, so +X is on
  the right of the front-view image (the person's own right is at -X, image left).
* The tri-plane box is an axis-aligned cube of side ``BOX_SIZE_M`` centred at ``BOX_CENTER_M`` (the
  origin). Networks work in normalised box coordinates ``q = (p - BOX_CENTER_M) / (BOX_SIZE_M / 2)``,
  so the box is ``[-1, 1]^3``.
* The input view is the front orthographic view of the box's X-Z face, seen from -Y looking along +Y.
  An R x R image spans the box exactly: pixel column ``i`` (0 = left) and row ``j`` (0 = top) have
  their centres at ``x = (i + 0.5) / R * 2 - 1`` and ``z = 1 - (j + 0.5) / R * 2`` (normalised).
"""
from __future__ import annotations

import numpy as np

#: Side of the tri-plane cube in metres (head, hair and neck; shoulders may be cut).
BOX_SIZE_M: float = 0.40
#: Centre of the tri-plane cube in the canonical head frame, metres.
BOX_CENTER_M: tuple[float, float, float] = (0.0, 0.0, 0.0)


def metres_to_box(p: np.ndarray) -> np.ndarray:
    """Map points ``(..., 3)`` float in metres (head frame) to normalised box coordinates ``[-1, 1]``."""
    return (np.asarray(p, dtype=np.float64) - np.asarray(BOX_CENTER_M)) / (BOX_SIZE_M / 2.0)


def box_to_metres(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`metres_to_box`: ``(..., 3)`` normalised box coordinates to metres."""
    return np.asarray(q, dtype=np.float64) * (BOX_SIZE_M / 2.0) + np.asarray(BOX_CENTER_M)


def pixel_to_box_xz(cols: np.ndarray, rows: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Front-view pixel centres (column, row; pixels) of an R x R input view -> normalised (x, z)."""
    x = (np.asarray(cols, dtype=np.float64) + 0.5) / resolution * 2.0 - 1.0
    z = 1.0 - (np.asarray(rows, dtype=np.float64) + 0.5) / resolution * 2.0
    return x, z


def box_xz_to_pixel(x: np.ndarray, z: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (x, z) -> continuous front-view pixel coordinates (column, row) of an R x R view."""
    cols = (np.asarray(x, dtype=np.float64) + 1.0) / 2.0 * resolution - 0.5
    rows = (1.0 - np.asarray(z, dtype=np.float64)) / 2.0 * resolution - 0.5
    return cols, rows
