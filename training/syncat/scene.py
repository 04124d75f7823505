"""One SynCat scene per seed: the cat mesh with labels and colours, placed in the tri-plane box, plus the
3D feature curves the sketches draw (nose, mouth, whiskers, pupils, inner ears, forehead marks).

The scene is a :class:`training.synhead.scene.Scene`, so SynHead's renderer (:mod:`training.synhead.render`),
ray caster and point sampler (:mod:`training.synhead.points`) work on it unchanged.

Placement: the cat is scaled by ``BASE_SCALE * U(0.9, 1.1)`` about its centre (middle of ear tips and chin,
middle of the head depth), turned slightly like SynHead's heads (same probability and ranges,
``training.synhead.scene.POSE_MAX_DEG``) and moved so that its ear tips are at ``TOP_Z_M`` (where SynHead
sketches' content starts, the median of backend/canonical_framing.json), then shifted by up to +-5 % of
the box in x and z.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import trimesh

from backend.coords import BOX_SIZE_M
from training.synhead.scene import (POSE_MAX_DEG, POSE_PROBABILITY, SCALE_RANGE, SHIFT_FRACTION, Part, Scene,
                                    _jsonable, _rotation)

from .paint import mouth_curves, sample_coat, vertex_colours, vertex_labels
from .shapes import cat_mesh, ear_frame, eye_face_depths, sample_cat_shape

#: Scale from the local cat frame into the box (the local frame is already ~2.2x life size).
BASE_SCALE = 1.2
#: Height of the ear tips in the box before the random shift (metres).
TOP_Z_M = 0.153


@dataclass
class CatScene(Scene):
    """A SynHead :class:`Scene` with the cat's feature curves: name -> list of (K, 3) polylines in box-frame
    metres (groups ``nose``, ``mouth``, ``whiskers``, ``pupil``, ``ear``, ``fur``)."""

    curves: dict = field(default_factory=dict)


def _feature_curves(shape, coat, eye_y, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Feature polylines in the local cat frame (see :class:`CatScene`)."""
    curves: dict[str, list[np.ndarray]] = {k: [] for k in ("nose", "mouth", "whiskers", "pupil", "ear", "fur")}
    nc = np.asarray(shape.nose_c)
    top = nc[2] + 0.45 * shape.nose_h
    y_nose = nc[1] - 0.008
    t = np.linspace(0, 1, 8)
    corners = [(-shape.nose_half_w, top), (shape.nose_half_w, top), (0.0, top - shape.nose_h)]
    tri = []
    for a, b in zip(corners, corners[1:] + corners[:1]):
        tri.append(np.stack([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t], 1)[:-1])
    tri = np.concatenate(tri + [tri[0][:1]])
    curves["nose"].append(np.stack([tri[:, 0], np.full(len(tri), y_nose), tri[:, 1]], 1))
    y_mouth = shape.pad_c[1] - 0.9 * shape.pad_r[1]
    for line in mouth_curves(shape, 12).values():
        curves["mouth"].append(np.stack([line[:, 0], np.full(len(line), y_mouth), line[:, 1]], 1))
    n_wh = int(rng.integers(3, 6))
    for side in (-1.0, 1.0):
        for k in range(n_wh):
            z0 = shape.pad_c[2] + (k / max(n_wh - 1, 1) - 0.5) * 1.2 * shape.pad_r[2]
            p0 = np.array([side * (shape.pad_c[0] + 0.5 * shape.pad_r[0]), shape.pad_c[1] - 0.6 * shape.pad_r[1], z0])
            length = rng.uniform(0.07, 0.12)
            slope = (k / max(n_wh - 1, 1) - 0.5) * rng.uniform(0.4, 0.9) + rng.normal(0, 0.06)
            s = np.linspace(0, 1, 10)
            x = p0[0] + side * length * s
            z = p0[2] + length * (slope * s - rng.uniform(0.05, 0.2) * s ** 2)
            curves["whiskers"].append(np.stack([x, p0[1] + 0.03 * s, z], 1))
    aw, ah = shape.eye_almond
    if rng.random() < 0.4:  # superciliary whiskers: a few short lines above each eye
        n_brow = int(rng.integers(2, 4))
        for i, side in enumerate((-1.0, 1.0)):
            for k in range(n_brow):
                x0 = shape.eye_c[0] - 0.4 * aw + k * 0.3 * aw
                z0 = shape.eye_c[1] + ah + 0.005
                s = np.linspace(0, 1, 6)
                length = rng.uniform(0.02, 0.035)
                x = side * (x0 + length * s * rng.uniform(0.3, 0.8))
                z = z0 + length * (s - 0.35 * s ** 2)
                curves["whiskers"].append(np.stack([x, np.full(6, eye_y[i]), z], 1))
    a = np.radians(shape.eye_tilt_deg)
    th = np.linspace(0, 2 * np.pi, 25)
    pw = (0.12 if coat["pupil"] == "slit" else coat["pupil_size"]) * aw
    ph = (0.8 if coat["pupil"] == "slit" else coat["pupil_size"] * aw / ah) * ah
    for i, side in enumerate((-1.0, 1.0)):
        u, v = pw * np.cos(th), ph * np.sin(th)
        dx = u * np.cos(a) - v * np.sin(a)
        dz = u * np.sin(a) + v * np.cos(a)
        x = side * (shape.eye_c[0] + dx)
        curves["pupil"].append(np.stack([x, np.full(len(x), eye_y[i] - shape.eye_proud_m), shape.eye_c[1] + dz], 1))
    for side in (-1.0, 1.0):
        base, r = ear_frame(shape, side)
        w0 = shape.ear_half_w
        pts = [(-0.7 * w0, 0.006), (0.0, 0.85 * shape.ear_h), (0.7 * w0, 0.006)]
        line = []
        for (s0, u0), (s1, u1) in pairwise(pts):
            s = s0 + (s1 - s0) * t
            u = u0 + (u1 - u0) * t
            w = np.maximum(w0 * (1 - u / shape.ear_h), 1e-3)
            n = shape.ear_cup * ((s / w) ** 2 - 1) * np.clip(1 - u / shape.ear_h, 0, 1) - 0.5 * shape.ear_thick
            line.append(base + np.stack([s, u, n], 1) @ r.T)
        curves["ear"].append(np.concatenate(line))
    if coat["pattern"] == "tabby":
        for k in range(-2, 3):
            x = k * coat["stripe_m"] * 0.9
            z = np.linspace(shape.eye_c[1] + 0.018, shape.eye_c[1] + 0.018 + rng.uniform(0.02, 0.04), 5)
            curves["fur"].append(np.stack([np.full(5, x), np.full(5, -shape.skull[1] * 0.9), z], 1))
    return curves


def build_cat_scene(seed: int) -> CatScene:
    """Build the cat scene of ``seed`` (deterministic): shape, mesh, labels, colours, placement, curves.

    Returns a :class:`CatScene` whose single part ``"cat"`` is a closed mesh in box-frame metres with seg2cat
    vertex labels and sRGB float colours; ``params`` holds the shape and coat, ``appearance`` the coat."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA7]))
    shape = sample_cat_shape(rng)
    coat = sample_coat(rng, shape.archetype)
    verts, faces, groups = cat_mesh(shape)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    normals = np.asarray(mesh.vertex_normals)
    labels = vertex_labels(shape, verts, normals, groups)
    eye_y = eye_face_depths(shape)
    colours = vertex_colours(shape, coat, verts, normals, labels, eye_y)
    curves = _feature_curves(shape, coat, eye_y, rng)
    scale = BASE_SCALE * float(rng.uniform(*SCALE_RANGE))
    shift = rng.uniform(-SHIFT_FRACTION, SHIFT_FRACTION, 2) * BOX_SIZE_M
    pose_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9053]))
    pose = {k: 0.0 for k in POSE_MAX_DEG}
    if pose_rng.random() < POSE_PROBABILITY:
        pose = {k: float(pose_rng.uniform(-m, m)) for k, m in POSE_MAX_DEG.items()}
    top = float(verts[:, 2].max())
    chin = float(shape.chin_c[2] - shape.chin_r[2])
    centre = np.array([0.0, (shape.nose_c[1] - 0.01 + shape.skull[1]) / 2, (top + chin) / 2])
    R = _rotation(pose)
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = -scale * R @ centre + np.array([shift[0], 0.0, TOP_Z_M - scale * (top - centre[2]) + shift[1]])
    mesh.apply_transform(T)
    tf = lambda p: np.asarray(p) @ T[:3, :3].T + T[:3, 3]  # noqa: E731
    box_curves = {k: [tf(c) for c in v] for k, v in curves.items()}
    eye_c = np.array([[side * shape.eye_c[0], eye_y[i] - shape.eye_proud_m + shape.eye_r, shape.eye_c[1]]
                      for i, side in enumerate((-1.0, 1.0))])
    eyes = {"centres": tf(eye_c), "axes": np.tile(R @ np.array([0.0, -1.0, 0.0]), (2, 1)),
            "radius": float(shape.eye_r * scale)}
    part = Part("cat", mesh, labels, colours.astype(np.float32))
    params = {"shape": shape.to_json(), "coat": {k: v for k, v in coat.items() if k != "noise"}}
    placement = {"scale": scale, "shift_m": [float(shift[0]), 0.0, float(shift[1])], "pose_deg": pose,
                 "head_centre_m": [float(x) for x in tf(centre)], "transform": T.tolist()}
    return CatScene(seed=int(seed), parts=[part], eyes=eyes, appearance=_jsonable(params["coat"]),
                    params=_jsonable(params), placement=placement, curves=box_curves)
