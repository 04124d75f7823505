"""Exact mirror symmetry of a mesh about the plane x = 0 (the head's vertical mid-plane, box coordinates).

A mirror-symmetric field (``Mask2Triplane.query_symmetric``) sampled on a grid that is symmetric about
x = 0 gives marching-cubes vertices that come in mirror pairs, but the triangles between them need not
(marching cubes resolves ambiguous cells one way), so Taubin smoothing moves a vertex and its twin
slightly differently. :func:`symmetrize` pairs the vertices before smoothing and restores the symmetry
after it by averaging each vertex with its twin's mirror image.
"""
from __future__ import annotations

import numpy as np

MIRROR = np.array([-1.0, 1.0, 1.0])


def mirror_twins(vertices: np.ndarray, tolerance: float = 1e-5) -> np.ndarray | None:
    """For each vertex ``(V, 3)`` the index of the vertex at its mirror image ``(-x, y, z)`` (itself on the
    plane), or None when some vertex has no twin within ``tolerance`` (box units): the mesh is not
    symmetric. Returns ``(V,)`` int64."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    dist, idx = cKDTree(v).query(v * MIRROR)
    return idx.astype(np.int64) if len(v) and float(dist.max()) <= tolerance else None


def symmetrize(vertices: np.ndarray, twins: np.ndarray) -> np.ndarray:
    """Average every vertex ``(V, 3)`` with the mirror image of its twin (:func:`mirror_twins`): the result
    is exactly mirror-symmetric (vertices on the plane get x = 0). Same dtype as ``vertices``."""
    v = np.asarray(vertices)
    return ((v + v[twins] * MIRROR) / 2.0).astype(v.dtype)


def mirror_distance(vertices: np.ndarray, faces: np.ndarray, candidates: int = 12) -> np.ndarray:
    """How far the mirror image of each vertex lies from the surface: ``(V,)`` float64, in the units of
    ``vertices (V, 3)`` (``faces (F, 3)``). 0 everywhere for an exactly mirror-symmetric mesh. Exact
    point-to-triangle distances to the ``candidates`` triangles with the nearest centroids (enough on a
    fine, even mesh such as marching cubes gives)."""
    from scipy.spatial import cKDTree
    from trimesh.triangles import closest_point

    v = np.asarray(vertices, np.float64)
    tri = v[np.asarray(faces)]
    q = v * MIRROR
    _, cand = cKDTree(tri.mean(1)).query(q, k=min(candidates, len(tri)))
    cand = cand.reshape(len(q), -1)
    best = np.full(len(q), np.inf)
    for j in range(cand.shape[1]):
        best = np.minimum(best, np.linalg.norm(closest_point(tri[cand[:, j]], q) - q, axis=1))
    return best
