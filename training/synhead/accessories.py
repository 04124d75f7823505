"""Neck-and-shoulder bust with clothing, and eyeglasses: closed trimesh primitives (metres).

The bust is a capped neck cylinder (label neck 17) that starts inside anny's neck and ends inside an
ellipsoid torso (label cloth 18), so sketches with shoulder lines have something to match. Glasses are
two elliptical torus rims, a bridge and two temple bars (label eye_g 3), each a closed mesh.
"""
from __future__ import annotations

import numpy as np
import trimesh


def _cylinder_between(a: np.ndarray, b: np.ndarray, radius: float, sections: int = 16) -> trimesh.Trimesh:
    """Closed cylinder from point ``a`` to ``b`` (metres)."""
    return trimesh.creation.cylinder(radius=radius, segment=np.stack([a, b]), sections=sections)


def bust_meshes(rng: np.random.Generator, neck_centre: np.ndarray, neck_radius: float, neck_bottom_z: float,
                shoulder_scale: float) -> tuple[list[tuple[trimesh.Trimesh, int]], dict]:
    """Neck extension and torso: ``[(mesh, label_id), ...]`` plus the sampled parameters.

    Args:
        neck_centre: (3,) centre of anny's neck cap, metres (canonical head frame).
        neck_radius: mean radius of the cap, metres.
        neck_bottom_z: z of the cap, metres.
        shoulder_scale: ~1 (broader for heavier / male heads).
    """
    drop = rng.uniform(0.01, 0.035)
    top = neck_bottom_z - drop  # shoulder top at the neck
    rx = rng.uniform(0.17, 0.21) * shoulder_scale
    ry = rng.uniform(0.095, 0.12) * shoulder_scale
    rz = rng.uniform(0.09, 0.13)
    torso = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    torso.apply_scale([rx, ry, rz])
    torso.apply_translation([neck_centre[0], neck_centre[1] + 0.01, top - rz])
    neck = _cylinder_between(np.array([neck_centre[0], neck_centre[1], neck_bottom_z + 0.02]),
                             np.array([neck_centre[0], neck_centre[1] + 0.005, top - 0.03]),
                             neck_radius * rng.uniform(0.96, 1.04), sections=24)
    return [(neck, 17), (torso, 18)], {"shoulder_half_width_m": rx, "torso_depth_m": ry, "torso_height_m": rz,
                                      "neck_drop_m": drop}


def _ellipse_torus(centre: np.ndarray, half_w: float, half_h: float, tube: float) -> trimesh.Trimesh:
    """Closed torus in the X-Z plane (axis along Y), elliptical with half axes ``half_w``, ``half_h``."""
    t = trimesh.creation.torus(major_radius=1.0, minor_radius=tube / max(half_w, half_h), major_sections=32,
                               minor_sections=8)
    # trimesh's torus lies in the X-Y plane (axis Z): rotate to X-Z, then stretch
    t.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    t.apply_scale([half_w, max(half_w, half_h), half_h])
    t.apply_translation(centre)
    return t


def glasses_meshes(rng: np.random.Generator, eye_centres: np.ndarray, eye_front_y: float, ear_y: float,
                   ear_half_width: float) -> tuple[list[tuple[trimesh.Trimesh, int]], dict]:
    """Eyeglasses in front of the eyes: ``[(mesh, 3), ...]`` and their parameters.

    Args:
        eye_centres: (2, 3) eyeball centres (person's left first), metres.
        eye_front_y: y of the cornea front (most negative y of the eyeballs), metres.
        ear_y: y of the ears (where the temples end), metres.
        ear_half_width: |x| of the head side at the ears, metres.
    """
    half_w = rng.uniform(0.021, 0.029)
    half_h = half_w * rng.uniform(0.55, 0.9)
    tube = rng.uniform(0.0012, 0.0025)
    y = eye_front_y - rng.uniform(0.010, 0.016)
    dz = rng.uniform(-0.004, 0.002)
    parts = []
    rims = []
    for c in eye_centres:
        centre = np.array([c[0] + np.sign(c[0]) * 0.002, y, c[2] + dz])
        rims.append(centre)
        parts.append((_ellipse_torus(centre, half_w, half_h, tube), 3))
    inner = [r - np.array([np.sign(r[0]) * half_w, 0, -half_h * 0.3]) for r in rims]
    parts.append((_cylinder_between(inner[0], inner[1], tube * 0.9, 8), 3))
    for r in rims:
        s = np.sign(r[0])
        a = np.array([r[0] + s * half_w, y, r[2] + half_h * 0.3])
        b = np.array([s * (ear_half_width + 0.004), ear_y, r[2] + half_h * 0.1])
        parts.append((_cylinder_between(a, b, tube * 0.8, 8), 3))
    return parts, {"rim_half_width_m": half_w, "rim_half_height_m": half_h, "tube_m": tube}
