"""Topology repair of the density grid before marching cubes: one solid piece, no cavities, genus 0.

A generated field often has small defects that marching cubes turns into a surface a sculptor cannot use
as it is: loose blobs (extra pieces), closed bubbles inside the head (inner shells) and thin tunnels
(handles: hair strands bridging to the head, an ear fused at its top and bottom). They are repaired on
the **binary occupancy** ``values >= level`` of the grid (docs/mesh.md, "Surface quality"):

1. keep the largest 6-connected solid component (scipy.ndimage.label);
2. fill the cavities: empty space not connected to the box's border (scipy.ndimage.binary_fill_holes);
3. remove handles by a morphological **closing** (fills tunnels narrower than the ball) or **opening**
   (cuts bridges thinner than it) with a ball (``radius`` steps of the 18-neighbourhood) of the smallest
   radius, 1 cell upwards, after which the
   marching-cubes surface of the grid is one piece of genus 0. A closing fills crevices as well as
   tunnels, so the largest connected pieces of the change are then given back one by one when the
   surface stays genus 0 without them. The genus is read from the Euler
   characteristic of that surface, ``chi = V - E + F = 2 - 2 g`` for one closed piece, because marching
   cubes resolves ambiguous cells its own way, so the voxel set's genus may differ from the surface's.

Only the grid points whose side of the level changes are edited: their density is mirrored about the
level (``2 level - value``, so a point a little outside becomes a little inside), which keeps the
sub-cell placement of the surface everywhere else. A symmetric grid stays symmetric (every step is).
"""
from __future__ import annotations

import numpy as np

#: The largest ball radius (grid cells) tried to remove handles.
MAX_HANDLE_RADIUS = 4
#: How many of the largest pieces of a closing's or opening's change are tested for being needed.
UNDO_TESTS = 8


def euler_characteristic(faces: np.ndarray, n_vertices: int) -> int:
    """``V - E + F`` of a triangle mesh: ``faces (F, 3)`` int indices into ``n_vertices`` vertices, each
    undirected edge counted once. For one closed orientable piece the genus is ``(2 - chi) / 2``."""
    f = np.asarray(faces, np.int64)
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    n_edges = len(np.unique(e[:, 0] * (int(n_vertices) + 1) + e[:, 1]))
    return int(n_vertices) - n_edges + len(f)


def surface_genus(values: np.ndarray, level: float) -> tuple[float, int]:
    """Marching-cubes surface of the grid ``values (n,)*3`` at ``level`` (padded outside like
    :func:`backend.mesh.marching_cubes`): ``(total genus of its pieces, number of pieces)``; the total
    genus ``(2 * pieces - chi) / 2`` is 0 only when every piece is a topological sphere."""
    import mcubes
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    lo = min(float(values.min()), level) - 1.0
    verts, faces = mcubes.marching_cubes(np.pad(values, 1, constant_values=lo), level)
    if len(faces) == 0:
        return 0.0, 0
    f = faces.astype(np.int64)
    nv = len(verts)
    graph = coo_matrix((np.ones(2 * len(f), np.int8), (np.concatenate([f[:, 0], f[:, 1]]),
                                                        np.concatenate([f[:, 1], f[:, 2]]))), shape=(nv, nv))
    lone = nv - len(np.unique(f))  # vertices in no face count as neither pieces nor in chi
    pieces = connected_components(graph, directed=False)[0] - lone
    chi = euler_characteristic(f, nv) - lone
    return (2 * pieces - chi) / 2.0, int(pieces)


def _ball_dilate(occ: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of a bool grid by a discrete ball of ``radius`` cells: ``radius`` steps of the
    18-neighbourhood (scipy.ndimage; a cuboctahedron, within 20 % of the Euclidean ball)."""
    from scipy.ndimage import binary_dilation, generate_binary_structure

    return binary_dilation(occ, structure=generate_binary_structure(3, 2), iterations=radius)


def _closing(occ: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing by a ball: dilate, then erode (the grid is padded so the border does not erode)."""
    pad = np.pad(occ, radius + 1)
    closed = ~_ball_dilate(~_ball_dilate(pad, radius), radius)
    return closed[(slice(radius + 1, -radius - 1),) * 3]


def _opening(occ: np.ndarray, radius: int) -> np.ndarray:
    """Binary opening by a ball: erode, then dilate."""
    return _ball_dilate(~_ball_dilate(~occ, radius), radius)


def largest_solid(occ: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a bool grid ``(n,)*3``, cavities filled (bool, same shape)."""
    from scipy.ndimage import binary_fill_holes, label

    lab, n = label(occ)
    if n > 1:
        counts = np.bincount(lab.ravel())
        counts[0] = 0
        occ = lab == int(counts.argmax())
    return binary_fill_holes(occ)


def _apply(values: np.ndarray, level: float, occ: np.ndarray) -> np.ndarray:
    """``values`` with the points whose side of ``level`` differs from ``occ`` mirrored about the level
    (a flipped point at exactly the level moves a hundredth of the grid's spread past it)."""
    out = values.copy()
    flip = (values >= level) != occ
    eps = 1e-2 * max(float(np.abs(values - level).max()), 1e-6)
    mirrored = 2.0 * level - values[flip]
    inside = occ[flip]
    out[flip] = np.where(inside, np.maximum(mirrored, level + eps), np.minimum(mirrored, level - eps))
    return out.astype(values.dtype)


def _crop(occ: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of the True points of ``occ`` grown by ``margin`` cells, clipped to the grid."""
    idx = np.nonzero(occ)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n))
                 for i, n in zip(idx, occ.shape))


def _remove_handles(values: np.ndarray, level: float, base: np.ndarray, genus: float, max_radius: int
                    ) -> tuple[np.ndarray | None, dict]:
    """Try closings, then openings, of ``base`` with balls of growing radius; the first grid that reaches
    genus 0, else the lowest genus found (None when nothing lowered it), and its stats."""
    best, stats = None, {"genus": genus, "handle_fix": "none", "handle_radius": 0}
    for radius in range(1, max_radius + 1):
        for name, op in (("closing", _closing), ("opening", _opening)):
            occ = largest_solid(op(base, radius))
            if not occ.any():
                continue
            cand = _apply(values, level, occ)
            g, _ = surface_genus(cand, level)
            if g < stats["genus"]:
                best = cand
                stats.update(genus=g, handle_fix=name, handle_radius=radius)
            if stats["genus"] == 0:
                return best, stats
    return best, stats


def _undo_needless(values: np.ndarray, level: float, base: np.ndarray, occ: np.ndarray, pieces: int,
                   mirror: bool, tests: int = UNDO_TESTS) -> np.ndarray:
    """Give back to ``base`` each of the ``tests`` largest connected pieces (26-connected) of the change
    ``occ != base`` that the topology does not need: a closing fills crevices as well as the tunnels
    it is meant for. A piece is given back when the surface stays genus 0 with at most ``pieces``
    pieces. With ``mirror`` (the grid is symmetric about its x mid-plane) a piece goes with its mirror
    image, so the result stays symmetric. Returns the new occupancy."""
    from scipy.ndimage import label

    lab, n = label(occ != base, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return occ
    sizes = np.bincount(lab.ravel())[1:]
    done = np.zeros(n + 1, bool)
    for i in np.argsort(-sizes, kind="stable")[:tests] + 1:
        if done[i]:
            continue
        piece = lab == i
        if mirror:
            piece |= piece[::-1]
        done[np.unique(lab[piece])] = True
        trial = np.where(piece, base, occ)
        g, p = surface_genus(_apply(values, level, trial), level)
        if g == 0 and p <= pieces:
            occ = trial
    return occ


def repair_topology(values: np.ndarray, level: float, max_radius: int = MAX_HANDLE_RADIUS
                    ) -> tuple[np.ndarray, dict]:
    """Make the grid's marching-cubes surface one closed piece of genus 0 (module docstring).

    The work is done on the bounding box of the solid grown by ``max_radius + 2`` cells; the grid's
    border (the bottom cut of the neck) is never eroded: the closing pads it, the opening's erosion only
    measures distances to empty points inside the grid.

    Args:
        values: ``(n + 1,) * 3`` float32 density grid (inside where ``>= level``).
        level: the iso-level.
        max_radius: the largest ball radius (cells) tried for the closing / opening.

    Returns:
        ``(new values (same shape and dtype), stats)``; stats: ``genus_before`` (total genus of the raw
        grid's surface pieces), ``pieces_before`` (surface pieces of the raw grid), ``genus`` (after),
        ``handle_fix`` (``"none"``, ``"closing"`` or ``"opening"``),
        ``handle_radius`` (cells), ``points_changed`` (grid points moved to the other side of the level).
        When no radius up to ``max_radius`` gives genus 0, the grid with the lowest genus found is returned.
    """
    occ0 = values >= level
    if not occ0.any():
        return values, {"genus_before": 0.0, "genus": 0.0, "handle_fix": "none", "handle_radius": 0,
                        "points_changed": 0, "pieces_before": 0}
    box = _crop(occ0, max_radius + 2)
    sub = values[box]
    genus_before, pieces_before = surface_genus(sub, level)
    base = largest_solid(occ0[box])
    fixed = _apply(sub, level, base)
    genus = genus_before if np.array_equal(base, occ0[box]) else surface_genus(fixed, level)[0]
    stats = {"genus_before": genus_before, "genus": genus, "handle_fix": "none", "handle_radius": 0,
             "pieces_before": pieces_before}
    if genus > 0:
        better, found = _remove_handles(sub, level, base, genus, max_radius)
        if better is not None:
            fixed = better
            stats.update(found)
        if found["genus"] == 0:
            spread = float(np.abs(sub - level).max())
            mirror = bool(np.abs(sub - sub[::-1]).max() <= 1e-5 * spread)  # a symmetric job's grid
            occ = _undo_needless(sub, level, base, fixed >= level, surface_genus(fixed, level)[1], mirror)
            fixed = _apply(sub, level, occ)
    out = values.copy()  # outside the crop every point is already outside the surface
    out[box] = fixed
    stats["points_changed"] = int(((out >= level) != occ0).sum())
    return out.astype(values.dtype), stats
