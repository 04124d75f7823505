"""3D supervision points of one scene in the tri-plane box (docs/contracts.md section 3, ``points.npz``).

About 16k points: uniform in the box (kind 0), near the surface (kind 1: surface samples plus Gaussian
offsets of 2 mm and 10 mm), on the surface (kind 2). ``occ`` is 1 inside any closed part of the ground
truth (per-part ray-parity inside tests on one embree scene, see :func:`inside_any_part`); ``label`` and ``rgb`` come from the nearest
surface sample (KD-tree over area-weighted samples of all parts).
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
from scipy.spatial import cKDTree

from backend.frame import metres_to_box, BOX_SIZE_M

N_UNIFORM, N_NEAR, N_SURFACE = 6000, 6000, 4000


def _surface_samples(scene, n: int, rng: np.random.Generator):
    _, vlab, vcol, _ = scene.combined()
    tri = scene.vertices[scene.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    fi = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = (tri[fi] * bary[..., None]).sum(1)
    f = scene.faces[fi]
    lab = vlab[f][np.arange(n), np.argmax(bary, 1)]
    col = (vcol[f] * bary[..., None]).sum(1)
    return pts, lab, col


def inside_any_part(scene, xyz: np.ndarray) -> np.ndarray:
    """(N,) bool: the points (metres) lie inside at least one closed part of the scene.

    One ray per point (a fixed, slightly oblique direction) against the combined mesh with all hits;
    the crossings are counted per part and a point is inside a part when its count is odd (parity
    test per closed part, so overlapping parts such as hair over the scalp do not cancel out)."""
    _, _, _, fpart = scene.combined()
    counts = scene.ray_scene().crossing_counts(xyz, np.array([0.0123, 0.0457, 1.0]), fpart.astype(np.int64),
                                              len(scene.parts))
    return (counts % 2 == 1).any(1)


def sample_points(scene, rng: np.random.Generator) -> dict:
    """Points of one scene: dict of ``xyz`` float16 (N, 3) normalised box coordinates, ``occ`` uint8,
    ``label`` uint8, ``rgb`` uint8 (N, 3), ``kind`` uint8 (see module docstring)."""
    half = BOX_SIZE_M / 2
    surf, slab, scol = _surface_samples(scene, 30000, rng)
    inside = (np.abs(surf) < half).all(1)
    surf_in = np.flatnonzero(inside)
    uni = rng.uniform(-half, half, (N_UNIFORM, 3))
    pick = rng.choice(surf_in, size=N_NEAR)
    sig = np.where(rng.random(N_NEAR) < 0.5, 0.002, 0.010)
    near = np.clip(surf[pick] + rng.normal(0, 1, (N_NEAR, 3)) * sig[:, None], -half, half)
    on = surf[rng.choice(surf_in, size=N_SURFACE)]
    xyz = np.concatenate([uni, near, on])
    kind = np.concatenate([np.zeros(N_UNIFORM), np.ones(N_NEAR), np.full(N_SURFACE, 2)]).astype(np.uint8)
    occ = inside_any_part(scene, xyz)
    tree = cKDTree(surf)
    _, nn = tree.query(xyz, k=1)
    return {"xyz": metres_to_box(xyz).astype(np.float16), "occ": occ.astype(np.uint8),
            "label": slab[nn].astype(np.uint8), "rgb": (np.clip(scol[nn], 0, 1) * 255 + 0.5).astype(np.uint8),
            "kind": kind}


def npz_bytes(arrays: dict) -> bytes:
    """A compressed ``.npz`` with fixed zip timestamps, so the same arrays give the same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()
