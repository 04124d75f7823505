"""Vertex colours from K rendered views of the radiance field (docs/design.md section 4).

The colour field of a pix2pix3D/EG3D-style generator is only ever supervised through volume rendering,
so its value exactly on the marching-cubes iso-surface is not what the renders show. Like texture
baking from photographs, the mesh is coloured from rendered images instead:

1. **Views**: K orthographic cameras around the box: front, back, left, right, top and below-chin
   (looking up under the jaw), then diagonal views for K > 6.
2. **Depth**: the mesh is rasterised into each view by a z-buffer of points splatted densely over every
   triangle (numpy only; spacing under 2/3 pixel so there are no holes).
3. **Colour**: each foreground pixel is volume rendered (emission-absorption compositing, as NeRF /
   EG3D) with a few stratified samples in a band from just in front of the mesh depth to some way
   inside it (where the opacity of the field accumulates: a ray reaches the iso-surface with its
   transmittance still near 1), instead of 48 + 48 samples through the whole box.
4. **Blend**: every vertex is projected into every view, is visible there when its depth is within
   ``tolerance`` of the rendered depth, and takes the views' colours weighted by
   ``max(0, cos(normal, -view direction)) ** 2``; vertices that no view sees keep the field's own
   colour at the vertex.

Coordinates: normalised box coordinates ``[-1, 1]^3`` (backend/coords.py), Z up, face towards -Y.
Colours are linear RGB floats in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

#: A field function: ``(N, 3)`` float32 box coords -> {"sigma": (N,), "rgb": (N, 3), ...} numpy arrays.
FieldFn = Callable[[np.ndarray], dict]


@dataclass(frozen=True)
class OrthoView:
    """An orthographic camera looking along ``direction`` with image-up ``up`` (box coordinates).

    The image spans ``[-half_size, half_size]^2`` of the plane through the box centre; pixel column
    grows along ``right = direction x up``, row grows along ``-up``.
    """

    name: str
    direction: tuple[float, float, float]
    up: tuple[float, float, float]
    half_size: float = 1.0

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Orthonormal ``(right, up, direction)`` float64 vectors."""
        d = np.asarray(self.direction, float)
        d = d / np.linalg.norm(d)
        r = np.cross(d, np.asarray(self.up, float))
        r = r / np.linalg.norm(r)
        u = np.cross(r, d)
        return r, u, d

    def camera_dict(self, resolution: int, box_half_m: float) -> dict:
        """docs/contracts.md camera dict: cam2world (OpenGL: camera looks along -Z, +Y up), metres."""
        r, u, d = self.basis()
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = r, u, -d
        m[:3, 3] = -d * 2.0 * box_half_m  # in front of the box, looking at its centre
        return {"type": "orthographic", "cam2world": m.round(6).tolist(),
                "ortho_size_m": 2.0 * self.half_size * box_half_m, "resolution": int(resolution)}


_S = 1.0 / np.sqrt(2.0)
#: The standard views, in the order they are taken for K views.
STANDARD_VIEWS: tuple[OrthoView, ...] = (
    OrthoView("front", (0, 1, 0), (0, 0, 1)),
    OrthoView("back", (0, -1, 0), (0, 0, 1)),
    OrthoView("left", (1, 0, 0), (0, 0, 1)),      # Blender's Left view: seen from -X
    OrthoView("right", (-1, 0, 0), (0, 0, 1)),    # Blender's Right view: seen from +X
    OrthoView("top", (0, 0, -1), (0, 1, 0)),
    OrthoView("below_chin", (0, _S, _S), (0, -_S, _S)),
    OrthoView("front_left", (_S, _S, 0), (0, 0, 1)),
    OrthoView("front_right", (-_S, _S, 0), (0, 0, 1)),
    OrthoView("back_left", (_S, -_S, 0), (0, 0, 1)),
    OrthoView("back_right", (-_S, -_S, 0), (0, 0, 1)),
    OrthoView("above_front", (0, _S, -_S), (0, _S, _S)),
    OrthoView("above_back", (0, -_S, -_S), (0, -_S, _S)),
)
MIN_VIEWS, MAX_VIEWS = 4, len(STANDARD_VIEWS)


def standard_views(k: int) -> list[OrthoView]:
    """The first ``k`` standard views (front, back, left, right, top, below_chin, diagonals...).

    Raises:
        ValueError: ``k`` outside ``MIN_VIEWS..MAX_VIEWS``.
    """
    if not MIN_VIEWS <= k <= MAX_VIEWS:
        raise ValueError(f"views must be between {MIN_VIEWS} and {MAX_VIEWS}, not {k}")
    return list(STANDARD_VIEWS[:k])


def project(view: OrthoView, points: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box points ``(N, 3)`` -> ``(cols, rows, depth)`` float64: pixel-centre coordinates and depth
    along the view direction (box units, larger = farther)."""
    r, u, d = view.basis()
    p = np.asarray(points, dtype=np.float64)
    cols = (p @ r / view.half_size + 1.0) * 0.5 * resolution - 0.5
    rows = (1.0 - p @ u / view.half_size) * 0.5 * resolution - 0.5
    return cols, rows, p @ d


class RasterMesh:
    """Per-mesh data the rasteriser reuses across views: face normals and longest edges (box units)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        tri = self.vertices[self.faces]
        self.face_normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        self.longest_edge = np.sqrt(np.max(((tri[:, [1, 2, 0]] - tri) ** 2).sum(axis=2), axis=1))


def rasterize(view: OrthoView, vertices: np.ndarray | RasterMesh, faces: np.ndarray | None, resolution: int,
              vertex_attributes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Z-buffer a mesh into a view by splatting points densely over every triangle.

    Faces turned away from the camera are culled (the meshes are closed and wound outward). Each
    remaining triangle is sampled on a barycentric grid with spacing under 2/3 pixel (so there are no
    holes); the nearest sample per pixel wins (``np.minimum.at``).

    Args:
        vertices: ``(V, 3)`` box coordinates (or a :class:`RasterMesh`, then ``faces`` is ignored);
        faces: ``(F, 3)`` int.
        vertex_attributes: optional ``(V, C)`` float values interpolated barycentrically (colours, normals).

    Returns:
        ``(depth (R, R) float32 along the view direction in box units, inf where no surface,
        attributes (R, R, C) float32 or None)``.
    """
    rm = vertices if isinstance(vertices, RasterMesh) else RasterMesh(vertices, faces)
    cols, rows, depth = project(view, rm.vertices, resolution)
    # back-face culling: a closed, outward-wound mesh never shows a face turned away from the camera
    front = rm.face_normals @ view.basis()[2] < 0
    faces = rm.faces[front]
    tri = np.stack([cols, rows, depth], axis=1).astype(np.float32)[faces]  # (F, 3 corners, 3)
    # the projected edge is at most the 3D edge (orthographic): pixels per box unit = R / (2 half_size)
    edge = rm.longest_edge[front] * (resolution / (2.0 * view.half_size))
    steps = np.clip(np.ceil(edge * 1.5), 1, 32).astype(np.int64)
    zbuf = np.full(resolution * resolution, np.inf, dtype=np.float32)
    groups = []
    for m in np.unique(steps):
        fidx = np.nonzero(steps == m)[0]
        sel = tri[fidx]
        i, j = np.meshgrid(np.arange(m + 1), np.arange(m + 1), indexing="ij")
        keep = (i + j) <= m
        bary = (np.stack([i[keep], j[keep], m - i[keep] - j[keep]], axis=1) / m).astype(np.float32)  # (S, 3)
        # (F, 3 corners, 3 coords) x (S, 3 corners) -> (F, S, 3) as one matrix product (BLAS)
        pts = (sel.transpose(0, 2, 1).reshape(-1, 3) @ bary.T).reshape(len(sel), 3, -1).transpose(0, 2, 1).reshape(-1, 3)
        c = np.rint(pts[:, 0]).astype(np.int64)
        rr = np.rint(pts[:, 1]).astype(np.int64)
        ok = (c >= 0) & (c < resolution) & (rr >= 0) & (rr < resolution)
        flat = rr * resolution + c
        np.minimum.at(zbuf, flat[ok], pts[ok, 2])
        if vertex_attributes is not None:
            groups.append((fidx, bary, flat, ok, pts[:, 2]))
    attrs = None
    if vertex_attributes is not None:
        va = np.asarray(vertex_attributes, np.float32)
        attrs = np.zeros((resolution * resolution, va.shape[1]), np.float32)
        for fidx, bary, flat, ok, d in groups:
            win = ok & (d <= zbuf[np.clip(flat, 0, len(zbuf) - 1)])
            k = np.nonzero(win)[0]
            f_of, s_of = k // len(bary), k % len(bary)
            corner = faces[fidx[f_of]]  # (K, 3)
            w = bary[s_of]  # (K, 3)
            attrs[flat[k]] = (va[corner] * w[:, :, None]).sum(axis=1)
        attrs = attrs.reshape(resolution, resolution, -1)
    return zbuf.reshape(resolution, resolution), attrs


def rasterize_depth(view: OrthoView, vertices: np.ndarray, faces: np.ndarray, resolution: int) -> np.ndarray:
    """Z-buffer depth ``(R, R)`` float32 of a mesh in a view (box units, inf = no surface). See :func:`rasterize`."""
    return rasterize(view, vertices, faces, resolution)[0]


def render_band(view: OrthoView, depth: np.ndarray, field_fn: FieldFn, band: tuple[float, float], samples: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Volume render the radiance field in a band ``[depth - band[0], depth + band[1]]`` around the surface.

    Args:
        depth: ``(R, R)`` mesh depth (inf = background); band: (in front, behind) in box units.
        samples: stratified samples per ray; rng: the job's generator (sample jitter).

    Returns:
        ``(rgb (R, R, 3) float32 linear, alpha (R, R) float32)``; rgb is normalised by the band's
        accumulated weight (so a band that holds most, not all, of the opacity does not darken it).
    """
    res = depth.shape[0]
    r, u, d = view.basis()
    rows, cols = np.nonzero(np.isfinite(depth))
    rgb = np.zeros((res, res, 3), np.float32)
    alpha = np.zeros((res, res), np.float32)
    if len(rows) == 0:
        return rgb, alpha
    x = ((cols + 0.5) / res * 2.0 - 1.0) * view.half_size
    y = (1.0 - (rows + 0.5) / res * 2.0) * view.half_size
    origin = x[:, None] * r + y[:, None] * u  # on the plane through the centre, (P, 3)
    step = (band[0] + band[1]) / samples
    t = depth[rows, cols][:, None] - band[0] + step * (np.arange(samples)[None, :] + rng.random((len(rows), samples)))
    pts = origin[:, None, :] + t[..., None] * d  # (P, S, 3)
    out = field_fn(np.clip(pts.reshape(-1, 3), -1.0, 1.0).astype(np.float32))
    sigma = np.asarray(out["sigma"], np.float64).reshape(len(rows), samples)
    col = np.asarray(out["rgb"], np.float64).reshape(len(rows), samples, 3)
    a = 1.0 - np.exp(-np.maximum(sigma, 0.0) * step)
    trans = np.cumprod(np.concatenate([np.ones((len(rows), 1)), 1.0 - a[:, :-1] + 1e-10], axis=1), axis=1)
    w = trans * a
    acc = w.sum(axis=1)
    c = (w[..., None] * col).sum(axis=1) / np.maximum(acc, 1e-8)[:, None]
    c[acc < 1e-8] = col[acc < 1e-8].mean(axis=1)
    rgb[rows, cols] = np.clip(c, 0.0, 1.0)
    alpha[rows, cols] = np.clip(acc, 0.0, 1.0)
    return rgb, alpha


@dataclass
class ViewRender:
    """One rendered view: ``rgb`` (R, R, 3) float32 linear, ``alpha`` (R, R), ``depth`` (R, R) box units."""

    view: OrthoView
    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray


def render_views(vertices: np.ndarray, faces: np.ndarray, field_fn: FieldFn, views: list[OrthoView],
                 resolution: int = 128, band: tuple[float, float] = (0.02, 0.08), samples: int = 5,
                 rng: np.random.Generator | None = None) -> list[ViewRender]:
    """Render every view: mesh depth by z-buffer, colour by band volume rendering of the field.

    Args:
        vertices: ``(V, 3)`` box coordinates; faces ``(F, 3)``.
        resolution: pixels a side; the default 128 matches the lite tri-plane resolution (one pixel per
            plane texel, 3 mm at 0.40 m): the field holds no finer colour detail, so finer views only
            cost time.
        band: how far the rendered band reaches in front of and behind the surface, box units
            ((0.02, 0.08) = 4 mm in front, 16 mm inside at 0.40 m: the lite field's density,
            20 softplus(logit) per box unit, needs about that depth to become opaque).
        samples: stratified samples per ray in the band.
    """
    rng = rng or np.random.default_rng(0)
    rm = vertices if isinstance(vertices, RasterMesh) else RasterMesh(vertices, faces)
    out = []
    for view in views:
        depth = rasterize(view, rm, None, resolution)[0]
        rgb, alpha = render_band(view, depth, field_fn, band, samples, rng)
        out.append(ViewRender(view, rgb, alpha, depth))
    return out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` of a mesh with outward-wound faces."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    vn = np.zeros_like(vertices, dtype=np.float64)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    norm = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.maximum(norm, 1e-12)


def blend_vertex_colors(vertices: np.ndarray, normals: np.ndarray, renders: list[ViewRender],
                        fallback_rgb: np.ndarray, tolerance: float = 0.02,
                        power: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Blend view colours onto vertices (visibility-tested, cosine-weighted).

    Args:
        vertices: ``(V, 3)`` box coords; normals: ``(V, 3)`` unit outward normals.
        fallback_rgb: ``(V, 3)`` linear colours of the field at the vertices, used where no view sees one.
        tolerance: depth slack of the visibility test, box units.

    Returns:
        ``(rgb (V, 3) float32 linear in [0, 1], seen (V,) int32 number of views that saw the vertex)``.
    """
    import cv2

    acc = np.zeros((len(vertices), 3), np.float64)
    wsum = np.zeros(len(vertices), np.float64)
    seen = np.zeros(len(vertices), np.int32)
    for rnd in renders:
        res = rnd.depth.shape[0]
        cols, rows, depth = project(rnd.view, vertices, res)
        _, _, d = rnd.view.basis()
        cos = -(normals @ d)
        # depth of the nearest pixel; tiny splat gaps (inf) take the nearest surface of their 3x3
        # neighbourhood; the slack grows with the surface slope in the view (half a pixel of travel)
        finite = np.where(np.isfinite(rnd.depth), rnd.depth, 1e3).astype(np.float32)
        zmin = np.where(np.isfinite(rnd.depth), finite, cv2.erode(finite, np.ones((3, 3), np.uint8)))
        ci = np.clip(np.rint(cols).astype(np.int64), 0, res - 1)
        ri = np.clip(np.rint(rows).astype(np.int64), 0, res - 1)
        pixel = 2.0 * rnd.view.half_size / res
        slope = np.sqrt(np.clip(1.0 - cos ** 2, 0.0, 1.0)) / np.maximum(cos, 0.2)
        visible = (depth <= zmin[ri, ci] + tolerance + pixel * slope) & (cos > 0.05)
        rgb = sample_bilinear(rnd.rgb, cols, rows)
        cover = sample_bilinear(np.isfinite(rnd.depth).astype(np.float32)[..., None], cols, rows)[:, 0]
        # bilinear taps that straddle the silhouette mix in the (zero) background: renormalise by coverage
        rgb = rgb / np.maximum(cover, 1e-6)[:, None]
        w = np.where(visible & (cover > 0.2), np.clip(cos, 0.0, 1.0) ** power, 0.0)
        acc += w[:, None] * np.clip(rgb, 0.0, 1.0)
        wsum += w
        seen += (w > 0).astype(np.int32)
    out = np.where(wsum[:, None] > 1e-6, acc / np.maximum(wsum, 1e-12)[:, None], np.asarray(fallback_rgb, np.float64))
    return np.clip(out, 0.0, 1.0).astype(np.float32), seen


def sample_bilinear(image: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image (H, W, C)`` at pixel-centre coordinates ``(N,)``; zero outside.

    Returns ``(N, C)`` float32.
    """
    h, w = image.shape[:2]
    img = np.pad(np.asarray(image, np.float32), ((1, 1), (1, 1), (0, 0)))  # zero border
    x = np.clip(np.asarray(cols, np.float64) + 1.0, 0.0, w + 0.999)
    y = np.clip(np.asarray(rows, np.float64) + 1.0, 0.0, h + 0.999)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((img[y0, x0] * (1 - fx) + img[y0, x1] * fx) * (1 - fy)
            + (img[y1, x0] * (1 - fx) + img[y1, x1] * fx) * fy).astype(np.float32)
