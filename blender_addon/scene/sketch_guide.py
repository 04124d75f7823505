"""The guide frame of 'New sketch', as front-view polylines (pure Python + numpy).

The guide shows the tri-plane box square (side ``BOX_SIZE_M``: the whole input image) and the canonical
content box: where the backend's auto-framing puts a drawing's ink (``backend/canonical_framing.json``
written by the SynHead generator, else the defaults of ``backend/align.py``), with an ellipse
inscribed in it as a head outline and a vertical centre line. For cats (:func:`cat_guide_strokes`) the
ellipse gives way to a simple cat face in the same content box (SynCat drawings fill it as SynHead's do,
docs/syncat.md): head outline, two triangular ears, two eyes, nose, mouth and whiskers. Coordinates are
front-view (x, z) in metres in the canonical head frame (docs/contracts.md section 1).
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


def _ellipse(cx: float, cz: float, ax: float, az: float, n: int = 48) -> np.ndarray:
    """``(n, 2)`` points of a closed ellipse (centre, half axes; metres)."""
    t = np.linspace(0.0, 2.0 * math.pi, n + 1)[:-1]
    return np.stack([cx + ax * np.cos(t), cz + az * np.sin(t)], 1)


def cat_guide_strokes(box: dict | None = None) -> list[tuple[np.ndarray, float]]:
    """The cat guide, as :func:`guide_strokes`: the box square, the content box and the centre line, then a
    cat face inside the content box: the head outline (its lower three quarters), two triangular ears
    reaching the box top, two eyes, a nose, a mouth (a "w" of four segments) and three whiskers a side.
    As in :func:`guide_strokes`, shapes of more than two points are closed; the rest are segments."""
    frame = guide_strokes(box)
    square, rect, _, centre = frame
    cx, cz, ax, az = content_box_metres(box or canonical_content_box())
    hz, hx, hh = cz - 0.3 * az, 0.95 * ax, 0.64 * az  # head outline: centre height, half width, half height
    ears = [np.array([[cx + sx * 0.9 * ax, hz + 0.45 * hh], [cx + sx * 0.72 * ax, cz + 0.98 * az],
                      [cx + sx * 0.25 * ax, hz + 0.86 * hh]]) for sx in (-1.0, 1.0)]
    eyes = [_ellipse(cx + sx * 0.38 * ax, hz + 0.18 * hh, 0.15 * ax, 0.1 * hh, 24) for sx in (-1.0, 1.0)]
    nz = hz - 0.12 * hh  # nose tip
    nose = np.array([[cx - 0.08 * ax, nz + 0.07 * hh], [cx + 0.08 * ax, nz + 0.07 * hh], [cx, nz]])
    corner = [(cx + sx * 0.08 * ax, nz - 0.07 * hh) for sx in (-1.0, 1.0)]  # a "w": nose -> corners -> up
    mouth = [np.array(seg) for sx, c in zip((-1.0, 1.0), corner)
             for seg in ([(cx, nz), c], [c, (cx + sx * 0.17 * ax, nz - 0.03 * hh)])]
    whiskers = [np.array([[cx + sx * 0.22 * ax, nz + dz * hh], [cx + sx * 1.1 * ax, nz + (dz * 2.2 + 0.02) * hh]])
                for sx in (-1.0, 1.0) for dz in (-0.06, 0.0, 0.06)]
    face = [(_ellipse(cx, hz, hx, hh), 0.001)] + [(e, 0.001) for e in ears] + [(e, 0.0008) for e in eyes]
    return ([square, rect] + face + [(nose, 0.0008)] + [(m, 0.0008) for m in mouth]
            + [(w, 0.0005) for w in whiskers] + [centre])
