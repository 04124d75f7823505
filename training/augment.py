"""Sketch augmentation for the sketch -> mask network.

* :func:`s3d_morphology`: S3D's per-sketch augmentation (S3D section 3.3): keep the sketch (50 %),
  ``cv2.dilate`` with a 3x3 kernel (25 %) or ``cv2.erode`` with a 7x7 kernel (25 %), applied to the image
  as stored (dark strokes on white paper), so dilation thins the strokes and erosion thickens them.
* :func:`augment_strokes`: stroke-level changes on SynHead's clean stroke JSON, because SynHead draws every
  label boundary while people draw far fewer lines: drop whole stroke groups (brows, lids, nose outline,
  hair flow, ...), drop single strokes, jitter, width changes, simplification, doubled and broken strokes.
* :func:`random_framing`: small rotation, scale and shift applied to sketch and mask together.

Every function takes a ``numpy.random.Generator``: the same seed gives the same result.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import cv2
import numpy as np

from backend.sketch.raster import rasterize_strokes

#: Stroke groups that outline the head; dropped rarely (people nearly always draw them).
OUTLINE_KEYWORDS = ("outline", "contour", "jaw", "face", "head", "chin")


def s3d_morphology(sketch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """S3D's augmentation on ``sketch (H, W)`` float32 in [0, 1] (1 = paper): keep / dilate k3 / erode k7."""
    u = rng.random()
    if u < 0.5:
        return sketch
    if u < 0.75:
        return cv2.dilate(sketch, np.ones((3, 3), np.uint8))
    return cv2.erode(sketch, np.ones((7, 7), np.uint8))


def _simplify(points: np.ndarray, eps: float) -> np.ndarray:
    if len(points) < 3:
        return points
    out = cv2.approxPolyDP(points.astype(np.float32).reshape(-1, 1, 2), eps, False).reshape(-1, 2)
    return out if len(out) >= 2 else points[[0, -1]]


def augment_strokes(doc: dict[str, Any], rng: np.random.Generator, group_drop: float = 0.2,
                    stroke_drop: float = 0.1) -> dict[str, Any]:
    """A changed copy of a normalised-frame stroke document (docs/contracts.md section 2).

    Per document: a width factor in [0.5, 2]; a smooth offset field (wobble) of up to 0.4 % of the
    height. Per group: dropped with ``group_drop`` (outline groups with a fifth of it). Per stroke:
    dropped with ``stroke_drop``; Douglas-Peucker simplified (30 %); point jitter (sigma 0.1-0.25 %);
    width factor in [0.6, 1.6]; broken into pieces with gaps (15 %); doubled with a small offset (10 %).
    """
    out = copy.deepcopy(doc)
    strokes = out.get("strokes", [])
    # offsets below are fractions of the image height; "image" frames are in pixels
    unit = float(doc.get("height", 512)) if doc.get("frame") == "image" else 1.0
    groups = sorted({str(s.get("group", "")) for s in strokes})
    dropped = set()
    for g in groups:
        p = group_drop / 5 if any(k in g.lower() for k in OUTLINE_KEYWORDS) else group_drop
        if g and rng.random() < p:
            dropped.add(g)
    doc_width = float(np.exp(rng.uniform(math.log(0.5), math.log(2.0))))
    wob_a = rng.normal(0.0, 0.002, size=(2, 2))
    wob_f = rng.uniform(2.0, 6.0, size=2) * 2 * math.pi
    wob_p = rng.uniform(0, 2 * math.pi, size=2)
    new: list[dict[str, Any]] = []
    for s in strokes:
        if str(s.get("group", "")) in dropped or rng.random() < stroke_drop:
            continue
        pts = np.asarray(s.get("points", []), np.float64).reshape(-1, 2) / unit  # now fractions of the height
        if len(pts) == 0:
            continue
        if rng.random() < 0.3:
            pts = _simplify(pts * 512.0, rng.uniform(0.5, 2.5)) / 512.0
        pts = pts + rng.normal(0.0, rng.uniform(0.001, 0.0025), size=pts.shape)
        x, y = pts[:, 0], pts[:, 1]
        pts = pts + np.stack([wob_a[0, 0] * np.sin(wob_f[0] * y + wob_p[0]) + wob_a[0, 1] * np.sin(wob_f[1] * x + wob_p[1]),
                              wob_a[1, 0] * np.sin(wob_f[0] * x + wob_p[1]) + wob_a[1, 1] * np.sin(wob_f[1] * y + wob_p[0])], -1)
        pts = pts * unit
        width = float(s.get("width", 0.004 * unit)) * doc_width * float(np.exp(rng.uniform(math.log(0.6), math.log(1.6))))
        base = {k: v for k, v in s.items() if k not in ("points", "width", "widths")}
        pieces = [pts]
        if len(pts) >= 6 and rng.random() < 0.15:
            cuts = np.sort(rng.choice(np.arange(2, len(pts) - 2), size=min(2, len(pts) - 4), replace=False))
            pieces, start = [], 0
            for c in cuts:
                pieces.append(pts[start:c])
                start = c + 1  # leave a gap of one segment
            pieces.append(pts[start:])
        for piece in pieces:
            if len(piece) >= 1:
                new.append(dict(base, points=piece.tolist(), width=width))
        if rng.random() < 0.1:
            off = rng.normal(0.0, 0.003, size=2) * unit
            new.append(dict(base, points=(pts + off).tolist(), width=width * 0.8))
    out["strokes"] = new
    return out


def random_framing(sketch: np.ndarray, mask: np.ndarray, rng: np.random.Generator, max_rotation_deg: float = 5.0,
                   scale_range: tuple[float, float] = (0.92, 1.08), max_shift: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Rotate / scale / shift ``sketch (H, W)`` (bilinear, white border) and ``mask (H, W)`` ids (nearest,
    background border) by the same random similarity transform about the image centre."""
    h, w = sketch.shape
    ang = rng.uniform(-max_rotation_deg, max_rotation_deg)
    sc = rng.uniform(*scale_range)
    tx, ty = rng.uniform(-max_shift, max_shift, size=2) * np.array([w, h])
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, sc)
    m[:, 2] += (tx, ty)
    sk = cv2.warpAffine(sketch, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    mk = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return sk, mk


def augmented_sketch(item: dict[str, Any], rng: np.random.Generator, stroke_prob: float = 0.5,
                     framing_prob: float = 0.5, scale_range: tuple[float, float] = (0.92, 1.08),
                     max_shift: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """Full training augmentation of one :meth:`training.datasets.SynHead.sketch_item`:
    with ``stroke_prob`` (and when strokes exist) the sketch is re-drawn from augmented strokes, else the
    stored sketch (any style) is used; then S3D's morphology; then, with ``framing_prob``, random framing
    (:func:`random_framing` with ``scale_range`` and ``max_shift``).

    Returns ``(sketch (H, H) float32 in [0, 1], mask (H, H) uint8)`` at the item's own size.
    """
    sketch, mask = item["sketch"], item["mask"]
    if item.get("strokes") and rng.random() < stroke_prob:
        sketch = rasterize_strokes(augment_strokes(item["strokes"], rng), size=sketch.shape[0]).astype(np.float32) / 255.0
    sketch = s3d_morphology(np.ascontiguousarray(sketch, dtype=np.float32), rng)
    if rng.random() < framing_prob:
        sketch, mask = random_framing(sketch, mask, rng, scale_range=scale_range, max_shift=max_shift)
    return sketch, mask
