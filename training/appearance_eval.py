"""Appearance figures of generated heads that need no downloaded network (FID's Inception weights cannot
be fetched here): colour contrast, chroma, sharpness and seed diversity against SynHead's ground truth.

Definitions (docs/evaluation.md, "Appearance figures"). Each head is generated as a user gets it,
``s3d generate MASK --from-mask --no-frame --seed S`` on the head's own 512 px label map, and compared
with the head's ground-truth mesh (``mesh.ply``: SynHead's albedo as vertex colours, its classes as
vertex labels):

* per head and class group, the mean CIELAB colour (sRGB, D65; OpenCV's conversion) over the group's
  vertices: skin {skin}, hair {hair}, lips {u_lip, l_lip}, brows {l_brow, r_brow}, eyes {l_eye, r_eye},
  cloth {cloth}; a group counts with at least :data:`MIN_VERTICES` vertices in both meshes;
* **contrast ratio**: delta-E76 of hair, lips, brows and eyes to the skin, generated over ground truth,
  each summed over the heads and groups where both exist (a ratio of sums, so a head with a tiny
  contrast does not blow up the figure);
* **chroma ratio**: the same for the chroma sqrt(a*^2 + b*^2) of hair and cloth;
* **sharpness ratio**: gradient energy (mean squared Sobel gradient of L*) of the front view of the mesh
  rasterised with its vertex colours, no lighting, over that of the ground-truth mesh rasterised the same
  way, inside both silhouettes eroded by 2 pixels (the silhouette edge itself is not detail);
* **hair diversity ratio**: the mean pairwise delta-E of the hair colour between the seeds of one mask,
  averaged over masks, over the mean pairwise delta-E of the ground-truth hair colour between heads.
The ground truth scores 1 on each by construction.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from backend.labels import LABEL_IDS

#: Class groups of the figures (label names of backend/labels.py).
GROUPS: dict[str, tuple[str, ...]] = {
    "skin": ("skin",), "hair": ("hair",), "lips": ("u_lip", "l_lip"), "brows": ("l_brow", "r_brow"),
    "eyes": ("l_eye", "r_eye"), "cloth": ("cloth",),
}
#: Groups whose contrast to the skin is measured, and groups whose chroma is.
CONTRAST_GROUPS = ("hair", "lips", "brows", "eyes")
CHROMA_GROUPS = ("hair", "cloth")
#: Fewest vertices a group needs in a mesh to count.
MIN_VERTICES = 5


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB colours ``(..., 3)`` uint8 (or float in [0, 1]) -> CIELAB ``(..., 3)`` float32 (L* 0..100, D65)."""
    x = np.asarray(rgb)
    x = (x.astype(np.float32) / 255.0) if x.dtype == np.uint8 else x.astype(np.float32)
    shape = x.shape
    return cv2.cvtColor(x.reshape(-1, 1, 3), cv2.COLOR_RGB2Lab).reshape(shape)


def group_colours(rgb: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Mean CIELAB colour ``(3,)`` per group of :data:`GROUPS` that has at least :data:`MIN_VERTICES`
    vertices. ``rgb (V, 3)`` uint8 sRGB, ``labels (V,)`` int label ids."""
    lab = srgb_to_lab(rgb)
    out = {}
    for group, names in GROUPS.items():
        sel = np.isin(labels, [LABEL_IDS[n] for n in names])
        if sel.sum() >= MIN_VERTICES:
            out[group] = lab[sel].mean(0)
    return out


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 colour difference of two CIELAB colours."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def chroma(lab: np.ndarray) -> float:
    """CIELAB chroma sqrt(a*^2 + b*^2)."""
    return float(np.hypot(lab[1], lab[2]))


def gradient_energy(rgb: np.ndarray, region: np.ndarray) -> float:
    """Mean squared Sobel gradient of L* over ``region (H, W)`` bool of an sRGB image ``(H, W, 3)`` (uint8
    or float in [0, 1]); 0 for an empty region."""
    lum = srgb_to_lab(rgb)[..., 0]
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3)
    return float((gx ** 2 + gy ** 2)[region].mean()) if region.any() else 0.0


def front_albedo(vertices_m: np.ndarray, faces: np.ndarray, rgb: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """The front view of a mesh (vertices in metres) rasterised with its vertex colours, no lighting:
    ``(image (R, R, 3) float32 sRGB in [0, 1], covered (R, R) bool)``."""
    from backend.coords import metres_to_box
    from backend.vertex_colors import STANDARD_VIEWS, rasterize

    depth, attrs = rasterize(STANDARD_VIEWS[0], metres_to_box(vertices_m), faces, resolution,
                             vertex_attributes=np.asarray(rgb, np.float32) / 255.0)
    return np.clip(attrs, 0.0, 1.0), np.isfinite(depth)


def sharpness_pair(gen: dict[str, np.ndarray], gt: dict[str, np.ndarray], resolution: int = 256) -> tuple[float, float]:
    """Gradient energies ``(generated, ground truth)`` of the two meshes' front albedo views inside both
    silhouettes eroded by 2 pixels. Meshes as :func:`backend.export.read_ply` returns them."""
    img_a, cov_a = front_albedo(gen["vertices"], gen["faces"], gen["rgb"], resolution)
    img_b, cov_b = front_albedo(gt["vertices"], gt["faces"], gt["rgb"], resolution)
    region = cv2.erode((cov_a & cov_b).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return gradient_energy(img_a, region), gradient_energy(img_b, region)


def appearance_figures(heads: list[dict[str, Any]], diversity: list[list[np.ndarray]],
                       gt_hair: list[np.ndarray]) -> dict[str, Any]:
    """The four ratios from per-head records.

    Args:
        heads: one dict per head: ``gen`` and ``gt`` (group colours, :func:`group_colours`) and
            ``sharpness`` ``(generated, ground truth)`` gradient energies.
        diversity: per mask, the generated hair colours (CIELAB) of its seeds.
        gt_hair: ground-truth hair colours (CIELAB) of the heads.

    Returns:
        ``contrast_ratio``, ``chroma_ratio``, ``sharpness_ratio``, ``hair_diversity_ratio`` (None where
        nothing was measurable), the per-group contrast and chroma ratios and the raw sums.
    """
    def ratio(num: float, den: float) -> float | None:
        return round(num / den, 4) if den > 0 else None

    per_group: dict[str, list[float]] = {}
    contrast = [0.0, 0.0]
    for h in heads:
        gen, gt = h["gen"], h["gt"]
        if "skin" not in gen or "skin" not in gt:
            continue
        for g in CONTRAST_GROUPS:
            if g in gen and g in gt:
                a, b = delta_e(gen[g], gen["skin"]), delta_e(gt[g], gt["skin"])
                contrast[0] += a
                contrast[1] += b
                per_group.setdefault(f"contrast_{g}", [0.0, 0.0])
                per_group[f"contrast_{g}"][0] += a
                per_group[f"contrast_{g}"][1] += b
    chroma_sum = [0.0, 0.0]
    for h in heads:
        for g in CHROMA_GROUPS:
            if g in h["gen"] and g in h["gt"]:
                a, b = chroma(h["gen"][g]), chroma(h["gt"][g])
                chroma_sum[0] += a
                chroma_sum[1] += b
                per_group.setdefault(f"chroma_{g}", [0.0, 0.0])
                per_group[f"chroma_{g}"][0] += a
                per_group[f"chroma_{g}"][1] += b
    sharp = [sum(h["sharpness"][0] for h in heads), sum(h["sharpness"][1] for h in heads)]
    spreads = [np.mean([delta_e(a, b) for a, b in itertools.combinations(cols, 2)])
               for cols in diversity if len(cols) >= 2]
    gt_pairs = [delta_e(a, b) for a, b in itertools.combinations(gt_hair, 2)]
    return {"contrast_ratio": ratio(*contrast), "chroma_ratio": ratio(*chroma_sum),
            "sharpness_ratio": ratio(*sharp),
            "hair_diversity_ratio": ratio(float(np.mean(spreads)) if spreads else 0.0,
                                          float(np.mean(gt_pairs)) if gt_pairs else 0.0),
            "per_group": {k: ratio(*v) for k, v in sorted(per_group.items())},
            "hair_spread_over_seeds_de": round(float(np.mean(spreads)), 3) if spreads else None,
            "hair_spread_over_heads_de": round(float(np.mean(gt_pairs)), 3) if gt_pairs else None,
            "heads": len(heads)}


def evaluate_appearance(models, data, seed: int = 1, diversity_masks: int = 8,
                        diversity_seeds: tuple[int, ...] = (1, 2, 3, 4), resolution: int = 128) -> dict[str, Any]:
    """Generate every head of ``data`` (a :class:`training.datasets.SynHead`) from its label map with
    ``models`` (a :class:`backend.pipeline.ModelBundle`) and measure the appearance figures
    (:func:`appearance_figures`): contrast, chroma and sharpness with ``seed``, hair diversity over
    ``diversity_seeds`` on the first ``diversity_masks`` heads. About 2-3 s a mesh on the CPU."""
    from backend.export import read_ply
    from backend.pipeline import GenerateOptions, generate
    from training.datasets import read_ids

    heads, diversity, gt_hair = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        def make(mask: np.ndarray, s: int) -> dict[str, np.ndarray]:
            out = Path(tmp) / f"seed{s}"
            generate(mask, out, GenerateOptions(seed=s, resolution=resolution, from_mask=True, no_frame=True,
                                                formats=("ply",)), models=models)
            return read_ply((out / "mesh.ply").read_bytes())

        for i, sample in enumerate(data.samples):
            mask = read_ids(sample.path("mask"))
            gt = read_ply(sample.path("mesh").read_bytes())
            gt_groups = group_colours(gt["rgb"], gt["label"])
            gen = make(mask, seed)
            heads.append({"gen": group_colours(gen["rgb"], gen["label"]), "gt": gt_groups,
                          "sharpness": sharpness_pair(gen, gt)})
            if "hair" in gt_groups:
                gt_hair.append(gt_groups["hair"])
            if i < diversity_masks:
                cols = []
                for s in diversity_seeds:
                    g = gen if s == seed else make(mask, s)
                    colours = group_colours(g["rgb"], g["label"])
                    if "hair" in colours:
                        cols.append(colours["hair"])
                diversity.append(cols)
    return appearance_figures(heads, diversity, gt_hair)
