"""Density field -> clean triangle mesh: coarse-to-fine density grid, marching cubes, clean-up.

Method (pix2pix3D's mesh extraction, improved as docs/design.md section 4 says):

1. **Coarse-to-fine density grid.** The field is sampled on a regular grid over the tri-plane box
   ``[-1, 1]^3`` (normalised box coordinates, backend/coords.py), first at ``resolution / 4`` cells a
   side, then refined twice by a factor 2. At every finer level only the corners of cells within one
   cell of an iso-surface crossing of the previous level (at the coarsest level also cells whose corner
   values come within the cell's own spread of the level, so thin features between corners are not
   lost) are evaluated; the other grid points take the
   trilinear interpolation of the coarser level (far from the surface, so their side of the surface is
   unchanged). At 128 cells this evaluates about a tenth of the 129^3 points.
2. **Marching cubes** (PyMCubes) at the iso-level of the density.
3. **Topology repair** on the grid (backend/mesh_topology.py): the largest solid piece, cavities
   filled, handles (tunnels) removed by the smallest closing or opening that leaves genus 0.
4. **Clean-up**: keep the largest connected component (drops floaters), optional Taubin smoothing
   (Taubin 1995, shrink-free; backend/mesh_smooth.py), optional quadric decimation to a face budget
   (fast-simplification, Garland & Heckbert 1997). Where the surface leaves the box (the neck) marching
   cubes on the padded grid closes it with a cap on the box face, kept exactly planar through smoothing.
5. **Metres**: vertices are mapped from box coordinates to metres in the canonical head frame
   (backend.coords.box_to_metres); faces wind counter-clockwise seen from outside (outward normals).

Errors: :class:`MeshError` with code ``empty_surface`` when the field has no surface inside the box
(e.g. untrained weights) and ``surface_fills_box`` when the whole box is inside the surface.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from backend.errors import CodedError
# re-exported: these helpers lived in this module before backend/mesh_smooth.py
from backend.mesh_smooth import decimate, neighbour_mean_operator, taubin_smooth, vertex_classes  # noqa: F401

#: A density function: ``(N, 3)`` float32 normalised box coordinates -> ``(N,)`` float32 density.
DensityFn = Callable[[np.ndarray], np.ndarray]


class MeshError(CodedError, RuntimeError):
    """No usable surface. ``code`` is a stable identifier for APIs (``empty_surface``, ...)."""


@dataclass
class DensityGrid:
    """Density samples on the regular grid of ``cells + 1`` points a side over ``[-1, 1]^3``.

    Attributes:
        values: ``(cells + 1,) * 3`` float32, indexed ``[ix, iy, iz]`` (x, y, z increasing).
        level: iso-level of the surface (density units of the field).
        evaluated: how many points the field was evaluated at, per level (coarse first).
    """

    values: np.ndarray
    level: float
    evaluated: list[int] = field(default_factory=list)

    @property
    def cells(self) -> int:
        """Cells per axis: the grid holds ``cells + 1`` samples per axis over the box [-1, 1]^3."""
        return self.values.shape[0] - 1

    def index_to_box(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous grid indices ``(N, 3)`` -> normalised box coordinates ``(N, 3)``."""
        return np.asarray(ijk, dtype=np.float64) * (2.0 / self.cells) - 1.0


@dataclass
class Mesh:
    """A triangle mesh in metres in the canonical head frame (Z up, face towards -Y).

    Attributes:
        vertices: ``(V, 3)`` float64 metres.
        faces: ``(F, 3)`` int64 vertex indices, counter-clockwise seen from outside.
        stats: clean-up numbers (raw / kept faces, components, ...).
    """

    vertices: np.ndarray
    faces: np.ndarray
    stats: dict = field(default_factory=dict)


def _grid_points(cells: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    lin = np.linspace(-1.0, 1.0, cells + 1, dtype=np.float32)
    if mask is None:
        gx, gy, gz = np.meshgrid(lin, lin, lin, indexing="ij")
        return np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1), None
    idx = np.nonzero(mask)
    return np.stack([lin[idx[0]], lin[idx[1]], lin[idx[2]]], axis=1), idx


def _upsample2(v: np.ndarray) -> np.ndarray:
    """Trilinear refinement of a grid of ``n + 1`` points a side to ``2 n + 1`` points a side."""
    for axis in range(3):
        n = v.shape[axis]
        shape = list(v.shape)
        shape[axis] = 2 * n - 1
        out = np.empty(shape, dtype=v.dtype)
        even = [slice(None)] * 3
        odd = [slice(None)] * 3
        even[axis] = slice(0, None, 2)
        odd[axis] = slice(1, None, 2)
        out[tuple(even)] = v
        a = np.take(v, np.arange(n - 1), axis=axis)
        b = np.take(v, np.arange(1, n), axis=axis)
        out[tuple(odd)] = 0.5 * (a + b)
        v = out
    return v


def _cell_corner_extrema(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the 8 corners of every cell: ``(n,) * 3`` each for ``v`` of ``(n + 1,) * 3``."""
    corners = [v[i:v.shape[0] - 1 + i, j:v.shape[1] - 1 + j, k:v.shape[2] - 1 + k]
               for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    mn = corners[0].copy()
    mx = corners[0].copy()
    for c in corners[1:]:
        np.minimum(mn, c, out=mn)
        np.maximum(mx, c, out=mx)
    return mn, mx


def _cells_to_points(cells_mask: np.ndarray) -> np.ndarray:
    """Grid points ``(n + 1,) * 3`` bool that are corners of a flagged cell ``(n,) * 3`` bool."""
    n = cells_mask.shape[0]
    pts = np.zeros((n + 1,) * 3, dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                pts[i:n + i, j:n + j, k:n + k] |= cells_mask
    return pts


def density_grid(density_fn: DensityFn, resolution: int = 128, level: float = 0.0, levels: int = 3,
                 cancel: Callable[[], None] | None = None) -> DensityGrid:
    """Sample a density field coarse-to-fine on a grid of ``resolution`` cells a side over ``[-1, 1]^3``.

    Args:
        density_fn: ``(N, 3)`` float32 box coordinates -> ``(N,)`` float32 density (chunking is its job).
        resolution: cells a side of the finest grid; must be divisible by ``2 ** (levels - 1)``.
        level: iso-level of the surface.
        levels: number of levels (1 = plain dense grid).
        cancel: called between levels; may raise to abandon the job.

    Returns:
        :class:`DensityGrid` with ``resolution + 1`` points a side.

    Raises:
        ValueError: a resolution that the levels do not divide.
        MeshError: ``empty_surface`` if no cell of the coarsest grid crosses the iso-level.
    """
    from scipy.ndimage import binary_dilation

    factor = 2 ** (levels - 1)
    if resolution % factor or resolution // factor < 4:
        raise ValueError(f"resolution {resolution} must be a multiple of {factor} and at least {4 * factor}")
    cells = resolution // factor
    pts, _ = _grid_points(cells)
    values = np.asarray(density_fn(pts), dtype=np.float32).reshape((cells + 1,) * 3)
    evaluated = [int(pts.shape[0])]
    for _ in range(levels - 1):
        if cancel is not None:
            cancel()
        mn, mx = _cell_corner_extrema(values)
        # cells the surface crosses, and cells whose corners are within one cell's worth of local
        # variation of the level (a thin feature can bulge through a cell between its corners)
        crossing = (mn < level) & (mx >= level)
        if len(evaluated) == 1:  # coarsest level only: finer levels see thin features as crossings
            spread = mx - mn
            crossing |= (np.abs(mn - level) < spread) | (np.abs(mx - level) < spread)
        if not crossing.any():
            break
        crossing = binary_dilation(crossing, structure=np.ones((3, 3, 3), bool))
        fine_cells = crossing.repeat(2, 0).repeat(2, 1).repeat(2, 2)
        values = _upsample2(values)
        cells *= 2
        todo = _cells_to_points(fine_cells)
        todo[::2, ::2, ::2] = False  # already exact from the coarser level
        pts, idx = _grid_points(cells, todo)
        if len(pts):
            values[idx] = np.asarray(density_fn(pts), dtype=np.float32).reshape(-1)
        evaluated.append(int(len(pts)))
    if cells != resolution:  # no crossing at a coarse level: bring the grid to full size for consistency
        while cells < resolution:
            values = _upsample2(values)
            cells *= 2
    grid = DensityGrid(values=values, level=float(level), evaluated=evaluated)
    check_surface(grid)
    return grid


def check_surface(grid: DensityGrid) -> None:
    """Raise :class:`MeshError` if the grid has no iso-surface crossing.

    Raises:
        MeshError: ``empty_surface`` (all density below the level: nothing solid in the box, as with
            untrained weights or a mask the model cannot explain) or ``surface_fills_box`` (all above).
    """
    v = grid.values
    if not np.isfinite(v).all():
        raise MeshError("field_not_finite", "the density field has NaN or infinite values; the weights are damaged")
    if float(v.max()) < grid.level:
        raise MeshError("empty_surface", f"the density field never reaches the surface level {grid.level:g} "
                        f"(max {float(v.max()):.3g}): no surface in the box. The weights may be untrained, or "
                        "the sketch/mask is too far from a head; check `s3d info` and the mask.png")
    if float(v.min()) >= grid.level:
        raise MeshError("surface_fills_box", "the density is above the surface level everywhere in the box; "
                        "the weights are probably untrained or damaged")


def marching_cubes(grid: DensityGrid) -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes marching cubes of ``grid`` at its level.

    Returns:
        ``(vertices (V, 3) float64 box coords, faces (F, 3) int64)``, faces wound with outward normals
        (the density is high inside).

    Raises:
        MeshError: ``empty_surface`` when marching cubes finds no triangle.
    """
    import mcubes

    # Pad with "outside" so the surface is closed where it touches the box faces.
    lo = min(float(grid.values.min()), grid.level) - 1.0
    padded = np.pad(grid.values, 1, mode="constant", constant_values=lo)
    verts, faces = mcubes.marching_cubes(padded, grid.level)
    if len(faces) == 0:
        raise MeshError("empty_surface", "marching cubes found no surface in the density grid")
    verts = grid.index_to_box(verts - 1.0)
    verts = np.clip(verts, -1.0, 1.0)
    faces = faces.astype(np.int64)
    # PyMCubes winds triangles counter-clockwise seen from the low-value side (outside, since the
    # density is high inside), so normals already point outward (checked by tests: positive volume).
    return verts, faces


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Keep the connected component (shared vertices) with the most faces; drop unused vertices.

    Returns:
        ``(vertices, faces, {"components": n, "kept_face_fraction": f})``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nv = len(vertices)
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(nv, nv))
    n, labels = connected_components(graph, directed=False)
    face_label = labels[faces[:, 0]]
    counts = np.bincount(face_label, minlength=n)
    keep_label = int(counts.argmax())
    keep = face_label == keep_label
    info = {"components": int(np.count_nonzero(counts)), "kept_face_fraction": float(keep.mean())}
    v, f = _compact(vertices, faces[keep])
    return v, f, info


def _compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces]


def _snap_to_box(vertices: np.ndarray, on_face: np.ndarray) -> np.ndarray:
    """Clip box coordinates ``(V, 3)`` to ``[-1, 1]`` and put the coordinates flagged in ``on_face``
    ``(V, 3)`` bool (vertices of a cut where the surface leaves the box) back on the box face, so the cut
    stays an exactly planar cap after smoothing."""
    v = np.clip(vertices, -1.0, 1.0)
    v[on_face] = np.sign(v[on_face])
    return v


def extract_mesh(grid: DensityGrid, smooth_iterations: int = 30, max_faces: int | None = 200_000,
                 symmetric: bool = False, repair: bool = True) -> Mesh:
    """Marching cubes + clean-up of a density grid; vertices in metres in the canonical head frame.

    Args:
        grid: the density grid (:func:`density_grid`).
        smooth_iterations: Taubin iterations (0 = off).
        max_faces: decimate to this face budget (None = off).
        symmetric: the grid is mirror-symmetric about x = 0: keep the mesh exactly so through smoothing
            (backend/symmetry.py; decimation may still break it by a fraction of a millimetre).
        repair: one solid piece of genus 0 (backend/mesh_topology.py, on the grid), and a bottom cut that
            is one flat, closed cap on the box floor (docs/mesh.md, "Surface quality").

    Returns:
        :class:`Mesh` (metres) with ``stats``: ``raw_faces``, ``components`` (surface pieces of the raw
        grid), ``kept_face_fraction``,
        ``faces``, ``vertices``; with ``repair`` also ``genus_before``, ``genus``, ``handle_fix``,
        ``handle_radius``, ``points_changed``. Where the surface leaves the box (the neck's bottom cut)
        it is closed by a planar cap on the box face.

    Raises:
        MeshError: ``empty_surface`` / ``surface_fills_box``; ``degenerate_surface`` when the kept
            component has fewer than 100 faces.
    """
    from backend.coords import box_to_metres
    from backend.mesh_topology import repair_topology
    from backend.symmetry import mirror_twins, symmetrize

    check_surface(grid)
    topo: dict = {}
    if repair:
        values = grid.values.copy()
        # the bottom cut: whatever is solid in the lowest cell reaches the box floor, so nothing hovers a
        # fraction of a cell above the cap (the shoulders' underside would otherwise)
        values[:, :, 0] = np.maximum(values[:, :, 0], values[:, :, 1])
        values, topo = repair_topology(values, grid.level)
        grid = DensityGrid(values=values, level=grid.level, evaluated=grid.evaluated)
    verts, faces = marching_cubes(grid)
    raw_faces = int(len(faces))
    verts, faces, info = largest_component(verts, faces)
    if repair:  # the pieces marching cubes finds in the raw grid (the repair already dropped the floaters)
        info["components"] = max(info["components"], topo.pop("pieces_before"))
    if len(faces) < 100:
        raise MeshError("degenerate_surface", f"the largest surface piece has only {len(faces)} faces; the field "
                        "holds no head-sized surface (untrained weights, or a sketch far from a head)")
    on_face = np.abs(verts) >= 1.0
    if smooth_iterations > 0:
        twins = mirror_twins(verts) if symmetric else None
        verts = taubin_smooth(verts, faces, smooth_iterations)
        if twins is not None:
            verts = symmetrize(verts, twins)
        if repair:
            verts = _snap_to_box(verts, on_face)
    if max_faces is not None:
        verts, faces = decimate(verts, faces, max_faces)
        if repair:
            verts = _snap_to_box(verts, np.abs(verts) >= 1.0 - 1e-3)  # 0.2 mm
    stats = dict(info, raw_faces=raw_faces, faces=int(len(faces)), vertices=int(len(verts)), **topo)
    return Mesh(vertices=box_to_metres(verts), faces=faces, stats=stats)
