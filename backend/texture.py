"""A colour texture of the head: UV atlas of the final mesh and its vertex colours baked into a PNG.

Method (docs/mesh.md, "Texture"):

1. **Charts**: every face goes to the one of the six axis directions (+-X, +-Y, +-Z) its smoothed normal
   (the mean of its vertex normals) is closest to, or its own normal's when that one would face away
   from the direction by more than 78 degrees; the connected pieces of each group (over shared edges) are
   the charts. A chart is the orthographic projection along its axis, oriented so it is not mirrored:
   a cube map cut along the normal field, as Blender's "Cube Projection" does, stretch at most 1.7x.
   xatlas (the usual choice) was measured first and takes 100 s for an 80,000-face head on this
   project's 2-core machine (28 s with these charts given to it for packing alone), against about a
   second here, so it is not used (docs/mesh.md).
2. **Packing**: charts sorted by height are placed on shelves (rows) of the square atlas with
   ``PADDING`` texels between them, at the largest common texel density that fits (tried in steps of
   3 %). Charts keep their orientation: the face stays upright in the image, for painting on it.
3. **Baking**: each texel centre inside a triangle takes the barycentric mix of the triangle's three
   **linear** vertex colours, converted to sRGB bytes; every other texel takes the colour of the nearest
   baked texel (OpenCV's labelled distance transform), so islands bleed past their borders and
   mip-mapping or bilinear lookups at seams do not pull in black.

UVs follow the OBJ convention: ``u`` right, ``v`` up, origin at the image's bottom-left corner
(glTF flips ``v``; backend/export.py does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Empty texels between charts in the atlas.
PADDING = 2
#: Texture sizes (pixels a side) a job may ask for; DEFAULT_SIZE is ``--texture`` without a value.
MIN_SIZE, MAX_SIZE, DEFAULT_SIZE = 256, 4096, 1024

# (projection axis, sign) -> the (right, up) axes of the chart image, right x up = the outward direction
_FRAMES = {(0, 1): ((1, 1.0), (2, 1.0)), (0, -1): ((1, -1.0), (2, 1.0)),
           (1, 1): ((0, -1.0), (2, 1.0)), (1, -1): ((0, 1.0), (2, 1.0)),
           (2, 1): ((0, 1.0), (1, 1.0)), (2, -1): ((0, -1.0), (1, 1.0))}


@dataclass
class Atlas:
    """A UV atlas of a triangle mesh.

    Attributes:
        vertex_map: ``(W,)`` int64: the mesh vertex each atlas vertex copies (vertices split at seams).
        faces: ``(F, 3)`` int64 atlas-vertex indices, face ``i`` is the mesh's face ``i``.
        uv: ``(W, 2)`` float32 in [0, 1], OBJ convention (v up).
        charts: number of charts; size: the atlas side the UVs were packed for (pixels).
    """

    vertex_map: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    charts: int
    size: int


def _face_groups(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None) -> np.ndarray:
    """``(F,)`` int64 direction group 0..5 (axis * 2 + negative) of every face."""
    tri = vertices[faces]
    own = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    own /= np.maximum(np.linalg.norm(own, axis=1, keepdims=True), 1e-30)
    smooth = own if normals is None else np.asarray(normals, np.float64)[faces].mean(axis=1)
    axis = np.abs(smooth).argmax(axis=1)
    sign = np.sign(smooth[np.arange(len(faces)), axis])
    facing = own[np.arange(len(faces)), axis] * sign
    bad = facing < 0.2  # this projection would (nearly) fold the face over: use its own normal
    axis[bad] = np.abs(own[bad]).argmax(axis=1)
    sign[bad] = np.sign(own[bad, axis[bad]])
    return axis * 2 + (sign < 0)


def _charts(faces: np.ndarray, group: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected pieces (over shared edges) of faces in the same group: ``(count, (F,) chart id)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nf = len(faces)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    owner = np.tile(np.arange(nf), 3)
    order = np.lexsort((e[:, 1], e[:, 0]))
    e, owner = e[order], owner[order]
    same = (e[1:] == e[:-1]).all(axis=1) & (group[owner[1:]] == group[owner[:-1]])
    a, b = owner[1:][same], owner[:-1][same]
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(nf, nf))
    return connected_components(graph, directed=False)


def _shelf_pack(sizes: np.ndarray, side: float) -> np.ndarray | None:
    """Lower-left corners ``(C, 2)`` of rectangles ``sizes (C, 2)`` (w, h, texels, padding included) on
    shelves of a ``side`` x ``side`` square, tallest first; None when they do not fit."""
    order = np.argsort(-sizes[:, 1], kind="stable")
    corners = np.zeros_like(sizes)
    x = y = shelf_h = 0.0
    for i in order:
        w, h = sizes[i]
        if x + w > side:
            x, y, shelf_h = 0.0, y + shelf_h, 0.0
        if w > side or y + h > side:
            return None
        corners[i] = (x, y)
        x += w
        shelf_h = max(shelf_h, h)
    return corners


def unwrap(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None = None,
           size: int = DEFAULT_SIZE) -> Atlas:
    """UV atlas of a mesh for a ``size`` x ``size`` texture (module docstring, steps 1-2).

    Args:
        vertices: ``(V, 3)`` float, any unit (metres here); faces: ``(F, 3)`` int.
        normals: ``(V, 3)`` unit vertex normals (None: the faces' own normals).
        size: texture side, pixels (sets the padding in UV units).

    Returns:
        :class:`Atlas`.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    group = _face_groups(v, f, normals)
    n_charts, chart = _charts(f, group)
    # split the vertices per chart: one atlas vertex per (mesh vertex, chart)
    key = f * n_charts + chart[:, None]
    uniq, inverse = np.unique(key.ravel(), return_inverse=True)
    vmap, vchart = uniq // n_charts, uniq % n_charts
    new_faces = inverse.reshape(-1, 3)
    cgroup = np.zeros(n_charts, np.int64)
    cgroup[chart] = group
    uv = np.zeros((len(uniq), 2))
    for g in range(6):
        (ra, rs), (ua, us) = _FRAMES[(g // 2, -1 if g % 2 else 1)]
        sel = cgroup[vchart] == g
        uv[sel, 0], uv[sel, 1] = rs * v[vmap[sel], ra], us * v[vmap[sel], ua]
    lo = np.full((n_charts, 2), np.inf)
    hi = np.full((n_charts, 2), -np.inf)
    np.minimum.at(lo, vchart, uv)
    np.maximum.at(hi, vchart, uv)
    uv -= lo[vchart]
    extent = hi - lo
    scale = np.sqrt(size ** 2 / max(float((extent[:, 0] * extent[:, 1]).sum()), 1e-30))
    while True:  # the largest texel density (texels per unit) whose shelves fit
        corners = _shelf_pack(np.ceil(extent * scale) + 2 * PADDING, float(size))
        if corners is not None:
            break
        scale *= 0.97
    uv = (uv * scale + corners[vchart] + PADDING) / size
    return Atlas(vmap.astype(np.int64), new_faces.astype(np.int64), uv.astype(np.float32), int(n_charts), int(size))


def _texel_hits(tri_px: np.ndarray, chunk: int = 200_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texel centres inside triangles given in pixel coordinates ``(F, 3, 2)`` (x, y of texel centres at
    integer + 0.5): ``(face ids (N,), texel indices (N, 2) as (x, y) int64, barycentrics (N, 3))``."""
    lo = np.floor(tri_px.min(axis=1) - 0.5).astype(np.int64)
    hi = np.ceil(tri_px.max(axis=1) - 0.5).astype(np.int64)
    dims = hi - lo + 1
    counts = dims[:, 0] * dims[:, 1]
    faces_out, xy_out, bary_out = [], [], []
    starts = np.concatenate([[0], np.cumsum(counts)])
    f0 = 0
    while f0 < len(tri_px):  # faces in chunks of about ``chunk`` candidate texels
        f1 = int(np.searchsorted(starts, starts[f0] + chunk, side="right"))
        f1 = max(f1 - 1, f0 + 1)
        ids = np.repeat(np.arange(f0, f1), counts[f0:f1])
        k = np.arange(len(ids)) - np.repeat(starts[f0:f1] - starts[f0], counts[f0:f1])
        xy = lo[ids] + np.stack([k % dims[ids, 0], k // dims[ids, 0]], axis=1)
        p = xy + 0.5
        a, b, c = tri_px[ids, 0], tri_px[ids, 1], tri_px[ids, 2]
        v0, v1, v2 = b - a, c - a, p - a
        den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
        den = np.where(np.abs(den) < 1e-12, 1e-12, den)
        w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
        w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
        bary = np.stack([1.0 - w1 - w2, w1, w2], axis=1)
        inside = (bary >= -1e-6).all(axis=1)
        faces_out.append(ids[inside])
        xy_out.append(xy[inside])
        bary_out.append(bary[inside])
        f0 = f1
    return np.concatenate(faces_out), np.concatenate(xy_out), np.concatenate(bary_out)


def bake(atlas: Atlas, colours_linear: np.ndarray, size: int | None = None) -> np.ndarray:
    """The texture of per-vertex colours (module docstring, step 3).

    Args:
        atlas: from :func:`unwrap`.
        colours_linear: ``(V, 3)`` float linear RGB in [0, 1] of the **mesh** vertices.
        size: pixels a side (default: the atlas's).

    Returns:
        ``(size, size, 3)`` uint8 sRGB, row 0 at the top (v = 1).
    """
    import cv2

    from backend.colorspace import linear_to_srgb

    size = int(size or atlas.size)
    col = np.clip(np.asarray(colours_linear, np.float64), 0.0, 1.0)[atlas.vertex_map]
    uv = atlas.uv.astype(np.float64)
    px = np.stack([uv[:, 0] * size, (1.0 - uv[:, 1]) * size], axis=1)
    face_ids, xy, bary = _texel_hits(px[atlas.faces])
    ok = (xy >= 0).all(axis=1) & (xy < size).all(axis=1)
    face_ids, xy, bary = face_ids[ok], xy[ok], bary[ok]
    texel_lin = (col[atlas.faces[face_ids]] * bary[:, :, None]).sum(axis=1)
    img = np.zeros((size, size, 3), np.uint8)
    img[xy[:, 1], xy[:, 0]] = np.round(linear_to_srgb(texel_lin) * 255.0).astype(np.uint8)
    empty = np.ones((size, size), np.uint8)
    empty[xy[:, 1], xy[:, 0]] = 0
    if empty.all():
        return img
    # every empty texel takes the colour of the nearest baked one (labels index the zero pixels)
    _, labels = cv2.distanceTransformWithLabels(empty, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    baked = empty == 0
    lut = np.zeros((int(labels.max()) + 1, 3), np.uint8)
    lut[labels[baked]] = img[baked]
    return lut[labels]


def texture_for(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None, colours_linear: np.ndarray,
                size: int = DEFAULT_SIZE) -> tuple[Atlas, np.ndarray]:
    """:func:`unwrap` + :func:`bake`: ``(Atlas, (size, size, 3) uint8 sRGB image)``."""
    atlas = unwrap(vertices, faces, normals, size)
    return atlas, bake(atlas, colours_linear, size)


def job_texture(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray | None, colours_linear: np.ndarray,
                size: int | None) -> tuple[tuple[Atlas, np.ndarray], dict] | None:
    """The job's texture when ``size`` (pixels a side) is set, else None: ``((atlas, image), record)`` with
    result.json's ``texture`` record ``{"file", "size", "charts", "uv_vertices", "seconds"}``."""
    import time

    if not size:
        return None
    t0 = time.perf_counter()
    atlas, image = texture_for(vertices, faces, normals, colours_linear, int(size))
    return (atlas, image), {"file": "texture.png", "size": int(size), "charts": atlas.charts,
                            "uv_vertices": int(len(atlas.uv)), "seconds": round(time.perf_counter() - t0, 3)}
