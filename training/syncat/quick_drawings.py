"""Cat drawings as quick doodles draw them: the whole animal with the head small at one end, and a face
of a few marks (dots for eyes, a dot or nothing for the nose). Training augmentations for the cat sketch
network, on SynCat's normalised-frame stroke documents (:func:`training.syncat.strokes.cat_strokes`).

The label map keeps only the head: the body is background, as in pix2pix3D's seg2cat masks, which are
face crops (AFHQ) without bodies. A network trained on head drawings alone reads a body outline drawn
against the head as more face (a whole-body doodle became a box of face and no eyes); these drawings teach
it to label the head and leave the body out, so the framing's landmark pass (backend/align.py) can zoom to
the head.

* :func:`head_with_body`: the head's strokes scaled down (pen widths kept, as one pen draws a whole
  doodle), a body outline (lying beside the head or sitting below it) and often a tail, the outline
  broken where it passes behind the head; the whole drawing is then fitted into the canonical content box
  as the inference framing's first pass fits any drawing (backend/align.py ``framing_transform``).
* :func:`minimal_face_marks`: eye outlines and pupils replaced by a dot or a short dash at each eye's
  centre, the nose pad by a dot (or nothing), the mouth lines dropped half of the time; the label map
  keeps its full eyes, nose pad and mouth.

Every function takes a ``numpy.random.Generator``: the same seed gives the same result.
"""
from __future__ import annotations

import copy
from typing import Any

import cv2
import numpy as np

from backend.align import canonical_content_box

#: Scale of the head in a whole-body drawing, before the whole drawing is fitted to the content box.
HEAD_SCALE_RANGE = (0.3, 0.6)


def _pen_width(doc: dict[str, Any]) -> float:
    """The document's typical stroke width (median; fraction of the image height)."""
    return float(np.median([st.get("width", 0.004) for st in doc.get("strokes", [])] or [0.004]))


def _resampled(points: np.ndarray, step: float) -> np.ndarray:
    """Points ``(N, 2)`` along a polyline at spacing ``step`` (same units), ends kept."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(t[-1] / max(step, 1e-9)), 1) + 1
    u = np.linspace(0.0, t[-1], n)
    return np.stack([np.interp(u, t, points[:, 0]), np.interp(u, t, points[:, 1])], -1)


def _rounded_box(x0: float, y0: float, x1: float, y1: float, r: float, n: int = 4) -> np.ndarray:
    """Closed outline ``(M, 2)`` of a box with rounded corners of radius ``r`` (same units), clockwise in
    image axes (y down), starting at the top-left corner's end."""
    r = min(r, (x1 - x0) / 2.0, (y1 - y0) / 2.0)
    corners = [((x1 - r, y0 + r), -90.0), ((x1 - r, y1 - r), 0.0), ((x0 + r, y1 - r), 90.0), ((x0 + r, y0 + r), 180.0)]
    pts = []
    for (cx, cy), a0 in corners:
        for a in np.radians(np.linspace(a0, a0 + 90.0, n)):
            pts.append((cx + r * np.cos(a), cy + r * np.sin(a)))
    pts.append(pts[0])
    return np.asarray(pts, np.float64)


def _body_outline(head: tuple[float, float, float, float], rng: np.random.Generator) -> list[np.ndarray]:
    """Body (and tail) polylines ``(M, 2)`` float64 around a head box ``(x0, y0, x1, y1)`` (any units,
    y down): lying beside the head (to the right; the mirror augmentation gives the left) or sitting
    below it."""
    x0, y0, x1, y1 = head
    w, h = x1 - x0, y1 - y0
    lines = []
    if rng.random() < 0.6:  # lying: a long low box from the head's lower half to the right
        top = y0 + h * rng.uniform(0.35, 0.75)
        bottom = y1 + h * rng.uniform(0.2, 0.8)
        left = x0 + w * rng.uniform(0.0, 0.4)
        right = x1 + w * rng.uniform(1.0, 2.2)
        body = _rounded_box(left, top, right, bottom, (bottom - top) * rng.uniform(0.2, 0.5))
        tail_root = np.array([right - (bottom - top) * 0.2, bottom - (bottom - top) * rng.uniform(0.2, 0.6)])
        tail_dir = np.array([1.0, rng.uniform(-0.6, 0.3)])
    else:  # sitting: a rounded body below the head, wider at the bottom
        top = y1 - h * rng.uniform(0.1, 0.3)
        bottom = y1 + h * rng.uniform(0.8, 1.6)
        half = w * rng.uniform(0.45, 0.8)
        cx = (x0 + x1) / 2.0 + w * rng.uniform(-0.15, 0.15)
        body = _rounded_box(cx - half, top, cx + half, bottom, half * rng.uniform(0.4, 0.9))
        tail_root = np.array([cx + half * 0.9, bottom - (bottom - top) * 0.1])
        tail_dir = np.array([1.0, rng.uniform(-1.2, -0.2)])
    lines.append(body)
    if rng.random() < 0.6:
        length = w * rng.uniform(0.5, 1.1)
        d = tail_dir / np.linalg.norm(tail_dir)
        bend = np.array([-d[1], d[0]]) * length * rng.uniform(-0.3, 0.3)
        u = np.linspace(0.0, 1.0, 6)[:, None]
        lines.append(tail_root + u * d * length + (u * (1 - u) * 4) * bend)
    return lines


def _outside_runs(points: np.ndarray, inside: np.ndarray, size: int, min_len: int = 3) -> list[np.ndarray]:
    """Pieces of a normalised polyline ``(N, 2)`` whose points fall outside the boolean ``inside`` map
    ``(size, size)``: the body's outline stops where the head is drawn over it."""
    px = np.clip((points * size).astype(int), 0, size - 1)
    keep = ~inside[px[:, 1], px[:, 0]]
    runs, start = [], None
    for i, k in enumerate(np.append(keep, False)):
        if k and start is None:
            start = i
        elif not k and start is not None:
            if i - start >= min_len:
                runs.append(points[start:i])
            start = None
    return runs


def head_with_body(doc: dict[str, Any], mask: np.ndarray, rng: np.random.Generator,
                   scale_range: tuple[float, float] = HEAD_SCALE_RANGE) -> tuple[dict[str, Any], np.ndarray]:
    """A whole-body drawing of a cat from its head drawing.

    Args:
        doc: a normalised-frame stroke document of the head (docs/contracts.md section 2), widths as a
            fraction of the image height.
        mask: ``(R, R)`` uint8 seg2cat ids of the same view.
        rng: randomness for the scale, pose, tail and placement.
        scale_range: the head's scale before the whole drawing is fitted into the canonical content box
            (backend/align.py ``canonical_content_box``).

    Returns:
        ``(doc, mask)``: the new stroke document (head strokes moved and scaled, widths unchanged; body and
        tail strokes in group ``body``) and the mask under the same transform, ``(R, R)`` uint8 with the
        body as background (0).

    Raises:
        ValueError: ``doc`` is not in the normalised frame, or ``mask`` has no head.
    """
    if doc.get("frame") != "normalized":
        raise ValueError(f"head_with_body needs a normalised stroke document, got frame {doc.get('frame')!r}")
    size = mask.shape[0]
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        raise ValueError("head_with_body: the mask has no head (only background)")
    head = (xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size)
    s = rng.uniform(*scale_range)
    head_s = tuple(v * s for v in head)
    body = _body_outline(head_s, rng)
    # fit the whole drawing into the canonical content box, as the inference framing does (top-aligned,
    # centred, the tighter of the two scales), with a little jitter
    ink = np.concatenate([np.asarray([head_s[:2], head_s[2:]])] + body)
    lo, hi = ink.min(0), ink.max(0)
    box = canonical_content_box()
    fit = min(box["width"] / (hi[0] - lo[0]), box["height"] / (hi[1] - lo[1])) * rng.uniform(0.9, 1.0)
    top = box["center"][1] - box["height"] / 2.0
    shift = np.array([box["center"][0] - fit * (lo[0] + hi[0]) / 2.0, top - fit * lo[1]])
    shift += rng.uniform(-0.03, 0.03, size=2)
    scale = s * fit  # head: normalised p -> scale * p + shift
    out = copy.deepcopy(doc)
    for st in out.get("strokes", []):
        st["points"] = (np.asarray(st["points"], np.float64).reshape(-1, 2) * scale + shift).round(5).tolist()
    m = np.array([[scale, 0.0, shift[0] * size], [0.0, scale, shift[1] * size]], np.float64)
    new_mask = cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
    inside = cv2.dilate((new_mask > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    width = _pen_width(doc)
    for line in body:
        pts = _resampled(line * fit + shift, 1.0 / size)
        for run in _outside_runs(pts, inside, size):
            run = cv2.approxPolyDP(run.astype(np.float32).reshape(-1, 1, 2), 0.5 / size, False).reshape(-1, 2)
            out["strokes"].append({"points": run.round(5).tolist(), "width": round(width, 5), "group": "body"})
    return out, new_mask


def minimal_face_marks(doc: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A face drawn with a few marks: each eye outline (group ``eye``) becomes a dot (60 %) or a short
    horizontal dash at its centre, the pupils are left out, the nose pad (``nose``) becomes a dot (50 %) or
    is left out, and the mouth lines (``mouth``) are left out half of the time. Other strokes are kept.
    Widths are fractions of the image height, as in the input ``doc`` (normalised frame). Returns a new
    document."""
    out = copy.deepcopy(doc)
    strokes = out.get("strokes", [])
    width = _pen_width(doc)
    dots = rng.random() < 0.6
    nose_dot = rng.random() < 0.5
    drop_mouth = rng.random() < 0.5
    kept, nose_pts = [], []
    for st in strokes:
        group = st.get("group")
        pts = np.asarray(st.get("points", []), np.float64).reshape(-1, 2)
        if group == "eye" and len(pts):
            c = pts.mean(0)
            half = 0.25 * (pts[:, 0].max() - pts[:, 0].min()) * rng.uniform(0.6, 1.4)
            if dots:
                r = max(width, 0.004) * rng.uniform(1.0, 2.0)
                kept.append({"points": [c.tolist(), (c + [1e-4, 0.0]).tolist()], "width": round(r, 5), "group": "eye"})
            else:
                kept.append({"points": [(c - [half, 0.0]).tolist(), (c + [half, 0.0]).tolist()],
                             "width": round(width, 5), "group": "eye"})
        elif group == "pupil":
            continue
        elif group == "nose":
            nose_pts.append(pts)
        elif group == "mouth" and drop_mouth:
            continue
        else:
            kept.append(st)
    if nose_dot and nose_pts:
        c = np.concatenate(nose_pts).mean(0)
        kept.append({"points": [c.tolist(), (c + [1e-4, 0.0]).tolist()], "width": round(max(width, 0.004) * 1.5, 5),
                     "group": "nose"})
    out["strokes"] = kept
    return out
