"""Stroke JSON -> sketch image. The one rasteriser used by SynHead's clean sketches and by inference.

The stroke format is described in docs/contracts.md section 2. Drawing uses OpenCV anti-aliased
polylines with round caps, so a stroke of width w pixels is a capsule chain of diameter w.
"""
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from backend.errors import CodedError

_SHIFT = 4  # sub-pixel bits for cv2 drawing: coordinates are multiplied by 2**_SHIFT
MAX_POINTS = 1_000_000


class StrokeError(CodedError, ValueError):
    """A stroke document that cannot be drawn. ``code`` is a stable identifier for APIs."""


def _validated(doc: Any) -> tuple[str, float, float, list[dict]]:
    if not isinstance(doc, dict):
        raise StrokeError("strokes_not_object", "stroke JSON must be an object with a 'strokes' list")
    strokes = doc.get("strokes")
    if not isinstance(strokes, list):
        raise StrokeError("strokes_missing", "stroke JSON needs a 'strokes' list of {'points': [[x, y], ...]}")
    frame = doc.get("frame", "normalized")
    if frame not in ("normalized", "image"):
        raise StrokeError("strokes_bad_frame", f"'frame' must be 'normalized' or 'image', not {frame!r}")
    if frame == "image":
        w, h = doc.get("width"), doc.get("height")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e6 for v in (w, h)):
            raise StrokeError("strokes_bad_size", "frame 'image' needs positive numeric 'width' and 'height' in pixels")
    else:
        w = h = 1.0
    return frame, float(w), float(h), strokes


def rasterize_strokes(doc: dict, size: int = 512, default_width_px: float = 2.0) -> np.ndarray:
    """Draw a stroke document into a square grey image.

    Args:
        doc: stroke JSON (docs/contracts.md section 2). Coordinates are in pixels of a
            ``width`` x ``height`` image (frame "image") or in [0, 1] of the image (frame "normalized",
            y down). Widths use the same unit as the frame's height (pixels, or a fraction of the height).
            An "image" frame that is not square is letterboxed into the square centred.
        size: output side in pixels.
        default_width_px: width used for strokes without one, in output pixels.

    Returns:
        ``(size, size)`` uint8 image, 255 paper, 0 ink.

    Raises:
        StrokeError: wrong types, NaN or infinite coordinates, negative widths, more than
            ``MAX_POINTS`` points in all.
    """
    frame, w, h, strokes = _validated(doc)
    scale = size / max(w, h)  # units -> output pixels
    off_x = (size - w * scale) / 2.0
    off_y = (size - h * scale) / 2.0
    img = np.full((size, size), 255, np.uint8)
    total = 0
    for k, stroke in enumerate(strokes):
        if not isinstance(stroke, dict) or "points" not in stroke:
            raise StrokeError("stroke_bad", f"stroke {k} must be an object with 'points'")
        try:
            pts = np.asarray(stroke["points"], dtype=np.float64)
        except (TypeError, ValueError):
            raise StrokeError("stroke_bad_points", f"stroke {k}: 'points' must be a list of [x, y] numbers") from None
        if pts.size == 0:
            continue
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise StrokeError("stroke_bad_points", f"stroke {k}: 'points' must be a list of [x, y] pairs")
        total += len(pts)
        if total > MAX_POINTS:
            raise StrokeError("strokes_too_many_points", f"more than {MAX_POINTS} points in all; simplify the strokes")
        if not np.isfinite(pts).all():
            raise StrokeError("stroke_not_finite", f"stroke {k} has NaN or infinite coordinates")
        width = stroke.get("width")
        if width is None:
            width_px = default_width_px
        else:
            if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width < 0:
                raise StrokeError("stroke_bad_width", f"stroke {k}: 'width' must be a non-negative number")
            width_px = float(width) * scale
        widths = stroke.get("widths")
        if widths is not None:
            try:
                widths = np.asarray(widths, dtype=np.float64) * scale
            except (TypeError, ValueError):
                raise StrokeError("stroke_bad_width", f"stroke {k}: 'widths' must be numbers") from None
            if widths.shape != (len(pts),) or not np.isfinite(widths).all() or (widths < 0).any():
                raise StrokeError("stroke_bad_width", f"stroke {k}: 'widths' needs one non-negative number per point")
        px = np.empty_like(pts)
        px[:, 0] = pts[:, 0] * scale + off_x
        px[:, 1] = pts[:, 1] * scale + off_y
        _draw_polyline(img, px, width_px, widths)
    return img


def _draw_polyline(img: np.ndarray, px: np.ndarray, width_px: float, widths: np.ndarray | None) -> None:
    fixed = np.round(np.clip(px, -1e5, 1e5) * (1 << _SHIFT)).astype(np.int64)
    if widths is None:
        t = max(1, int(round(width_px)))
        if len(fixed) == 1:
            cv2.circle(img, tuple(int(v) for v in fixed[0]), max(1, int(round(width_px * (1 << _SHIFT) / 2))), 0, -1, cv2.LINE_AA, _SHIFT)
            return
        cv2.polylines(img, [fixed.reshape(-1, 1, 2).astype(np.int32)], False, 0, t, cv2.LINE_AA, _SHIFT)
        return
    for a in range(len(fixed) - 1 if len(fixed) > 1 else 1):
        b = min(a + 1, len(fixed) - 1)
        t = max(1, int(round((widths[a] + widths[b]) / 2)))
        cv2.line(img, tuple(int(v) for v in fixed[a]), tuple(int(v) for v in fixed[b]), 0, t, cv2.LINE_AA, _SHIFT)
