"""The removal steps of the paper clean-up (backend/sketch/paper.py): ``scanner_edges`` turns the scanner
bed, shadows and the sheet's border along the image edges into paper, ``margin_marks`` the small ink
groups in the margins away from the drawing (labels, numbers, dust). Each returns ``(grey,
measurements)`` and is a no-op on a clean digital line drawing."""
from __future__ import annotations

import cv2
import numpy as np

from backend.sketch.paper_work import odd, work

#: Outer band of the image, as a fraction of the short side, searched for scanner edges.
EDGE_BAND = 0.08
#: A pixel this much darker than the paper (grey in [0, 1]) counts as part of an edge line.
EDGE_CONTRAST = 0.12
#: A margin mark is at most this share of all ink and lies in the outer MARGIN_BAND of the image.
MARK_MAX_INK = 0.1
MARGIN_BAND = 0.18
#: ... and is text-like (three or more glyphs in a line), or dense (ink over this fraction of its box,
#: at the working size: writing, not a lone hair stroke), or has no side longer than MARK_MAX_SIDE.
MARK_MIN_DENSITY = 0.15
MARK_MAX_SIDE = 0.1
#: Ink groups smaller than this share of all ink, away from the drawing, are specks wherever they are.
SPECK_MAX_INK = 0.002



def scanner_edges(g: np.ndarray) -> tuple[np.ndarray, dict]:
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
    k = odd(max(5, 0.006 * min(h, w)))
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


def margin_marks(g: np.ndarray) -> tuple[np.ndarray, dict]:
    """Small ink groups in the margins and specks, away from the main drawing, become paper."""
    h, w = g.shape
    small = work(g)
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
    k = odd(max(3, 0.006 * min(h, w)))
    drop = cv2.dilate(drop_small, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    out = g.copy()
    out[drop] = 1.0
    return out, {"applied": True, "groups": int(n_lab - 1), "removed_groups": len(dropped),
                 "removed_ink_share": round(float(share[dropped].sum()), 4),
                 "removed_boxes": [[int(stats[i][0] * w / sw), int(stats[i][1] * h / sh),
                                    int((stats[i][0] + stats[i][2]) * w / sw), int((stats[i][1] + stats[i][3]) * h / sh)]
                                   for i in dropped[:8]]}
