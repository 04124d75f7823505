"""Clean-style stroke JSON from the input-view label map: what an artist would draw, as grouped strokes.

Contours of label regions are traced with OpenCV (``findContours``), cut into runs where a per-pixel
predicate holds (e.g. "on the silhouette and inside hair"), smoothed, simplified (Douglas-Peucker) and
written in the stroke format of docs/contracts.md section 2 (frame "normalized", y down) with a
``group`` per stroke: hair, hair_flow, face_outline, ear, brow, eye, iris, lid, nose, lips, neck,
shoulders, glasses. Hair-flow strokes are pieces of iso-distance lines inside the hair region, 2 to 24
of them depending on the hair area. Noses are drawn as open lines (the lower part: wings and base), not a closed outline.
"""
from __future__ import annotations

import cv2
import numpy as np

from backend.labels import LABEL_IDS as L

FACE_LABELS = [L["skin"], L["nose"], L["l_eye"], L["r_eye"], L["l_brow"], L["r_brow"], L["mouth"], L["u_lip"],
               L["l_lip"]]


def _contours(mask: np.ndarray) -> list[np.ndarray]:
    cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return [c[:, 0, :] for c in cs if len(c) >= 8]


def _runs(pts: np.ndarray, keep: np.ndarray, closed: bool) -> list[np.ndarray]:
    """Split a contour into maximal runs of kept points."""
    if keep.all():
        return [np.concatenate([pts, pts[:1]])] if closed else [pts]
    if closed and not keep.all():
        start = int(np.argmin(keep))
        pts, keep = np.roll(pts, -start, 0), np.roll(keep, -start)
    out, cur = [], []
    for p, k in zip(pts, keep):
        if k:
            cur.append(p)
        elif cur:
            out.append(np.array(cur))
            cur = []
    if cur:
        out.append(np.array(cur))
    return out


def _smooth(p: np.ndarray, k: int = 5) -> np.ndarray:
    if len(p) < k + 2:
        return p.astype(np.float64)
    pad = np.concatenate([np.repeat(p[:1], k // 2, 0), p, np.repeat(p[-1:], k // 2, 0)]).astype(np.float64)
    ker = np.ones(k) / k
    return np.stack([np.convolve(pad[:, i], ker, mode="valid") for i in range(2)], 1)


def _simplify(p: np.ndarray, eps: float = 0.8) -> np.ndarray:
    q = cv2.approxPolyDP(p.astype(np.float32).reshape(-1, 1, 2), eps, False)[:, 0, :]
    return q.astype(np.float64)


def _add(strokes: list, runs: list[np.ndarray], group: str, size: int, min_len: int = 6) -> None:
    for r in runs:
        if len(r) < min_len:
            continue
        q = _simplify(_smooth(r))
        if len(q) < 2:
            continue
        strokes.append({"points": ((q + 0.5) / size).round(5).tolist(), "group": group})


def strokes_from_labels(label: np.ndarray, rng: np.random.Generator, iris: list | None = None) -> dict:
    """Stroke JSON (frame "normalized") of a clean line drawing of an input-view label map.

    Args:
        label: (R, R) uint8 label ids of the input view.
        rng: randomness for stroke widths, dropped details and hair-flow strokes.
        iris: optional [(col, row, radius_px), ...] iris circles in pixels (person's left first).

    Returns:
        the stroke document; every stroke has ``points``, ``width`` (fraction of the image height) and
        ``group``.
    """
    size = label.shape[0]
    fg = label > 0
    k3 = np.ones((3, 3), np.uint8)
    near = lambda m: cv2.dilate(m.astype(np.uint8), k3, iterations=2) > 0  # noqa: E731
    near_bg = near(~fg)
    hair = label == L["hair"]
    face = np.isin(label, FACE_LABELS)
    ears = np.isin(label, [L["l_ear"], L["r_ear"]])
    neck = label == L["neck"]
    cloth = label == L["cloth"]
    glasses = label == L["eye_g"]
    strokes: list[dict] = []
    # silhouette, grouped by what is inside
    for c in _contours(fg):
        lab_in = label[c[:, 1], c[:, 0]]
        for grp, ids in (("hair", [L["hair"]]), ("face_outline", FACE_LABELS), ("ear", [L["l_ear"], L["r_ear"]]),
                         ("neck", [L["neck"]]), ("shoulders", [L["cloth"]]), ("glasses", [L["eye_g"]])):
            _add(strokes, _runs(c, np.isin(lab_in, ids), True), grp, size)
    # hairline / fringe edge (hair against face or neck, not against the background)
    for c in _contours(hair):
        keep = ~near_bg[c[:, 1], c[:, 0]] & (near(face | ears | neck)[c[:, 1], c[:, 0]])
        _add(strokes, _runs(c, keep, True), "hair", size)
    # jaw: face against the neck
    near_neck = near(neck | cloth)
    for c in _contours(face):
        keep = near_neck[c[:, 1], c[:, 0]] & ~near_bg[c[:, 1], c[:, 0]]
        _add(strokes, _runs(c, keep, True), "face_outline", size)
    # ears (inner side against the face)
    for c in _contours(ears):
        keep = ~near_bg[c[:, 1], c[:, 0]] & ~near(hair)[c[:, 1], c[:, 0]]
        _add(strokes, _runs(c, keep, True), "ear", size)
    # collar
    near_cloth = near(cloth)
    for c in _contours(neck):
        keep = near_cloth[c[:, 1], c[:, 0]] & ~near_bg[c[:, 1], c[:, 0]]
        _add(strokes, _runs(c, keep, True), "shoulders", size)
    # brows: a closed outline, or (half of the sketches, generator 0.2.0) one stroke along the brow's
    # centre line as wide as the brow is thick, the way people often draw them
    brow_as_line = bool(rng.random() < 0.5)
    for lid in (L["l_brow"], L["r_brow"]):
        m = label == lid
        if brow_as_line and m.sum() >= 8:
            cols = np.flatnonzero(m.any(0))
            rows = np.array([np.nonzero(m[:, c])[0].mean() for c in cols])
            thick = float(np.median(m[:, cols].sum(0)))
            pts = _simplify(_smooth(np.stack([cols, rows], 1)))
            strokes.append({"points": ((pts + 0.5) / size).round(5).tolist(), "group": "brow",
                            "width": round(max(1.0, thick * rng.uniform(0.5, 0.9)) / size, 5)})
            continue
        for c in _contours(m):
            _add(strokes, [np.concatenate([c, c[:1]])], "brow", size, min_len=4)
    # eyes: upper contour = lid, lower = eye
    for lid in (L["l_eye"], L["r_eye"]):
        m = label == lid
        for c in _contours(m):
            up = ~m[np.clip(c[:, 1] - 2, 0, size - 1), c[:, 0]]  # outside just above: the upper contour
            _add(strokes, _runs(c, up, True), "lid", size, min_len=3)
            _add(strokes, _runs(c, ~up, True), "eye", size, min_len=3)
    if iris:
        eye_any = cv2.dilate(np.isin(label, [L["l_eye"], L["r_eye"]]).astype(np.uint8), k3) > 0
        for (cx, cy, rad) in iris:
            t = np.linspace(0, 2 * np.pi, 40)
            circ = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
            ci = np.clip(np.round(circ).astype(int), 0, size - 1)
            keep = eye_any[ci[:, 1], ci[:, 0]]
            for r in _runs(circ, keep, False):
                if len(r) >= 3:
                    strokes.append({"points": ((r + 0.5) / size).round(5).tolist(), "group": "iris"})
            if 0 <= int(cy) < size and 0 <= int(cx) < size and eye_any[int(cy), int(cx)]:
                strokes.append({"points": [[round((cx + 0.5) / size, 5), round((cy + 0.5) / size, 5)]],
                                "group": "iris", "width": round(rad * 0.9 / size, 5)})
    # nose: lower part of the nose region (wings and base) as open lines
    nose = label == L["nose"]
    if nose.any():
        rows = np.nonzero(nose)[0]
        top, bot = rows.min(), rows.max()
        cut = top + rng.uniform(0.55, 0.7) * (bot - top)
        for c in _contours(nose):
            keep = c[:, 1] > cut
            _add(strokes, _runs(c, keep, True), "nose", size, min_len=4)
    # lips: outer contour and the mouth line
    lips = np.isin(label, [L["u_lip"], L["l_lip"], L["mouth"]])
    for c in _contours(lips):
        _add(strokes, [np.concatenate([c, c[:1]])], "lips", size)
    upper = label == L["u_lip"]
    near_lower = near(np.isin(label, [L["l_lip"], L["mouth"]]))
    for c in _contours(upper):
        keep = near_lower[c[:, 1], c[:, 0]]
        _add(strokes, _runs(c, keep, True), "lips", size, min_len=4)
    # glasses
    for c in _contours(glasses):
        _add(strokes, [np.concatenate([c, c[:1]])], "glasses", size)
    # hair flow: pieces of iso-distance lines inside the hair (parallel to its outline); more of them
    # for more hair, as people draw hair as texture (generator 0.2.0; 0.1.0 drew 2-7 from erosions)
    n_hair = int(hair.sum())
    if n_hair > 500:
        dist = cv2.distanceTransform(hair.astype(np.uint8), cv2.DIST_L2, 3)
        n_flow = int(np.clip(rng.uniform(0.5, 1.5) * n_hair / 2500, 2, 24))
        levels = {}
        for _ in range(n_flow):
            k = int(rng.integers(4, max(5, min(40, int(dist.max()) - 1))))
            if k not in levels:
                levels[k] = _contours(dist > k)
            cs = levels[k]
            if not cs:
                continue
            c = cs[int(rng.integers(0, len(cs)))]
            n = len(c)
            ln = int(min(n, rng.integers(25, 140)))
            s0 = int(rng.integers(0, n))
            piece = np.roll(c, -s0, 0)[:ln]
            _add(strokes, [piece], "hair_flow", size)
    base_w = rng.uniform(1.2, 3.2) / size
    for s in strokes:
        if "width" not in s:
            s["width"] = round(base_w * (0.7 if s["group"] in ("hair_flow", "iris", "nose") else 1.0), 5)
    return {"version": 1, "frame": "normalized", "width": size, "height": size, "strokes": strokes}
