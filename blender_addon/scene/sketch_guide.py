"""The guide frame of 'New sketch', as front-view polylines (pure Python + numpy).

The guide shows the tri-plane box square (side ``BOX_SIZE_M``: the whole input image) and the canonical
content box: where the backend's auto-framing puts a drawing's ink (``backend/canonical_framing.json``
written by the SynHead generator, else the defaults of ``backend/align.py``), with an ellipse
inscribed in it as a head outline and a vertical centre line. Coordinates are front-view (x, z) in
metres in the canonical head frame (docs/contracts.md section 1).
"""
from __future__ import annotations

import json
import math

import numpy as np

from ..transport.backend_process import find_backend_root
from .stroke_projection import BOX_SIZE_M

#: Same as ``backend.align.DEFAULT_CANONICAL_CONTENT_BOX`` (a test checks it): content box centre,
#: width and height as fractions of the input image (y down).
DEFAULT_CONTENT_BOX = {"center": [0.5, 0.54], "width": 0.62, "height": 0.88}


def canonical_content_box() -> dict:
    """The canonical content box: ``backend/canonical_framing.json`` when the backend ships one, else the defaults."""
    root = find_backend_root()
    path = root / "backend" / "canonical_framing.json" if root is not None else None
    if path is not None and path.is_file():
        try:
            box = json.loads(path.read_text())
            box = box.get("canonical_content_box", box)
            if all(k in box for k in ("center", "width", "height")):
                return box
        except (OSError, ValueError, AttributeError):
            pass
    return dict(DEFAULT_CONTENT_BOX)


def content_box_metres(box: dict, box_size_m: float = BOX_SIZE_M) -> tuple[float, float, float, float]:
    """Normalised content box -> (centre x, centre z, half width, half height) in metres (front view)."""
    (u, v), w, h = box["center"], float(box["width"]), float(box["height"])
    return (float(u) - 0.5) * box_size_m, (0.5 - float(v)) * box_size_m, w * box_size_m / 2, h * box_size_m / 2


def guide_strokes(box: dict | None = None) -> list[tuple[np.ndarray, float]]:
    """Polylines of the guide: ``[(points (K, 2) float metres (x, z), radius in metres), ...]``.

    Closed shapes (more than two points) are meant to be drawn cyclic.
    """
    h = BOX_SIZE_M / 2.0
    cx, cz, ax, az = content_box_metres(box or canonical_content_box())
    t = np.linspace(0.0, 2.0 * math.pi, 73)[:-1]
    return [
        (np.array([[-h, -h], [h, -h], [h, h], [-h, h]]), 0.0015),
        (np.array([[cx - ax, cz - az], [cx + ax, cz - az], [cx + ax, cz + az], [cx - ax, cz + az]]), 0.0008),
        (np.stack([cx + ax * np.cos(t), cz + az * np.sin(t)], 1), 0.001),
        (np.array([[0.0, -h], [0.0, h]]), 0.0006),
    ]
