"""Preview renders of the finished mesh (``views/<name>.png``): what the user gets, shaded.

The coloured mesh is z-buffered into each view (backend.vertex_colors.rasterize, the same cameras as
the colour views), its vertex colours and normals interpolated barycentrically, and lit with a fixed
headlight from slightly above the camera (Lambert, with ambient), on a white background, in sRGB.
No field queries: this shows the mesh file exactly, at little cost.
"""
from __future__ import annotations

import numpy as np

from backend.colorspace import linear_to_srgb
from backend.vertex_colors import OrthoView, RasterMesh, rasterize

AMBIENT = 0.35


def render_previews(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, rgb_linear: np.ndarray,
                    views: list[OrthoView], resolution: int = 256) -> dict[str, np.ndarray]:
    """Shaded renders of a coloured mesh.

    Args:
        vertices: ``(V, 3)`` box coordinates (or a RasterMesh); faces ``(F, 3)``; normals ``(V, 3)`` unit outward;
        rgb_linear: ``(V, 3)`` float linear colours; views: cameras; resolution: pixels a side.

    Returns:
        ``{view name: (R, R, 3) uint8 sRGB}``.
    """
    out = {}
    attrs_in = np.hstack([rgb_linear, normals]).astype(np.float32)
    rm = vertices if isinstance(vertices, RasterMesh) else RasterMesh(vertices, faces)
    for view in views:
        depth, attrs = rasterize(view, rm, None, resolution, attrs_in)
        r, u, d = view.basis()
        light = -d + 0.35 * u + 0.2 * r
        light /= np.linalg.norm(light)
        n = attrs[..., 3:6]
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-8)
        shade = AMBIENT + (1.0 - AMBIENT) * np.clip(n @ light, 0.0, 1.0)
        img = linear_to_srgb(attrs[..., :3] * shade[..., None])
        img = np.where(np.isfinite(depth)[..., None], img, 1.0)
        out[view.name] = np.round(img * 255.0).astype(np.uint8)
    return out
