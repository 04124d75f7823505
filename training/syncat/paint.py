"""Cat labels and colours per vertex: seg2cat classes from the shape's distance groups, fur patterns,
eyes, nose pad, inner ears and the mouth line painted procedurally in 3D (local cat frame, metres).

Labels (pix2pix3D seg2cat, backend/labels.py ``CAT``; why these choices: docs/syncat.md):

* eyes 4: where the eye group defines the surface (the visible part of the eyeball);
* ear 2: per ear, where that ear's shell is nearer than the face group, on the ear's own side of the head
  and at least ``EAR_GAP_M`` from the midline (the smooth blend at the base and the crown between the ears
  are face), so every cat has two separate ears;
* mouth 3: the nose pad, the philtrum line below it and a band along the mouth line;
* whiskers 5: the front of the two whisker pads (where the whisker roots are), mouth excluded;
* face 1: all other fur, the neck and chest included.

Fur patterns: solid, tabby (forehead stripes and curved cheek/body stripes), bicolour (white muzzle,
chin, chest and a blaze), calico (white with orange and black patches), colourpoint (pale coat, dark
mask, ears and neck gradient; blue eyes).
"""
from __future__ import annotations

import numpy as np

from backend.labels import CAT

from .shapes import CatShape, ear_coords, eye_uv, sd_ellipse2d, sd_ellipsoid

FACE, EAR, MOUTH, EYES, WHISKERS = (CAT.ids[n] for n in ("face", "ear", "mouth", "eyes", "whiskers"))
#: Half width (metres, local cat frame) of the crown band between the ears that is always face: long-faced
#: and big-eared cats' ear shells meet over the midline, and without the band their ear labels are one piece.
#: 8 mm leaves every domestic, round-faced and kitten head of seeds 2000-2199 unchanged (their ear labels
#: keep 9.1 mm or more from the midline).
EAR_GAP_M = 0.008

PATTERNS: dict[str, float] = {"solid": 0.24, "tabby": 0.30, "bicolour": 0.20, "calico": 0.12, "colourpoint": 0.14}
FUR = {"black": (0.07, 0.07, 0.08), "grey": (0.46, 0.48, 0.52), "orange": (0.86, 0.52, 0.22),
       "cream": (0.93, 0.82, 0.64), "brown": (0.48, 0.33, 0.2), "white": (0.95, 0.95, 0.93),
       "silver": (0.76, 0.76, 0.77), "chocolate": (0.36, 0.22, 0.14)}
IRIS = {"green": (0.42, 0.66, 0.24), "yellow": (0.88, 0.76, 0.2), "amber": (0.86, 0.52, 0.14),
        "hazel": (0.6, 0.56, 0.26), "blue": (0.35, 0.56, 0.88), "copper": (0.78, 0.4, 0.12)}
NOSE = {"pink": (0.88, 0.56, 0.56), "brick": (0.68, 0.34, 0.28), "black": (0.14, 0.12, 0.12),
        "grey": (0.5, 0.46, 0.5)}


def mouth_curves(shape: CatShape, n: int = 24) -> dict[str, np.ndarray]:
    """Front-view (x, z) polylines (K, 2) metres of the philtrum (nose tip to mouth centre) and the two
    halves of the mouth line (centre to each corner), local cat frame."""
    tip_z = shape.nose_c[2] - 0.55 * shape.nose_h
    zm = shape.pad_c[2] - 0.8 * shape.pad_r[2]
    t = np.linspace(0, 1, n)
    phil = np.stack([np.zeros(n), tip_z + (zm - tip_z) * t], 1)
    out = {"philtrum": phil}
    for name, side in (("mouth_r", -1.0), ("mouth_l", 1.0)):
        x = side * shape.mouth_w * t
        z = zm + 0.0035 * np.sin(np.pi * t) - shape.mouth_droop * t ** 2
        out[name] = np.stack([x, z], 1)
    return out


def _dist_to_polyline(q: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (N,) of 2D points ``q (N, 2)`` to a polyline ``line (K, 2)``."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(((q[:, None, :] - a[None]) * ab[None]).sum(-1) / np.maximum((ab ** 2).sum(-1), 1e-12), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(q[:, None, :] - closest, axis=-1).min(1)


def ear_vertices(verts: np.ndarray, groups: dict) -> np.ndarray:
    """(V,) bool: vertices ``verts (V, 3)`` (local frame, metres) labelled ear before the eyes are taken out:
    each ear (``ear_r`` on -X, ``ear_l`` on +X) where its shell is nearer than the face group, on its own
    side at least ``EAR_GAP_M`` from the midline (:func:`shapes.cat_groups` distances, metres)."""
    right = (groups["ear_r"] < groups["face"]) & (verts[:, 0] <= -EAR_GAP_M)
    left = (groups["ear_l"] < groups["face"]) & (verts[:, 0] >= EAR_GAP_M)
    return right | left


def vertex_labels(shape: CatShape, verts: np.ndarray, normals: np.ndarray, groups: dict) -> np.ndarray:
    """seg2cat label (V,) uint8 of each vertex ``verts (V, 3)`` (local frame, metres; ``normals (V, 3)``
    unit) from the group distances of :func:`shapes.cat_groups`."""
    from .shapes import smin

    lab = np.full(len(verts), FACE, np.uint8)
    eye = groups["eyes"] < smin(groups["face"], groups["ears"], 0.012)
    ear = ~eye & ear_vertices(verts, groups)
    lab[ear] = EAR
    front = (normals[:, 1] < -0.25) & (verts[:, 1] < shape.muzzle_c[1])
    pads = front & (groups["pads"] < 0.0025) & ~ear & ~eye
    lab[pads] = WHISKERS
    mouth = (groups["nose"] < 0.0015) & (normals[:, 1] < 0.2)
    curves = mouth_curves(shape)
    allpts = np.concatenate(list(curves.values()))
    near = np.flatnonzero(front & (np.abs(verts[:, 0]) < np.abs(allpts[:, 0]).max() + 0.003)
                          & (verts[:, 2] > allpts[:, 1].min() - 0.003) & (verts[:, 2] < allpts[:, 1].max() + 0.003))
    band = np.full(len(near), np.inf)
    for name, line in curves.items():
        half_width = 0.0015 if name == "philtrum" else 0.002
        band = np.minimum(band, _dist_to_polyline(verts[near][:, [0, 2]], line) - half_width)
    mouth[near[band < 0]] = True
    lab[mouth & ~eye & ~ear] = MOUTH
    lab[eye] = EYES
    return lab


def sample_coat(rng: np.random.Generator, archetype: str) -> dict:
    """Random coat: pattern, colours (sRGB floats in [0, 1]), iris, pupil, nose and pattern parameters."""
    names = list(PATTERNS)
    p = np.array([PATTERNS[n] for n in names])
    pattern = str(rng.choice(names, p=p / p.sum()))
    pick = lambda opts: str(opts[int(rng.integers(len(opts)))])  # noqa: E731
    if pattern == "solid":
        base = pick(["black", "grey", "orange", "cream", "brown", "white", "chocolate"])
    elif pattern == "tabby":
        base = pick(["brown", "grey", "orange", "silver", "cream"])
    elif pattern == "bicolour":
        base = pick(["black", "grey", "orange", "brown", "black"])
    elif pattern == "calico":
        base = "white"
    else:
        base = pick(["cream", "white"])
    iris = "blue" if pattern == "colourpoint" else pick(["green", "yellow", "amber", "hazel", "copper", "green",
                                                         "yellow"] + (["blue"] if base == "white" else []))
    nose = pick(["black", "grey", "brick"]) if base in ("black", "grey", "brown", "chocolate") else pick(
        ["pink", "pink", "brick"])
    if pattern == "colourpoint":
        nose = pick(["black", "brick", "grey"])
    jit = lambda c: np.clip(np.array(c) * rng.uniform(0.9, 1.1, 3), 0, 1)  # noqa: E731
    coat = {"pattern": pattern, "base": base, "base_rgb": jit(FUR[base]).tolist(), "iris": iris,
            "iris_rgb": jit(IRIS[iris]).tolist(), "nose": nose, "nose_rgb": jit(NOSE[nose]).tolist(),
            "inner_ear_rgb": jit((0.9, 0.66, 0.64)).tolist(),
            "pupil": "round" if rng.random() < (0.6 if archetype == "kitten" else 0.3) else "slit",
            "pupil_size": float(rng.uniform(0.25, 0.5)), "ear_tufts": bool(rng.random() < 0.35),
            "stripe_m": float(rng.uniform(0.012, 0.02)), "white_extent": float(rng.uniform(0.0, 1.0)),
            "noise": rng.normal(0, 1, (6, 4)).tolist()}
    if pattern == "tabby":
        coat["stripe_rgb"] = (np.array(coat["base_rgb"]) * rng.uniform(0.25, 0.45)).tolist()
    if pattern == "calico":
        coat["patch_rgb"] = [jit(FUR["orange"]).tolist(), jit(FUR["black"]).tolist()]
    if pattern == "colourpoint":
        coat["point_rgb"] = jit(FUR[pick(["chocolate", "grey", "brown", "black"])]).tolist()
    return coat


def _noise(p: np.ndarray, coefs: np.ndarray, scale_m: float) -> np.ndarray:
    """Smooth random field (N,) in about [-1, 1]: a sum of 6 random plane waves of wavelength ~scale_m."""
    out = np.zeros(len(p))
    for c in np.asarray(coefs):
        d = c[:3] / (np.linalg.norm(c[:3]) + 1e-9)
        out += np.sin(2 * np.pi * (p @ d) / (scale_m * (0.7 + 0.3 * abs(c[3]))) + 3 * c[3])
    return out / np.sqrt(len(coefs))


def _white_areas(shape: CatShape, p: np.ndarray, extent: float) -> np.ndarray:
    """(N,) bool: the bicolour white (muzzle, chin, chest, blaze) grown by ``extent`` in [0, 1]."""
    grow = 0.004 + 0.014 * extent
    muzzle = sd_ellipsoid(p, shape.muzzle_c, np.asarray(shape.muzzle_r) * (1.2 + 0.3 * extent)) < grow
    chin = sd_ellipsoid(p, shape.chin_c, np.asarray(shape.chin_r) * 1.5) < grow
    chest = (p[:, 2] < shape.chin_c[2] - 0.005) & (p[:, 1] < 0.04 * extent)
    blaze = (np.abs(p[:, 0]) < 0.004 + 0.02 * extent * np.clip((shape.eye_c[1] + 0.03 - p[:, 2]) / 0.05, 0, 1)) & (
        p[:, 1] < -0.04) & (p[:, 2] < shape.eye_c[1] + 0.03)
    return muzzle | chin | chest | blaze


def coat_colours(shape: CatShape, coat: dict, p: np.ndarray) -> np.ndarray:
    """Fur colour (N, 3) sRGB floats of points ``p (N, 3)`` (local frame) for the coat's pattern."""
    base = np.array(coat["base_rgb"])
    col = np.tile(base, (len(p), 1))
    pat = coat["pattern"]
    nz = _noise(p, np.array(coat["noise"]), 0.08)
    if pat == "tabby":
        fore = (p[:, 2] > shape.eye_c[1] + 0.012) & (p[:, 1] < 0.0)
        phase_f = p[:, 0] / coat["stripe_m"] + 0.5
        phase_b = (p[:, 2] + 0.35 * np.abs(p[:, 0]) + 0.004 * nz) / (1.4 * coat["stripe_m"])
        phase = np.where(fore, phase_f + 0.15 * nz, phase_b)
        dark = np.cos(2 * np.pi * phase) > 0.45 + 0.25 * _noise(p * 1.7, np.array(coat["noise"]), 0.05)
        col[dark] = coat["stripe_rgb"]
    elif pat in ("bicolour", "calico"):
        if pat == "calico":
            n2 = _noise(p, np.array(coat["noise"])[::-1], 0.07)
            col[:] = np.where((nz > 0.1)[:, None], coat["patch_rgb"][0], np.where((n2 > 0.2)[:, None],
                                                                                  coat["patch_rgb"][1], base))
        white = _white_areas(shape, p, coat["white_extent"] if pat == "bicolour" else 0.5 + 0.5 * coat["white_extent"])
        col[white] = FUR["white"]
    elif pat == "colourpoint":
        mask = sd_ellipsoid(p, shape.muzzle_c, np.asarray(shape.muzzle_r) * 2.2)
        w = np.clip(1 - mask / 0.03, 0, 1)
        w = np.maximum(w, np.clip((p[:, 2] - shape.ear_base[2]) / 0.03, 0, 1))  # ears and the top of the head
        col = col * (1 - w[:, None]) + np.array(coat["point_rgb"]) * w[:, None]
    return np.clip(col * (1 + 0.05 * nz)[:, None], 0, 1)


def vertex_colours(shape: CatShape, coat: dict, verts: np.ndarray, normals: np.ndarray, labels: np.ndarray,
                   eye_y: tuple[float, float]) -> np.ndarray:
    """Vertex colours (V, 3) sRGB floats: coat pattern, inner ears, nose pad, mouth line, eyes."""
    col = coat_colours(shape, coat, verts)
    # inner ears: the front (concave) side inside an inset triangle; optional light tufts
    for side in (-1.0, 1.0):
        q = ear_coords(shape, verts, side)
        s, u, n = q[:, 0], q[:, 1], q[:, 2]
        w = shape.ear_half_w * (1 - np.clip(u, 0, None) / shape.ear_h)
        inner = (labels == EAR) & (np.abs(s) < 0.72 * w) & (u > 0.004) & (u < 0.85 * shape.ear_h) & (
            n < shape.ear_cup * ((s / np.maximum(w, 1e-3)) ** 2 - 1) * np.clip(1 - u / shape.ear_h, 0, 1) + 0.001)
        c = np.array(coat["inner_ear_rgb"])
        if coat["ear_tufts"]:
            streak = np.cos(2 * np.pi * s / 0.006) > 0.3
            c = np.where(streak[:, None], np.array(FUR["white"]) * 0.97, c)
        col[inner] = c[inner] if c.ndim == 2 else c
    # nose pad, philtrum and mouth line
    mouth = labels == MOUTH
    from .shapes import sd_nose

    nose = mouth & (sd_nose(shape, verts) < 0.0015)
    col[mouth & ~nose] = col[mouth & ~nose] * 0.35
    col[nose] = coat["nose_rgb"]
    # eyes: iris, pupil, dark rim, a highlight
    eye = labels == EYES
    if eye.any():
        for side in (-1.0, 1.0):
            sel = eye & (np.sign(verts[:, 0]) == side)
            u, v = eye_uv(shape, verts[sel], side)
            aw, ah = shape.eye_almond
            rr = np.sqrt((u / aw) ** 2 + (v / ah) ** 2)
            c = np.array(coat["iris_rgb"])[None] * (0.75 + 0.45 * np.clip(rr, 0, 1))[:, None]
            pw = (0.12 if coat["pupil"] == "slit" else coat["pupil_size"]) * aw
            ph = (0.8 if coat["pupil"] == "slit" else coat["pupil_size"] * aw / ah) * ah
            c[(u / pw) ** 2 + (v / ph) ** 2 < 1] = 0.03
            c[sd_ellipse2d(u, v, aw, ah) > -0.0018] = 0.05
            hx = verts[sel, 0] - (side * shape.eye_c[0] - 0.35 * aw)
            hz = verts[sel, 2] - (shape.eye_c[1] + 0.35 * ah)
            c[hx ** 2 + hz ** 2 < (0.16 * ah) ** 2] = 0.97
            col[sel] = c
    return np.clip(col, 0, 1)
