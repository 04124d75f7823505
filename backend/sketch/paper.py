"""Drawings on paper -> clean dark-on-white sketches: the image half of sketch intake.

A scan or photo of a drawing brings things the sketch network never saw in training: a grey or tinted
paper, uneven light (a vignette, a shadow across the sheet), the scanner's edge or the sheet's border, a
handwritten number in a margin, JPEG noise and tonal graphite shading. Read as ink, grey paper becomes
hair and a border stretches the framing over the whole sheet. :func:`clean_paper` removes these, one
measured step at a time, each a no-op on a clean digital line drawing:

1. ``flatten``: a smooth paper-brightness surface (a robust low-order fit to a large grey closing) is
   divided out, so the paper is uniformly white whatever its tint or lighting;
2. ``scanner_edges``: dark groups in the outer band of the image that lie along an edge (the scanner
   bed, a shadow) or are long straight lines parallel to it (the sheet's border) become paper;
3. ``denoise``: when the paper's pixel noise (JPEG, grain) is measurable, non-local-means denoising
   (median 3 on very large images);
4. ``tonal``: when much of the picture is grey shading rather than lines, light shading is lifted to
   paper so the dark strokes and the edges of dark masses remain (the network was trained on lines);
5. ``paper_white``: whatever is as light as the paper (its level minus three times its grain) becomes
   exactly white;
6. ``margin_marks``: small ink groups in the margins, away from the main drawing (labels, numbers,
   signatures, dust), become paper.

The measurements and parameters of every step go into the returned ``info`` dict (``result.json``'s
``intake``), and :func:`debug_strip` draws the stages side by side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

#: Steps work on a copy whose long side is at most this many pixels (the measurements are size-free).
WORK_PX = 512
#: Outer band of the image, as a fraction of the short side, searched for scanner edges.
EDGE_BAND = 0.08
#: A pixel this much darker than the paper (grey in [0, 1]) counts as part of an edge line.
EDGE_CONTRAST = 0.12
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
#: A margin mark is at most this share of all ink and lies in the outer MARGIN_BAND of the image.
MARK_MAX_INK = 0.1
MARGIN_BAND = 0.18
#: ... and is text-like (three or more glyphs in a line), or dense (ink over this fraction of its box,
#: at the working size: writing, not a lone hair stroke), or has no side longer than MARK_MAX_SIDE.
MARK_MIN_DENSITY = 0.15
MARK_MAX_SIDE = 0.1
#: Ink groups smaller than this share of all ink, away from the drawing, are specks wherever they are.
SPECK_MAX_INK = 0.002


@dataclass
class PaperResult:
    """Output of :func:`clean_paper`.

    Attributes:
        grey: ``(H, W)`` float64 in [0, 1], dark strokes on white, same frame as the input.
        info: JSON-ready ``{"steps": [names that changed the image], step name: {measurements}, ...}``.
        stages: ``[(name, (H', W') uint8)]`` snapshots after each step (only with ``keep_stages``;
            downscaled to the working size).
    """

    grey: np.ndarray
    info: dict
    stages: list[tuple[str, np.ndarray]] = field(default_factory=list)


def clean_paper(grey: np.ndarray, keep_stages: bool = False) -> PaperResult:
    """Flatten the paper and remove scanner edges, margin marks, noise and light shading.

    Args:
        grey: ``(H, W)`` float in [0, 1], dark strokes on a light background (invert light-on-dark
            drawings first), any size and aspect ratio.
        keep_stages: also return a snapshot of each stage (for :func:`debug_strip`).

    Returns:
        :class:`PaperResult`. A clean digital drawing (white paper, no marks) comes back unchanged.

    Raises:
        ValueError: ``grey`` is not a 2-D array.
    """
    g = np.asarray(grey, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"clean_paper needs a (H, W) grey image, not shape {g.shape}")
    g = np.clip(g, 0.0, 1.0)
    h, w = g.shape
    info: dict = {"steps": [], "size": [int(w), int(h)]}
    stages: list[tuple[str, np.ndarray]] = []

    def snap(name: str) -> None:
        if keep_stages:
            stages.append((name, _to_u8(_work(g))))

    snap("input")
    for name, step in (("flatten", _flatten), ("scanner_edges", _scanner_edges), ("denoise", _denoise),
                       ("tonal", _tonal), ("paper_white", _paper_white), ("margin_marks", _margin_marks)):
        g, info[name] = step(g)
        _mark(info, name)
        snap(name)
    return PaperResult(g, info, stages)


def debug_strip(stages: list[tuple[str, np.ndarray]], tile: int = 256) -> np.ndarray:
    """The stages of :func:`clean_paper` side by side, each letterboxed into a ``tile`` square and
    captioned: ``(tile + 18, tile * len(stages))`` uint8 grey."""
    tiles = []
    for name, im in stages:
        h, w = im.shape
        s = tile / max(h, w)
        small = cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        t = np.full((tile + 18, tile), 255, np.uint8)
        y0, x0 = 18 + (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
        t[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        cv2.putText(t, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        t[:, -1] = 160
        tiles.append(t)
    return np.hstack(tiles) if tiles else np.full((tile + 18, tile), 255, np.uint8)


def _mark(info: dict, step: str) -> None:
    if info[step].get("applied"):
        info["steps"].append(step)


def _to_u8(g: np.ndarray) -> np.ndarray:
    return np.round(np.clip(g, 0, 1) * 255.0).astype(np.uint8)


def _work(g: np.ndarray) -> np.ndarray:
    """``g`` resized (area) so its long side is at most ``WORK_PX``."""
    h, w = g.shape
    s = min(1.0, WORK_PX / max(h, w))
    if s >= 1.0:
        return g
    return cv2.resize(g.astype(np.float32), (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA).astype(np.float64)


def _odd(n: float) -> int:
    n = max(3, round(n))
    return n if n % 2 else n + 1


def _scanner_edges(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Dark groups in each side's outer band that are the scanner bed or a shadow (they lie along the
    image edge over a long stretch) or the sheet's border (long and straight, parallel to the edge)
    become paper. Each side's band is searched on its own, so a frame round the sheet is four lines."""
    h, w = g.shape
    band = max(2, round(EDGE_BAND * min(h, w)))
    paper = float(np.percentile(g, 90))
    # relative to the paper: a scanner's edge line can be a light grey a grey-level threshold would miss
    dark = (g < paper - EDGE_CONTRAST).astype(np.uint8)
    removed = np.zeros((h, w), bool)
    tol = max(2.0, 0.006 * min(h, w))
    counts = {"bed": 0, "line": 0}
    sides = {"top": (slice(0, band), slice(0, w)), "bottom": (slice(h - band, h), slice(0, w)),
             "left": (slice(0, h), slice(0, band)), "right": (slice(0, h), slice(w - band, w))}
    for side, (ys, xs) in sides.items():
        sub = dark[ys, xs]
        along = 1 if side in ("top", "bottom") else 0  # array axis that runs along the edge
        length = sub.shape[along]
        outer, inner = {"top": ((0, slice(None)), (-1, slice(None))), "bottom": ((-1, slice(None)), (0, slice(None))),
                        "left": ((slice(None), 0), (slice(None), -1)),
                        "right": ((slice(None), -1), (slice(None), 0))}[side]
        n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(sub, connectivity=8)
        edge_labels = np.bincount(lab[outer].ravel(), minlength=n_lab)
        inner_labels = np.bincount(lab[inner].ravel(), minlength=n_lab)
        for i in range(1, n_lab):
            extent = stats[i][cv2.CC_STAT_WIDTH] if along == 1 else stats[i][cv2.CC_STAT_HEIGHT]
            # a bed or shadow stays in the band; dark hair cropped by the edge runs on into the picture
            if edge_labels[i] >= 0.2 * length and inner_labels[i] <= 0.25 * edge_labels[i]:
                kind = "bed"
            elif extent >= 0.4 * length and _straight(lab == i, tol):
                kind = "line"
            else:
                continue
            counts[kind] += 1
            removed[ys, xs] |= lab == i
    if not removed.any():
        return g, {"applied": False, "band_px": band}
    # the grey rim of a removed group becomes paper too
    k = _odd(max(5, 0.006 * min(h, w)))
    halo = cv2.dilate(removed.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    out = g.copy()
    out[halo & (g < paper)] = paper
    return out, {"applied": True, "band_px": band, "bed_groups": counts["bed"], "edge_lines": counts["line"],
                 "fraction_removed": round(float(halo.mean()), 5)}


def _straight(pixels: np.ndarray, tol: float) -> bool:
    """Whether the True pixels of ``pixels`` lie within ``tol`` pixels (90th percentile) of one line."""
    ys, xs = np.nonzero(pixels)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    vx, vy, x0, y0 = cv2.fitLine(pts, cv2.DIST_L2, 0, 0.01, 0.01).ravel()
    dist = np.abs((pts[:, 0] - x0) * vy - (pts[:, 1] - y0) * vx)
    return bool(np.percentile(dist, 90) <= tol)


def _flatten(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Divide by the paper brightness: a grey closing (strokes removed) at the working size, fitted by
    a robust cubic surface (large dark masses like shaded hair do not pull it down), then upsampled."""
    h, w = g.shape
    small = _work(g).astype(np.float32)
    sh, sw = small.shape
    k = _odd(0.08 * min(sh, sw))
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
    small = _work(g).astype(np.float32)
    med = cv2.medianBlur(small, 3)
    paper = med > 0.8
    if paper.sum() < 50:
        return 0.0
    d = (small - med)[paper]
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def _denoise(g: np.ndarray) -> tuple[np.ndarray, dict]:
    sigma = _noise_sigma(g)
    meas = {"noise_sigma": round(sigma, 4)}
    if sigma < NOISE_MIN:
        return g, dict(meas, applied=False)
    u8 = _to_u8(g)
    if u8.size > 4_000_000:
        out = cv2.medianBlur(u8, 3)
        meas.update(method="median3")
    else:
        hval = float(np.clip(3.0 * sigma * 255.0, 3.0, 15.0))
        out = cv2.fastNlMeansDenoising(u8, None, h=hval, templateWindowSize=5, searchWindowSize=15)
        meas.update(method="nl_means", h=round(hval, 2))
    return out.astype(np.float64) / 255.0, dict(meas, applied=True)


def _tonal(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Lift light shading to paper when the picture is mostly shading: keep what is darker than the
    local surroundings (strokes, edges of dark masses) and the darkest tones."""
    small = _work(g)
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


def _paper_white(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Make the paper exactly white: everything lighter than the paper's typical level minus three
    times its grain (robust standard deviation) becomes 1, darker tones are stretched to match."""
    small = _work(g)
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


def _margin_marks(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Small ink groups in the margins and specks, away from the main drawing, become paper."""
    h, w = g.shape
    small = _work(g)
    sh, sw = small.shape
    ink = (small < 0.8).astype(np.uint8)
    total = int(ink.sum())
    if total == 0:
        return g, {"applied": False, "groups": 0}
    r = max(1, round(0.012 * min(sh, sw)))
    grown = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    n_lab, lab, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    share = np.bincount(lab[ink > 0], minlength=n_lab) / total
    core = [i for i in range(1, n_lab) if share[i] >= 0.1] or [int(np.argmax(share[1:])) + 1]
    x0 = min(stats[i][0] for i in core)
    y0 = min(stats[i][1] for i in core)
    x1 = max(stats[i][0] + stats[i][2] for i in core)
    y1 = max(stats[i][1] + stats[i][3] for i in core)
    pad = 0.02 * max(sh, sw)
    _, pieces = cv2.connectedComponents(ink, connectivity=8)
    cx0, cy0, cx1, cy1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    mx, my = MARGIN_BAND * sw, MARGIN_BAND * sh
    dropped = []
    for i in range(1, n_lab):
        if i in core:
            continue
        bx, by, bw, bh, _ = stats[i]
        overlaps = bx < cx1 and bx + bw > cx0 and by < cy1 and by + bh > cy0
        if overlaps:
            continue
        in_margin = bx + bw <= mx or bx >= sw - mx or by + bh <= my or by >= sh - my
        # text (several separate glyphs) or a small mark (a digit, a signature); a lone long stroke in
        # the margin is more likely the top of the hair
        own = (lab == i) & (ink > 0)
        glyphs = len(np.unique(pieces[own]))
        small_mark = bw <= MARK_MAX_SIDE * sw and bh <= MARK_MAX_SIDE * sh
        text_like = glyphs >= 3 and (bh <= 0.1 * sh or bw <= 0.1 * sw)
        dense = own.sum() >= MARK_MIN_DENSITY * bw * bh
        if (share[i] <= MARK_MAX_INK and in_margin and (small_mark or text_like or dense)) \
                or share[i] <= SPECK_MAX_INK:
            dropped.append(i)
    if not dropped:
        return g, {"applied": False, "groups": int(n_lab - 1)}
    drop_small = np.isin(lab, dropped).astype(np.uint8)
    if (sh, sw) != (h, w):
        drop_small = cv2.resize(drop_small, (w, h), interpolation=cv2.INTER_NEAREST)
    # grown a little at full size so the faint anti-aliased rims of the marks go too
    k = _odd(max(3, 0.006 * min(h, w)))
    drop = cv2.dilate(drop_small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    out = g.copy()
    out[drop] = 1.0
    return out, {"applied": True, "groups": int(n_lab - 1), "removed_groups": len(dropped),
                 "removed_ink_share": round(float(share[dropped].sum()), 4),
                 "removed_boxes": [[int(stats[i][0] * w / sw), int(stats[i][1] * h / sh),
                                    int((stats[i][0] + stats[i][2]) * w / sw), int((stats[i][1] + stats[i][3]) * h / sh)]
                                   for i in dropped[:8]]}


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.sketch.paper SKETCH [DEBUG_PNG]``: print the intake record of an image sketch
    as JSON and, with ``DEBUG_PNG``, write the strip of its clean-up stages (e.g. ``intake_debug.png``).

    Returns the exit code: 0, or 2 when the image cannot be read (the intake's coded error is printed).
    """
    import argparse
    import json
    import sys

    from PIL import Image

    from backend.sketch.intake import IntakeError, load_sketch

    p = argparse.ArgumentParser(prog="python -m backend.sketch.paper", description=main.__doc__.splitlines()[0])
    p.add_argument("sketch")
    p.add_argument("debug_png", nargs="?")
    args = p.parse_args(argv)
    try:
        sk = load_sketch(args.sketch, keep_stages=bool(args.debug_png))
    except IntakeError as e:
        print(f"error [{e.code}]: {e}", file=sys.stderr)
        return 2
    print(json.dumps(sk.intake, indent=1))
    if args.debug_png and sk.stages:
        Image.fromarray(debug_strip(sk.stages)).save(args.debug_png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
