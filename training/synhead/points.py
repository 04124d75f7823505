"""3D supervision points of one scene in the tri-plane box (docs/contracts.md section 3, ``points.npz``).

About 16k points: uniform in the box (kind 0), near the surface (kind 1: surface samples plus Gaussian
offsets of 2 mm and 10 mm), on the surface (kind 2). ``occ`` is 1 inside any closed part of the ground
truth (per-part ray-parity inside tests on one embree scene, see :func:`inside_any_part`), and since
generator 0.4.0 (or after ``s3d-data fill-cavities``) also in free space the mesh encloses
(:func:`fill_enclosed_cavities`);
``label`` and ``rgb`` come from the nearest *visible* surface sample (KD-tree over area-weighted samples
of the surface a camera outside the head can see, :func:`visible_surface`; since generator 0.3.0, before
that of all parts' whole surfaces).
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
from scipy.spatial import cKDTree

from backend.coords import BOX_SIZE_M, box_to_metres, metres_to_box

N_UNIFORM, N_NEAR, N_SURFACE = 6000, 6000, 4000
#: ``points_labels`` of samples and manifests whose point labels come from the visible surface (0.3.0 on,
#: or upgraded by ``s3d-data relabel``); absent: labels of the nearest of all surfaces.
POINTS_LABELS_VISIBLE = "visible"


def surface_samples(vertices: np.ndarray, faces: np.ndarray, vertex_labels: np.ndarray, vertex_colors: np.ndarray,
                    n: int, rng: np.random.Generator):
    """``n`` area-uniform samples of a triangle mesh: ``(pts (n, 3) float64 metres, labels (n,) uint8 of the
    nearest corner, colours (n, 3) barycentric mix of the vertex colours)``."""
    tri = np.asarray(vertices, np.float64)[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    fi = rng.choice(len(area), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    pts = (tri[fi] * bary[..., None]).sum(1)
    f = faces[fi]
    lab = vertex_labels[f][np.arange(n), np.argmax(bary, 1)]
    col = (vertex_colors[f] * bary[..., None]).sum(1)
    return pts, lab, col


#: Directions of the visibility test: the 26 neighbours of a cube cell (axes, edge and corner diagonals).
VISIBILITY_DIRECTIONS = np.array([(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)
                                  if (x, y, z) != (0, 0, 0)], np.float64)
VISIBILITY_DIRECTIONS /= np.linalg.norm(VISIBILITY_DIRECTIONS, axis=1, keepdims=True)


def visible_surface(ray_scene, pts: np.ndarray, start_offset_m: float = 1e-4) -> np.ndarray:
    """(N,) bool: surface samples ``pts (N, 3)`` metres from which a ray escapes the scene along at least
    one of :data:`VISIBILITY_DIRECTIONS`, i.e. surface a camera outside the head can see. Hidden: the
    scalp under the hair and the eyeballs inside the skull (inside another closed part), but also the
    walls of cavities open to the outside only through a slit (the mouth cavity behind the lips, the
    eye socket around the eyeball behind the lids). Measured on SynHead head 0: of the eye-labelled
    surface only 12 of 654 samples are visible from the front and 283 are outside every other part; of
    the mouth-labelled surface 20 of 3501 are visible from the front, all 3501 outside every other part."""
    return escapes_scene(ray_scene, pts, start_offset_m)


def escapes_scene(ray_scene, pts: np.ndarray, start_offset_m: float = 0.0) -> np.ndarray:
    """(N,) bool: a ray from each point ``pts (N, 3)`` metres, started ``start_offset_m`` along it, leaves
    the scene without a hit along at least one of :data:`VISIBILITY_DIRECTIONS`."""
    escaped = np.zeros(len(pts), bool)
    for d in VISIBILITY_DIRECTIONS:
        todo = np.flatnonzero(~escaped)
        if not len(todo):
            break
        hit, _, _, _ = ray_scene.first_hits(pts[todo] + d * start_offset_m, np.broadcast_to(d, (len(todo), 3)))
        escaped[todo[~hit]] = True
    return escaped


#: ``points_occupancy`` of samples and manifests whose enclosed free space counts as inside
#: (:func:`fill_enclosed_cavities`, ``s3d-data fill-cavities``); absent: "parts", inside a closed part only.
POINTS_OCCUPANCY_FILLED = "cavities-filled"


def fill_enclosed_cavities(points: dict, mesh: dict) -> dict:
    """``points`` (a ``points.npz`` dict) with ``occ`` set to 1 at free-space points (kind 0 and 1, ``occ``
    0) from which no ray along :data:`VISIBILITY_DIRECTIONS` leaves the ground-truth ``mesh``
    (:func:`backend.export.read_ply` dict, ``vertices`` metres, ``faces``): hidden cavities such as the
    mouth behind closed lips, the eye socket around the eyeball and gaps under clothes and hair become
    solid. Kind 2 points (on the surface, outside the occupancy loss) and ``label``/``rgb`` are unchanged.

    Why: anny's mouth interior leaves a 5-6 cm deep void 5-7 mm behind the lips; the generator learnt
    to carve it, and whether its lips sealed it off flipped with small mask changes, leaving an enclosed
    second surface of 6-11 % of the faces (docs/models.md). Nobody sees it (the visible-surface
    evaluation ignores it), an artist sculpting the head wants a solid; measured on train heads 200-215:
    207-696 of the ~12,000 kind 0/1 points per head change, 64 % of them nearest a mouth-labelled vertex."""
    from .raycast import RayScene

    occ = np.asarray(points["occ"]).copy()
    free = np.flatnonzero((occ == 0) & (np.asarray(points["kind"]) != 2))
    xyz_m = box_to_metres(np.asarray(points["xyz"], np.float64)[free])
    scene = RayScene(np.asarray(mesh["vertices"], np.float64), np.asarray(mesh["faces"], np.int64))
    occ[free[~escapes_scene(scene, xyz_m)]] = 1
    return {**points, "occ": occ}


def visible_surface_labels(xyz: np.ndarray, surf: np.ndarray, slab: np.ndarray, scol: np.ndarray,
                           visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label (N,) uint8 and colour (N, 3) uint8 of points ``xyz (N, 3)`` metres: those of the nearest
    *visible* surface sample (``surf (S, 3)`` metres, ``slab (S,)``, ``scol (S, 3)`` in [0, 1], ``visible
    (S,)`` bool from :func:`visible_surface`). Labels of hidden surfaces (eyeballs under the lids, the
    mouth cavity, the scalp under the hair) would otherwise leak into the near-surface points around
    them: the generator learnt eyes 4-9x the size of the visible eye (SynHead < 0.3.0)."""
    tree = cKDTree(surf[visible])
    _, nn = tree.query(xyz, k=1)
    return slab[visible][nn].astype(np.uint8), (np.clip(scol[visible][nn], 0, 1) * 255 + 0.5).astype(np.uint8)


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
    _, vlab, vcol, _ = scene.combined()
    surf, slab, scol = surface_samples(scene.vertices, scene.faces, vlab, vcol, 30000, rng)
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
    label, rgb = visible_surface_labels(xyz, surf, slab, scol, visible_surface(scene.ray_scene(), surf))
    return {"xyz": metres_to_box(xyz).astype(np.float16), "occ": occ.astype(np.uint8), "label": label, "rgb": rgb,
            "kind": kind}


def relabel_points(points: dict, mesh: dict, rng: np.random.Generator, n_samples: int = 30000) -> dict:
    """``points`` (a ``points.npz`` dict) with ``label`` and ``rgb`` recomputed from the visible surface of the
    ground-truth ``mesh`` (:func:`backend.export.read_ply` dict: ``vertices`` metres, ``faces``, ``label``,
    ``rgb`` uint8), as generator 0.3.0 writes them; ``xyz``, ``occ`` and ``kind`` unchanged. Upgrades data
    of SynHead 0.1.0 / 0.2.0 without re-rendering (``s3d-data relabel``)."""
    from .raycast import RayScene

    vertices = np.asarray(mesh["vertices"], np.float64)
    faces = np.asarray(mesh["faces"], np.int64)
    surf, slab, scol = surface_samples(vertices, faces, mesh["label"], mesh["rgb"] / 255.0, n_samples, rng)
    xyz_m = box_to_metres(np.asarray(points["xyz"], np.float64))
    label, rgb = visible_surface_labels(xyz_m, surf, slab, scol, visible_surface(RayScene(vertices, faces), surf))
    return {**points, "label": label, "rgb": rgb}


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
