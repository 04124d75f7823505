"""The three SynHead sketch styles of the input view (512 x 512 L uint8, 255 paper, 0 ink).

* ``clean``: the clean stroke JSON drawn by :func:`backend.sketch.raster.rasterize_strokes` (the same
  code inference uses for Grease Pencil strokes).
* ``pencil``: XDoG (Winnemoeller et al., "XDoG: an eXtended difference-of-Gaussians compendium",
  Computers & Graphics 2012, eq. 4-6) on the grey RGB render, blended with flat per-label tones
  (generator 0.2.0) so inner features give lines.
* ``rough``: the clean strokes jittered (low-frequency offsets), broken into pieces, partly dropped,
  partly doubled, with per-point variable widths, then rasterised by the same function.

The four styles of real drawings, the registry of all seven by name and the writer's style weights are
in :mod:`.drawing_styles`.
"""
from __future__ import annotations

import copy

import cv2
import numpy as np

from backend.sketch.raster import rasterize_strokes

def clean_sketch(doc: dict, size: int = 512) -> np.ndarray:
    """Rasterise the clean strokes: (size, size) uint8."""
    return rasterize_strokes(doc, size=size)


def rough_strokes(doc: dict, rng: np.random.Generator) -> dict:
    """Jittered / broken / doubled / variable-width copy of a stroke document (normalized frame)."""
    out = []
    for s in doc["strokes"]:
        if rng.random() < 0.10 and s["group"] not in ("face_outline",):
            continue  # dropped
        pts = np.asarray(s["points"], float)
        if len(pts) >= 2:
            # resample densely so the jitter is smooth along the stroke
            seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
            t = np.concatenate([[0], np.cumsum(seg)])
            n = max(2, int(t[-1] / 0.004))
            tt = np.linspace(0, t[-1], n)
            pts = np.stack([np.interp(tt, t, pts[:, 0]), np.interp(tt, t, pts[:, 1])], 1)
        pieces = [pts]
        if len(pts) > 12 and rng.random() < 0.5:  # break
            cuts = np.sort(rng.choice(np.arange(3, len(pts) - 3), size=int(rng.integers(1, 3)), replace=False))
            pieces = [p for p in np.split(pts, cuts) if len(p) >= 2]
            pieces = [p[: max(2, len(p) - int(rng.integers(0, 3)))] for p in pieces]
        copies = 2 if rng.random() < 0.3 else 1
        for p in pieces:
            for _ in range(copies):
                m = len(p)
                freq = rng.uniform(1, 4)
                ph = rng.uniform(0, 2 * np.pi, 2)
                u = np.linspace(0, 1, m)
                amp = rng.uniform(0.0015, 0.005)
                off = np.stack([np.sin(2 * np.pi * freq * u + ph[0]), np.sin(2 * np.pi * freq * u + ph[1])], 1) * amp
                q = p + off + rng.normal(0, 0.0015, 2)
                w = s.get("width", 0.004) * rng.uniform(0.7, 1.5)
                widths = np.clip(w * (0.6 + 0.8 * np.abs(np.sin(np.pi * u * rng.uniform(0.5, 2) + ph[0]))), 0.0008, None)
                out.append({"points": q.round(5).tolist(), "width": round(float(w), 5),
                            "widths": widths.round(5).tolist() if m > 1 else None, "group": s["group"]})
    for s in out:
        if s["widths"] is None:
            del s["widths"]
    d = copy.copy(doc)
    d["strokes"] = out
    return d


#: Grey tone per label id for the feature-enhanced pencil input (adjacent classes differ).
_TONES = np.array([1.0, 0.78, 0.70, 0.10, 0.95, 0.95, 0.22, 0.22, 0.62, 0.62, 0.15, 0.45, 0.52, 0.32,
                   0.5, 0.5, 0.5, 0.68, 0.55], np.float32)


def pencil_sketch(rgb: np.ndarray, rng: np.random.Generator, label: np.ndarray | None = None) -> np.ndarray:
    """XDoG line drawing of an RGB render: (H, W) uint8, dark lines on white.

    D = G_sigma(I) - tau * G_{k sigma}(I); T = 1 where D >= eps, else 1 + tanh(phi (D - eps)).
    With ``label`` (generator 0.2.0) the grey render is first blended with a flat tone per label
    (weight 0.3-0.6), so that brows, lips, eyes and the hairline, which a textureless Lambert render
    barely separates, give lines too.
    """
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    if label is not None:
        a = rng.uniform(0.3, 0.6)
        g = (1 - a) * g + a * _TONES[np.asarray(label)]
    sigma = rng.uniform(0.8, 1.6)
    k = 1.6
    tau = rng.uniform(0.97, 0.99)
    # eps < 0 keeps flat regions white whatever their brightness (D = (1 - tau) I >= 0 there), so the
    # result is lines rather than tone (generator 0.1.0 drew eps from [-0.02, 0.02], which greyed dark
    # hair and skin)
    eps = rng.uniform(-0.02, -0.006)
    phi = rng.uniform(60, 200)
    g1 = cv2.GaussianBlur(g, (0, 0), sigma)
    g2 = cv2.GaussianBlur(g, (0, 0), sigma * k)
    d = g1 - tau * g2
    t = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    img = (np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)
    # XDoG lines are ~1 px wide; human lines at 512^2 are 2-4 px: thicken most sketches
    k = int(rng.choice([1, 2, 2, 3]))
    if k > 1:
        img = cv2.erode(img, np.ones((k, k), np.uint8))
    return img


def ink_fraction(img: np.ndarray, threshold: int = 128) -> float:
    """Fraction of pixels darker than ``threshold`` (stroke pixels)."""
    return float((np.asarray(img) < threshold).mean())
