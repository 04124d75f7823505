"""One SynHead scene per seed: head, brows, hair, bust, glasses and colours, placed in the tri-plane box.

Placement (the randomised framing of the data set): the head is centred (x = 0, y = middle of the head
depth, z = middle between crown and chin) at ``CANONICAL_HEAD_CENTRE_M`` and then scaled by
``s ~ U(0.9, 1.1)`` about that point and shifted by up to +-5 % of the box in x and z. Since generator
0.2.0, 60 % of the heads are also turned slightly (yaw +-10, pitch +-6, roll +-5 degrees) with the whole
bust, as real drawings often are. The transform is
applied to the 3D geometry, so the input-view mask, the sketch and the mesh always line up exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from backend.coords import BOX_SIZE_M
from backend.labels import LABEL_IDS

from . import appearance as appearance_mod
from .accessories import bust_meshes, glasses_meshes
from .hair import hair_mesh, sample_hair_spec
from .heads import head_template, head_vertices, sample_head_params
from .labels import paint_brows

#: Where the head centre goes in the box before the random framing (metres, canonical frame).
CANONICAL_HEAD_CENTRE_M = np.array([0.0, 0.0, 0.035])
SCALE_RANGE = (0.9, 1.1)
SHIFT_FRACTION = 0.05
GLASSES_PROBABILITY = 0.10
#: Small head turns (generator 0.2.0): probability and maximum yaw (about Z), pitch (about X) and roll
#: (about the view axis Y), degrees. Drawn from their own random stream, so the rest of a seed's
#: scene is the same as in generator 0.1.0.
POSE_PROBABILITY = 0.6
POSE_MAX_DEG = {"yaw": 10.0, "pitch": 6.0, "roll": 5.0}
IRIS_HALF_ANGLE = 0.50  # radians: iris diameter ~11.5 mm on a ~24 mm eyeball
PUPIL_HALF_ANGLE = 0.20


@dataclass
class Part:
    """One closed mesh of the scene with per-vertex labels (uint8 ids) and colours (float sRGB)."""

    name: str
    mesh: trimesh.Trimesh
    labels: np.ndarray
    colors: np.ndarray
    rest: np.ndarray | None = None  # (V, 3) rest-template positions (skin only), for per-pixel brows


@dataclass
class Scene:
    """All parts of one head in the box frame plus what the renderers and sketchers need."""

    seed: int
    parts: list[Part]
    eyes: dict  # {"centres": (2,3), "axes": (2,3), "radius": float} in box-frame metres
    appearance: dict
    params: dict
    placement: dict
    skin_forward: np.ndarray | None = None  # (V_skin,) bool: skin vertices facing forward (brow area)
    _combined: trimesh.Trimesh | None = field(default=None, repr=False)

    def combined(self):
        """(mesh, vertex_labels, vertex_colors, face_part) of all parts concatenated."""
        if self._combined is None:
            meshes = [p.mesh for p in self.parts]
            offs = np.cumsum([0] + [len(m.vertices) for m in meshes])
            verts = np.concatenate([m.vertices for m in meshes])
            faces = np.concatenate([m.faces + o for m, o in zip(meshes, offs[:-1])])
            mesh = trimesh.Trimesh(verts, faces, process=False)
            self._combined = mesh
            self._labels = np.concatenate([p.labels for p in self.parts]).astype(np.uint8)
            self._colors = np.concatenate([p.colors for p in self.parts]).astype(np.float32)
            self._face_part = np.concatenate([np.full(len(m.faces), i, np.int16) for i, m in enumerate(meshes)])
            # plain arrays (trimesh re-hashes its tracked arrays on cached-property access)
            self.vertices = np.asarray(verts, np.float64)
            self.faces = np.asarray(faces, np.int64)
            self.vertex_normals = np.array(mesh.vertex_normals, np.float64)
        return self._combined, self._labels, self._colors, self._face_part

    def ray_scene(self):
        """The Embree scene of all parts (built once): :class:`training.synhead.raycast.RayScene`."""
        if getattr(self, "_ray_scene", None) is None:
            from .raycast import RayScene

            self.combined()
            self._ray_scene = RayScene(self.vertices, self.faces)
        return self._ray_scene


def _vertex_colors(labels: np.ndarray, app: dict) -> np.ndarray:
    skin = np.array(app["skin_rgb"])
    table = np.tile(skin, (19, 1))
    table[LABEL_IDS["l_brow"]] = table[LABEL_IDS["r_brow"]] = app["brow_rgb"]
    table[LABEL_IDS["u_lip"]] = table[LABEL_IDS["l_lip"]] = app["lip_rgb"]
    table[LABEL_IDS["mouth"]] = app["mouth_rgb"]
    table[LABEL_IDS["l_eye"]] = table[LABEL_IDS["r_eye"]] = app["sclera_rgb"]
    table[LABEL_IDS["hair"]] = app["hair_rgb"]
    table[LABEL_IDS["cloth"]] = app["cloth_rgb"]
    table[LABEL_IDS["eye_g"]] = app["glasses_rgb"]
    table[LABEL_IDS["neck"]] = skin * 0.92
    table[LABEL_IDS["nose"]] = skin * 1.0
    return table[labels]


def build_scene(seed: int) -> Scene:
    """Build the scene of ``seed`` (deterministic). Costs ~0.2-0.4 s on one core."""
    tpl = head_template()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E4D]))
    hp = sample_head_params(rng)
    v = head_vertices(tpl, hp)
    brow_labels, brow_shape = paint_brows(tpl, rng)
    app = appearance_mod.sample_appearance(rng, hp.phenotypes)
    hair_spec = sample_hair_spec(rng, hp.phenotypes["gender"])
    has_glasses = bool(rng.random() < GLASSES_PROBABILITY)
    scale = float(rng.uniform(*SCALE_RANGE))
    shift = rng.uniform(-SHIFT_FRACTION, SHIFT_FRACTION, 2) * BOX_SIZE_M
    # centre the head: crown/chin from fixed template vertices
    comp = tpl.component
    skin = comp == 0
    crown_z = v[skin, 2].max()
    chin_z = v[tpl.labels["chin_index"], 2]
    y_front, y_back = v[skin, 1].min(), v[skin, 1].max()
    c0 = np.array([0.0, (y_front + y_back) / 2, (crown_z + chin_z) / 2])
    v = v - c0  # head-centred, unscaled (the hair and bust are built in this frame)
    # skin surface (closed), eyes, tongue
    faces = tpl.faces
    fcomp = comp[faces[:, 0]]
    parts_local = []
    for ci, name in enumerate(("skin", "eye_l", "eye_r", "tongue")):
        f = faces[fcomp == ci]
        used = np.unique(f)
        remap = np.full(len(v), -1)
        remap[used] = np.arange(len(used))
        m = trimesh.Trimesh(v[used], remap[f], process=False)
        parts_local.append((name, m, brow_labels[used], tpl.rest_vertices[used]))
    skin_mesh = parts_local[0][1]
    # eyes: centres and forward axes
    eye_c, eye_ax, eye_r = [], [], []
    for name, m, _, _ in parts_local[1:3]:
        c = m.vertices.mean(0)
        front = m.vertices[np.argmin(m.vertices[:, 1])]
        eye_c.append(c)
        eye_ax.append((front - c) / np.linalg.norm(front - c))
        eye_r.append(np.linalg.norm(front - c))
    eye_c, eye_ax = np.array(eye_c), np.array(eye_ax)
    # hair around the cranium centre
    brow_z = float(np.polyval(tpl.labels["brow_lines"]["l"][2], 0.03)) - c0[2]
    cranium = np.array([0.0, 0.012, crown_z - c0[2] - 0.085])
    bounds = np.array([[-0.17, -0.19, -0.29], [0.17, 0.19, 0.21]])  # covers the box at any framing
    hmesh = hair_mesh(hair_spec, skin_mesh, cranium, brow_z, bounds)
    # bust
    cap = tpl.is_cap
    neck_centre = v[cap].mean(0) if cap.any() else np.array([0.0, 0.02, v[skin, 2].min()])
    loop_r = float(np.median(np.linalg.norm((v[skin & (v[:, 2] < neck_centre[2] + 0.01)] - neck_centre)[:, :2], axis=1)))
    shoulder_scale = 0.9 + 0.15 * hp.phenotypes["gender"] + 0.15 * (hp.phenotypes["weight"] - 0.5)
    bust, bust_params = bust_meshes(rng, neck_centre, loop_r, float(neck_centre[2]), shoulder_scale)
    acc = list(bust)
    glasses_params = None
    if has_glasses:
        ears = np.isin(brow_labels, [LABEL_IDS["l_ear"], LABEL_IDS["r_ear"]])
        ear_y = float(np.median(v[ears, 1]))
        ear_w = float(np.percentile(np.abs(v[skin & (np.abs(v[:, 2] - eye_c[:, 2].mean()) < 0.01), 0]), 95))
        g, glasses_params = glasses_meshes(rng, eye_c, float((eye_c[:, 1] - np.array(eye_r)).min()), ear_y, ear_w)
        acc += g
    # placement into the box
    pose_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9053]))
    pose = {k: 0.0 for k in POSE_MAX_DEG}
    if pose_rng.random() < POSE_PROBABILITY:
        pose = {k: float(pose_rng.uniform(-m, m)) for k, m in POSE_MAX_DEG.items()}
    R = _rotation(pose)
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = CANONICAL_HEAD_CENTRE_M + np.array([shift[0], 0.0, shift[1]])
    parts = []
    for name, m, lab, rest in parts_local:
        m = m.copy()
        m.apply_transform(T)
        parts.append(Part(name, m, lab.astype(np.uint8), _vertex_colors(lab, app), rest if name == "skin" else None))
    if hmesh is not None:
        hmesh.apply_transform(T)
        hl = np.full(len(hmesh.vertices), LABEL_IDS["hair"], np.uint8)
        shade = 1 + 0.08 * np.sin(hmesh.vertices[:, 0] * 900) * np.sin(hmesh.vertices[:, 2] * 300)
        parts.append(Part("hair", hmesh, hl, np.clip(_vertex_colors(hl, app) * shade[:, None], 0, 1)))
    for i, (m, lid) in enumerate(acc):
        m = m.copy()
        m.apply_transform(T)
        lab = np.full(len(m.vertices), lid, np.uint8)
        parts.append(Part(f"acc{i}_{lid}", m, lab, _vertex_colors(lab, app)))
    eyes = {"centres": eye_c @ T[:3, :3].T + T[:3, 3], "axes": eye_ax @ R.T, "radius": float(np.mean(eye_r) * scale)}
    params = {"phenotypes": {k: round(float(x), 5) for k, x in hp.phenotypes.items()},
              "local_changes": {k: round(float(x), 5) for k, x in hp.local_changes.items() if x != 0.0},
              "expressions": {k: round(float(x), 5) for k, x in hp.expressions.items()},
              "brows": brow_shape,
              "hair": hair_spec.to_json(), "glasses": glasses_params is not None,
              "glasses_params": glasses_params, "bust": bust_params}
    placement = {"scale": scale, "shift_m": [float(shift[0]), 0.0, float(shift[1])], "pose_deg": pose,
                 "head_centre_m": [float(x) for x in T[:3, 3]], "transform": T.tolist()}
    skin_used = np.unique(faces[fcomp == 0])
    return Scene(seed=int(seed), parts=parts, eyes=eyes, appearance=app, params=_jsonable(params),
                 placement=placement, skin_forward=tpl.labels["faces_forward"][skin_used])


def _rotation(pose: dict) -> np.ndarray:
    """3x3 rotation of the head about its centre: yaw about Z, then pitch about X, then roll about Y
    (degrees; positive yaw turns the face towards +X, the person's left)."""
    y, p, r = (np.radians(pose[k]) for k in ("yaw", "pitch", "roll"))
    rz = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(r), 0, np.sin(r)], [0, 1, 0], [-np.sin(r), 0, np.cos(r)]])
    return ry @ rx @ rz


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return round(float(x), 6)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
