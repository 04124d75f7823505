"""Geometry and posterior helpers of the evaluation: the product's mesh of a tri-plane field, surface
samples of predicted and ground-truth meshes (visible, outer or whole surface, cropped to the box), the
per-head Chamfer / F-score geometry with its face and hair regions, grouping of per-head rows, and the
tri-planes of a SynHead test head with its posterior z.

Used by ``s3d-eval`` (training/eval_cli.py), training/calibration.py and the benchmarks; no CLI here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.labels import LABEL_IDS


def predicted_mesh(model, planes: torch.Tensor, grid: int):
    """The product's mesh of a tri-plane field (backend/mesh.py: coarse-to-fine density grid with ``grid``
    cells a side, marching cubes at the surface density, largest component, Taubin smoothing) as a
    trimesh in metres, or None when the field has no surface."""
    import trimesh

    from backend.mesh import MeshError, density_grid, extract_mesh

    def density(xyz: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(xyz, np.float32)).to(planes.device)
        return np.concatenate([model.query(planes, x[i:i + 262144][None])["sigma"][0, :, 0].cpu().numpy()
                               for i in range(0, len(x), 262144)])

    try:
        mesh = extract_mesh(density_grid(density, grid, model.surface_sigma, levels=3 if grid >= 64 else 2),
                            max_faces=None)
    except MeshError:
        return None
    return trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)


def mesh_samples(mesh, n: int, rng: np.random.Generator, visible_only: bool = True) -> np.ndarray:
    """``(<= n, 3)`` area-uniform surface samples in metres of a (predicted) trimesh, cropped by
    :func:`inside_box`; ``visible_only``: only those a camera outside can see (:func:`visible_samples`),
    as the ``visible`` reference; empty for ``mesh`` None."""
    import trimesh

    if mesh is None:
        return np.zeros((0, 3))
    if visible_only:
        return visible_samples(mesh, n, rng)
    pts, _ = trimesh.sample.sample_surface(mesh, int(n * 1.5), seed=int(rng.integers(2 ** 31)))
    return inside_box(np.asarray(pts))[:n]


def visible_samples(mesh, n: int, rng: np.random.Generator, return_faces: bool = False):
    """Area-uniform samples ``(<= n, 3)`` metres of the part of a trimesh's surface that a camera outside
    it can see: a ray from the sample escapes along one of 26 directions
    (:func:`training.synhead.points.visible_surface`), cropped by :func:`inside_box`, shuffled;
    ``return_faces``: also the index ``(<= n,)`` int64 of the triangle each sample lies on."""
    import trimesh

    from training.synhead.points import visible_surface
    from training.synhead.raycast import RayScene

    pts, faces = trimesh.sample.sample_surface(mesh, int(n * 2.5), seed=int(rng.integers(2 ** 31)))
    pts, faces = np.asarray(pts, np.float64), np.asarray(faces, np.int64)
    keep = inside_box_mask(pts)
    pts, faces = pts[keep], faces[keep]
    scene = RayScene(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64))
    seen = visible_surface(scene, pts)
    pts, faces = pts[seen], faces[seen]
    order = rng.permutation(len(pts))[:n]
    return (pts[order], faces[order]) if return_faces else pts[order]


#: Surface samples within this distance (metres) of a box face are left out of the geometry metrics:
#: the ground truth continues outside the box (shoulders), and the prediction is capped there.
BOX_FACE_MARGIN_M = 0.003


def inside_box_mask(pts: np.ndarray, margin: float = BOX_FACE_MARGIN_M) -> np.ndarray:
    """Bool ``(N,)``: which points ``(N, 3)`` metres lie farther than ``margin`` inside every box face."""
    from backend.coords import BOX_CENTER_M, BOX_SIZE_M

    return (np.abs(pts - np.asarray(BOX_CENTER_M)) < BOX_SIZE_M / 2 - margin).all(1)


def inside_box(pts: np.ndarray, margin: float = BOX_FACE_MARGIN_M) -> np.ndarray:
    """Points ``(N, 3)`` metres kept by the geometry metrics: farther than ``margin`` inside every box face."""
    return pts[inside_box_mask(pts, margin)]


#: Ground-truth surfaces the geometry metrics can compare against (:func:`mesh_surface_points`).
SURFACE_REFERENCES = ("visible", "outer", "all")


def mesh_surface_points(path: Path, n: int, rng: np.random.Generator, reference: str = "visible",
                        with_labels: bool = False):
    """Area-uniform samples ``(<= n, 3)`` of a ground-truth mesh (metres), cropped by :func:`inside_box`;
    ``with_labels`` (``visible`` reference only): ``(points, labels (<= n,) uint8)``, each sample with the
    label id of its triangle's first vertex (the PLY's ``label`` vertex property).

    A SynHead mesh is several closed parts (head, hair, eyeballs, ...) that overlap: the scalp runs under
    the hair, the back halves of the eyeballs sit inside the skull, the hair shell leaves a gap over the
    scalp, the mouth and eye sockets are cavities. ``reference``:

    * ``"visible"`` (what ``s3d-eval`` reports): only surface a camera outside the head can see
      (:func:`visible_samples`; the prediction is filtered the same way), what an artist gets to see;
    * ``"outer"``: samples inside another closed part dropped, cavities and gaps kept;
      measured on test heads 0-9, 10-17 % of these samples are not visible from any direction;
    * ``"all"``: every part's whole surface; 32-36 % of it lies more than 5 mm from the
      outer surface (heads 0 and 1), which capped even a perfect occupancy at F@5mm 0.77-0.80.

    Raises:
        ValueError: an unknown ``reference``; ``with_labels`` for another reference or a mesh without labels.
    """
    import trimesh

    if reference not in SURFACE_REFERENCES:
        raise ValueError(f"reference must be one of {SURFACE_REFERENCES}, got {reference!r}")
    if with_labels and reference != "visible":
        raise ValueError(f"labelled samples are made for the visible reference only, not {reference!r}")
    mesh = trimesh.load(path, force="mesh", process=False)
    if reference == "visible":
        if not with_labels:
            return visible_samples(mesh, n, rng)
        from backend.export import read_ply

        labels = read_ply(Path(path).read_bytes())["label"]
        if len(labels) != len(mesh.vertices):
            raise ValueError(f"{path}: {len(labels)} vertex labels for {len(mesh.vertices)} vertices")
        pts, faces = visible_samples(mesh, n, rng, return_faces=True)
        return pts, labels[np.asarray(mesh.faces)[faces, 0]]
    if reference == "all":
        pts, _ = trimesh.sample.sample_surface(mesh, int(n * 1.5), seed=int(rng.integers(2 ** 31)))
        return inside_box(np.asarray(pts))[:n]
    parts = mesh.split(only_watertight=False)
    closed = [i for i, part in enumerate(parts) if part.is_watertight]
    area = np.array([part.area for part in parts])
    kept = []
    for i, part in enumerate(parts):
        m = max(int(np.ceil(n * 3.0 * area[i] / area.sum())), 1)
        pts, _ = trimesh.sample.sample_surface(part, m, seed=int(rng.integers(2 ** 31)))
        pts = inside_box(np.asarray(pts))
        covered = np.zeros(len(pts), bool)
        for j in closed:
            if j != i and len(pts):
                covered |= parts[j].contains(pts)
        kept.append(pts[~covered])
    pts = np.concatenate(kept)
    # the parts were sampled in turn: shuffle before truncating so every part keeps its share
    return pts[rng.permutation(len(pts))[:n]]


def hair_style(sample) -> str | None:
    """The SynHead hair style of a sample (``params.hair.style`` of its manifest entry), or None."""
    return ((sample.entry.get("params") or {}).get("hair") or {}).get("style")


def head_pose(sample) -> str:
    """``"turned"`` when the SynHead head is turned (``placement.pose_deg``, generator >= 0.2.0: yaw, pitch or
    roll of at least 1 degree), else ``"frontal"`` (also every 0.1.0 head, which has no pose)."""
    pose = (sample.entry.get("placement") or {}).get("pose_deg") or {}
    return "turned" if any(abs(float(v)) >= 1.0 for v in pose.values()) else "frontal"


def geometry_by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """Mean whole-head and face geometry of the rows grouped by ``row[key]`` (rows without it are left out):
    ``{group: {"count", "mean_chamfer_mm", "mean_fscore_5mm", "mean_chamfer_mm_face", "mean_fscore_5mm_face"}}``."""
    groups = sorted({r[key] for r in rows if r.get(key)})
    return {g: {"count": len(sel), **{f"mean_{k}": float(np.mean([r[k] for r in sel if k in r]))
                                      for k in ("chamfer_mm", "fscore_5mm", "chamfer_mm_face", "fscore_5mm_face")
                                      if any(k in r for r in sel)}}
            for g in groups for sel in [[r for r in rows if r.get(key) == g]]}


#: Regions of the visible ground truth with their own geometry metrics (``*_face``, ``*_hair``; the
#: region-restricted :func:`training.metrics.chamfer_fscore`): the face and ears, which the mask pins down
#: in outline, and the hair, whose depth, curls and hidden back it can only hint at.
GEOMETRY_REGIONS: dict[str, tuple[int, ...]] = {
    "face": tuple(LABEL_IDS[n] for n in ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear",
                                         "r_ear", "mouth", "u_lip", "l_lip")),
    "hair": (LABEL_IDS["hair"], LABEL_IDS["hat"]),
}


def region_geometry(pred: np.ndarray, gt: np.ndarray, gt_labels: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`training.metrics.chamfer_fscore` restricted to each of :data:`GEOMETRY_REGIONS`, for the
    regions the truth has samples in: ``{region: metrics}``. ``pred (N, 3)``, ``gt (M, 3)`` metres,
    ``gt_labels (M,)`` label ids of the truth samples (``mesh_surface_points(..., with_labels=True)``)."""
    from training.metrics import chamfer_fscore

    inside = {region: np.isin(gt_labels, ids) for region, ids in GEOMETRY_REGIONS.items()}
    return {region: chamfer_fscore(pred, gt, gt_region=sel) for region, sel in inside.items() if sel.any()}


def geometry_metrics(pred: np.ndarray, gt: np.ndarray, gt_labels: np.ndarray,
                     regions: bool = True) -> dict[str, float]:
    """The per-head geometry of ``s3d-eval``: :func:`training.metrics.chamfer_fscore` of ``pred (N, 3)``
    against ``gt (M, 3)`` (metres) plus, with ``regions`` (human heads: the regions are CelebAMask-HQ ids),
    ``{chamfer_mm, fscore_2mm, fscore_5mm}_{region}`` for each of :data:`GEOMETRY_REGIONS` the truth has
    samples in (``gt_labels (M,)`` label ids)."""
    from training.metrics import chamfer_fscore

    out = chamfer_fscore(pred, gt)
    if not regions:
        return out
    for region, r in region_geometry(pred, gt, gt_labels).items():
        out.update({f"{k}_{region}": r[k] for k in ("chamfer_mm", "fscore_2mm", "fscore_5mm")})
    return out


@torch.no_grad()
def posterior_planes(model, sample) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """A SynHead sample's ``(label ids (H, W) uint8, one-hot mask (1, K, H, W) float32 (K classes of the
    model's label set), planes (1, 3, C, R, R))``, the planes with z = ``Mask2Triplane.posterior_z`` of the ground-truth input-view RGB (how the
    evaluation renders a test head); a mirror pair ``(1, 2, 3, C, R, R)`` when the model mirror-averages
    (``Mask2Triplane.planes_from_onehot``, same z for both)."""
    from backend.models.mask2triplane import ids_to_onehot
    from training.datasets import read_ids, read_rgb

    ids = read_ids(sample.path("mask"), model.labels)
    onehot = ids_to_onehot(torch.from_numpy(ids)[None].long(), model.num_classes)
    rgb = torch.from_numpy(read_rgb(sample.path("rgb"))).permute(2, 0, 1)[None]
    return ids, onehot, model.planes_from_onehot(onehot, model.posterior_z(rgb, onehot))
