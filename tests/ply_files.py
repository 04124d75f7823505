"""Writing job meshes for the tests: the backend's ``mesh.ply`` layout (backend/export.py) with given sRGB bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_ply(path: str | Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
              labels: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: ``x y z`` float32 (metres), optional ``red green blue`` uint8 sRGB and
    ``label`` uint8 per vertex, triangles as ``list uchar int vertex_indices``."""
    v = np.asarray(vertices, np.float32).reshape(-1, 3)
    f = np.asarray(faces, np.int32).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    props = "property float x\nproperty float y\nproperty float z\n"
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    if labels is not None:
        fields += [("label", "u1")]
        props += "property uchar label\n"
    vert = np.zeros(len(v), dtype=fields)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if colors is not None:
        c = np.asarray(colors, np.uint8).reshape(-1, 3)
        vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
    if labels is not None:
        vert["label"] = np.asarray(labels, np.uint8)
    face = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, f
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\n{props}"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    Path(path).write_bytes(header.encode("ascii") + vert.tobytes() + face.tobytes())
