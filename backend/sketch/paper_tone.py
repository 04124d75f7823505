"""The tone steps of the paper clean-up (backend/sketch/paper.py): ``flatten`` divides out the paper's
brightness, ``denoise`` removes measurable paper noise, ``tonal`` lifts light shading to paper, and
``paper_white`` makes the paper exactly white. Each returns ``(grey, measurements)`` and is a no-op on a
clean digital line drawing."""
from __future__ import annotations

import cv2
import numpy as np

from backend.sketch.paper_work import odd, to_u8, work

#: Samples of the closing more than this below the fitted paper surface are ink masses, not paper.
FIT_MARGIN = 0.04
#: Paper surfaces that vary less than this (max - min) and are at least PAPER_WHITE bright are left alone.
FLAT_RANGE_MIN = 0.03
PAPER_WHITE = 0.97
#: Grey levels above this count as paper when the paper's level and grain are measured.
PAPER_MIN_LEVEL = 0.75
#: Paper noise (robust standard deviation, grey in [0, 1]) above which the image is denoised.
NOISE_MIN = 0.012
#: Fraction of the picture in mid-grey (not paper, not dark stroke) above which it counts as tonal.
TONAL_MIN = 0.12
#: Tones darker than this are kept as they are in a tonal drawing (solid dark hair, pupils).
TONAL_KEEP_DARK = 0.3


def flatten(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Divide by the paper brightness: a grey closing (strokes removed) at the working size, fitted by
    a robust cubic surface (large dark masses like shaded hair do not pull it down), then upsampled."""
    h, w = g.shape
    small = work(g).astype(np.float32)
    sh, sw = small.shape
    k = odd(0.08 * min(sh, sw))
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    gy, gx = np.mgrid[0:sh, 0:sw]
    step = max(1, min(sh, sw) // 48)
    xs = (gx[::step, ::step].ravel() + 0.5) / sw * 2 - 1
    ys = (gy[::step, ::step].ravel() + 0.5) / sh * 2 - 1
    vals = closed[::step, ::step].ravel().astype(np.float64)

    def basis(x, y):
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x ** 3, x * x * y, x * y * y, y ** 3], -1)

    a = basis(xs, ys)
    keep = np.ones(len(vals), bool)
    coef = np.zeros(a.shape[1])
    for _ in range(8):  # drop samples well below the surface: ink masses, not paper
        coef, *_ = np.linalg.lstsq(a[keep], vals[keep], rcond=None)
        resid = vals - a @ coef
        # a fixed margin, not one from the residuals' spread: a big dark mass inflates that spread
        new_keep = resid > -FIT_MARGIN
        if new_keep.sum() < a.shape[1] * 3 or (new_keep == keep).all():
            break
        keep = new_keep
    surf_small = (a @ coef)
    lo, hi = float(surf_small.min()), float(surf_small.max())
    paper_level = float(np.median(vals[keep]))
    meas = {"kernel_px": int(k), "work_size": [int(sw), int(sh)], "paper_level": round(paper_level, 4),
            "paper_min": round(lo, 4), "paper_max": round(hi, 4), "paper_samples_kept": round(float(keep.mean()), 3)}
    if hi - lo < FLAT_RANGE_MIN and paper_level >= PAPER_WHITE:
        return g, dict(meas, applied=False)
    # evaluated at the working size and resized: the surface is smooth, and a full-size basis of a
    # 4000 px scan would take gigabytes
    X = (gx.astype(np.float64) + 0.5) / sw * 2 - 1
    Y = (gy.astype(np.float64) + 0.5) / sh * 2 - 1
    surf = (basis(X, Y) @ coef).astype(np.float32)
    if (sh, sw) != (h, w):
        surf = cv2.resize(surf, (w, h), interpolation=cv2.INTER_LINEAR)
    surf = np.clip(surf, max(0.05, 0.5 * paper_level), 1.0)
    return np.clip(g / surf, 0.0, 1.0), dict(meas, applied=True)


def _noise_sigma(g: np.ndarray) -> float:
    """Robust standard deviation of the paper's pixel noise (grey in [0, 1]), from the work-size image."""
    small = work(g).astype(np.float32)
    med = cv2.medianBlur(small, 3)
    paper = med > 0.8
    if paper.sum() < 50:
        return 0.0
    d = (small - med)[paper]
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def denoise(g: np.ndarray) -> tuple[np.ndarray, dict]:
    sigma = _noise_sigma(g)
    meas = {"noise_sigma": round(sigma, 4)}
    if sigma < NOISE_MIN:
        return g, dict(meas, applied=False)
    u8 = to_u8(g)
    if u8.size > 4_000_000:
        out = cv2.medianBlur(u8, 3)
        meas.update(method="median3")
    else:
        hval = float(np.clip(3.0 * sigma * 255.0, 3.0, 15.0))
        out = cv2.fastNlMeansDenoising(u8, None, h=hval, templateWindowSize=5, searchWindowSize=15)
        meas.update(method="nl_means", h=round(hval, 2))
    return out.astype(np.float64) / 255.0, dict(meas, applied=True)


def tonal(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Lift light shading to paper when the picture is mostly shading: keep what is darker than the
    local surroundings (strokes, edges of dark masses) and the darkest tones."""
    small = work(g)
    mid = float(((small > 0.25) & (small < 0.8)).mean())
    meas = {"midtone_fraction": round(mid, 4)}
    if mid < TONAL_MIN:
        return g, dict(meas, applied=False)
    h, w = g.shape
    sigma = max(1.0, 0.01 * min(h, w))
    local = cv2.GaussianBlur(g.astype(np.float32), (0, 0), sigma).astype(np.float64)
    # how much darker than the neighbourhood: strokes and hatching; flat shading has ~0
    contrast = np.clip(local - g, 0.0, 1.0)
    line = 1.0 - np.clip(contrast / 0.15, 0.0, 1.0)
    out = np.where(g < TONAL_KEEP_DARK, g, np.maximum(g, line))
    return out, dict(meas, applied=True, local_sigma_px=round(sigma, 2))


def paper_white(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Make the paper exactly white: everything lighter than the paper's typical level minus three
    times its grain (robust standard deviation) becomes 1, darker tones are stretched to match."""
    small = work(g)
    paper = small[small > PAPER_MIN_LEVEL]
    if paper.size < 50:
        return g, {"applied": False}
    med = float(np.median(paper))
    sigma = float(1.4826 * np.median(np.abs(paper - med)))
    meas = {"paper_median": round(med, 4), "paper_sigma": round(sigma, 4)}
    if med >= 0.995 and sigma < 0.003:  # already white (a digital drawing)
        return g, dict(meas, applied=False)
    thr = max(PAPER_MIN_LEVEL, med - 3.0 * sigma)
    out = np.where(g >= thr, 1.0, g / thr)
    return out, dict(meas, applied=True, white_from=round(thr, 4))
