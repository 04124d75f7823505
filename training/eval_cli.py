"""``s3d-eval``: measure the bundled (or any) weights on the SynHead test split and on real inputs.

    s3d-eval --data DIR --weights weights/ --out report.json [--split test|train|all] [--limit 30]
             [--geometry-limit N] [--real-masks DIR]
             [--real-sketches DIR] [--ablation LABEL=RUN_DIR ...] [--update-cards]
             [--only sketch2mask --sketch-styles clean,rough,pencil,portrait,hatched,marker,strands]

Mask -> 3D (weights ``mask2triplane_lite``), per test head:

* geometry: the mesh ``s3d generate`` would make (backend/mesh.py: coarse-to-fine density grid of
  ``--grid`` cells a side, marching cubes at the surface density, largest component, smoothing) ->
  20k samples of its visible surface; Chamfer distance (mm) and F-score at 2 and 5 mm against 20k samples
  of the ground-truth mesh's visible surface (hair included; :func:`mesh_surface_points`), and, as
  ``*_outer``, against the outer reference; the sample sets leave out the 3 mm next to the box
  faces (the truth's shoulders continue outside the box, the prediction is capped there); the same
  restricted to the face and to the hair of the truth (``*_face``, ``*_hair``: :data:`GEOMETRY_REGIONS`);
* label consistency (pix2pix3D's measure): the rendered semantic front view (argmax) against the input
  mask, mIoU over the whole split;
* PSNR and SSIM (sRGB) of the front and back renders against SynHead's views, with z the cVAE posterior mean of
  the ground-truth input-view RGB (appearance reconstruction), and the spread of the mean skin colour
  over four seeds (appearance diversity);
* contact sheets (mask, ground truth and renders from front, side and back).

Sketch -> mask (weights ``sketch2mask_lite``): mIoU and mAP (training/metrics.py) with a per-class table
on the clean test sketches, on augmented ones (stroke-level + S3D morphology + framing, fixed seed), on
the same augmented ones with the glasses strokes kept (the stroke drop also removes glasses
the label map keeps), and on shaded ones (shading marks on the skin, fixed seed), and per sketch style,
with the card's inference setting (``mirror_average``) and, for comparison, the other one; ablation runs
(``--ablation``) are measured on the same split, without mirror averaging. With ``--sketch-styles``, every
head is also re-drawn in each named SynHead style (training/synhead/drawing_styles.py, seeded by the head's
seed and the style's name) and measured per style (``sketch2mask.styles``: mIoU, mAP, per-class IoU; a
table on stderr).

Label sets: the networks and the data must serve the same label set (the weights are loaded for the
data's ``label_set``: a SynCat folder needs cat weights). Class counts, names and per-class tables come
from it. The human-only parts are skipped for any other set, each with a line in the report's ``notes``:
the face / hair geometry regions, the shaded and glasses-kept sketch protocols, ``--sketch-styles``,
``--real-sketches`` (the face checks), ``--real-masks`` and ``--appearance`` (human class groups).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.labels import CELEBAMASK_HQ, LABEL_NAMES, NUM_CLASSES, LabelSet, colorize

# GEOMETRY_REGIONS, inside_box, region_geometry, visible_samples: the benchmarks import them from here
from training.geometry_eval import (GEOMETRY_REGIONS, geometry_by, geometry_metrics, hair_style,  # noqa: F401
                                    head_pose, inside_box, mesh_samples, mesh_surface_points, posterior_planes,
                                    predicted_mesh, region_geometry, visible_samples)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _render_srgb(render: dict[str, torch.Tensor]) -> np.ndarray:
    """A renderer output's linear ``rgb (1, 3, R, R)`` -> sRGB-encoded ``(R, R, 3)`` float in [0, 1]."""
    from backend.colorspace import linear_to_srgb

    return linear_to_srgb(render["rgb"][0].permute(1, 2, 0).numpy(), np.float32)


@torch.no_grad()
def evaluate_mask2triplane(model, data, grid: int, view_res: int, sheet_path: Path | None, sheet_rows: int = 6,
                           real_masks: Path | None = None, outer_reference: bool = True,
                           geometry_limit: int | None = None) -> dict[str, Any]:
    """Metrics of a :class:`Mask2Triplane` on a :class:`SynHead` test split (see the module docstring);
    ``outer_reference`` adds the geometry against the outer reference (``*_outer`` keys). Classes come
    from the model's label set (``model.labels``); the face / hair geometry regions and ``real_masks`` are
    human-only and skipped for another set (``notes`` in the summary says so). The appearance spread is
    that of label 1 (skin for humans, face fur for cats).

    ``geometry_limit``: measure the geometry (mesh extraction, Chamfer distance, F-score; about 30 s a head
    on one CPU thread) on the first ``geometry_limit`` heads only, and everything else (label consistency,
    PSNR/SSIM, seed spread; a few seconds a head) on all of them, so that label-consistency differences
    of about 0.01 can be resolved on the whole split (30 heads cannot). None: geometry on every
    head. The summary's ``geometry_count`` says on how many heads the geometry was measured.
    Raises ValueError for a negative ``geometry_limit``."""
    if geometry_limit is not None and geometry_limit < 0:
        raise ValueError(f"geometry_limit must be >= 0 (0: no geometry), got {geometry_limit}")
    from backend.models.renderer import VolumeRenderer, orthographic_camera
    from training.datasets import mode_pool, read_rgb
    from training.metrics import chamfer_fscore, confusion_matrix, psnr, segmentation_scores, ssim

    cfg = model.cfg
    renderer = VolumeRenderer(cfg.get("render_samples", 24), cfg.get("render_importance_samples", 24))
    rng = np.random.default_rng(0)
    labels: LabelSet = getattr(model, "labels", CELEBAMASK_HQ)
    human = labels.subject == "human"
    k_classes = labels.num_classes
    conf = np.zeros((k_classes, k_classes), np.int64)
    notes: list[str] = []
    if not human:
        notes.append(f"label set {labels.name}: the face / hair geometry regions (GEOMETRY_REGIONS, human ids) "
                     f"are not measured")
    rows, sheet = [], []
    t0 = time.time()
    for k, s in enumerate(data.samples):
        ids, onehot, planes = posterior_planes(model, s)
        field = lambda x: model.query(planes, x)  # noqa: E731
        row: dict[str, Any] = {"id": s.entry.get("id"), "seed": s.seed, "hair_style": hair_style(s), "pose": head_pose(s)}
        if geometry_limit is None or k < geometry_limit:
            pred_mesh = predicted_mesh(model, planes, grid)
            pred_pts = mesh_samples(pred_mesh, 20000, rng)
            gt_pts, gt_labels = mesh_surface_points(s.path("mesh"), 20000, rng, with_labels=True)
            row.update(geometry_metrics(pred_pts, gt_pts, gt_labels, regions=human))
            if outer_reference:  # the outer reference, comparable with older measurements
                outer = chamfer_fscore(mesh_samples(pred_mesh, 20000, rng, visible_only=False),
                                       mesh_surface_points(s.path("mesh"), 20000, rng, reference="outer"))
                row.update({f"{k}_outer": outer[k] for k in ("chamfer_mm", "fscore_2mm", "fscore_5mm")})
        renders = {v: renderer.render(field, orthographic_camera(v, view_res)) for v in ("front", "left", "back")}
        sem = renders["front"]["semantic"][0].argmax(0).numpy()
        target = mode_pool(ids, view_res) if ids.shape[0] % view_res == 0 else ids
        c = confusion_matrix(sem, target, k_classes)
        conf += c
        row["label_miou"] = segmentation_scores(c)["miou"]
        views = {v["name"]: v for v in s.entry.get("views", [])}
        gt_imgs = {}
        for name in ("front", "back", "left"):
            if name not in views:
                continue
            v = views[name]
            gt = read_rgb(s.root / v["rgb"])
            if v.get("alpha"):
                from training.datasets import read_grey

                a = read_grey(s.root / v["alpha"])[..., None]
                gt = gt * a + (1 - a)
            gt_imgs[name] = gt
            if name in ("front", "back") and gt.shape[0] == view_res:
                pred = _render_srgb(renders[name])
                row[f"psnr_{name}"] = psnr(pred, gt)
                row[f"ssim_{name}"] = ssim(pred, gt)
        # appearance diversity: mean skin colour of the front render over four seeds
        skin = target == 1
        if skin.any():
            cols = []
            for seed in range(4):
                p2 = model.planes_from_onehot(onehot, model.sample_z(seed))
                img = renderer.render(lambda x: model.query(p2, x), orthographic_camera("front", 32))["rgb"][0]
                sk = torch.from_numpy(mode_pool(ids, 32) == 1)
                cols.append(img[:, sk].mean(1).numpy() if sk.any() else img.mean((1, 2)).numpy())
            row["seed_colour_std"] = float(np.std(np.stack(cols), axis=0).mean())
        rows.append(row)
        if sheet_path is not None and k < sheet_rows:
            tiles = [labels.colorize(target)]
            for name in ("front", "left", "back"):
                gt = gt_imgs.get(name)
                tiles.append(_to_uint8(gt) if gt is not None and gt.shape[0] == view_res else np.zeros((view_res, view_res, 3), np.uint8))
                tiles.append(_to_uint8(_render_srgb(renders[name])))
            sheet.append(np.concatenate([_resize_tile(t, view_res) for t in tiles], 1))
        geometry = (f"chamfer {row['chamfer_mm']:.2f} mm, F@5mm {row['fscore_5mm']:.3f}, " if "chamfer_mm" in row
                    else "")
        print(f"  m2t {k + 1}/{len(data)} {row.get('id')}: {geometry}label mIoU {row['label_miou']:.3f}", file=sys.stderr)
    if sheet_path is not None and sheet:
        _save_png(sheet_path, np.concatenate(sheet, 0))
        seed_sheet(model, renderer, data.samples[0], view_res, sheet_path.with_name(sheet_path.stem + "_seeds.png"))
    seg = segmentation_scores(conf)
    keys = ["chamfer_mm", "fscore_2mm", "fscore_5mm", "chamfer_mm_outer", "fscore_2mm_outer", "fscore_5mm_outer",
            *[f"{k}_{region}" for region in GEOMETRY_REGIONS for k in ("chamfer_mm", "fscore_2mm", "fscore_5mm")],
            "psnr_front", "ssim_front", "psnr_back", "ssim_back",
            "seed_colour_std", "label_miou"]
    summary = {f"mean_{k}": float(np.mean([r[k] for r in rows if k in r])) for k in keys if any(k in r for r in rows)}
    # SynHead's curly hair carries random 1-1.6 cm surface noise that no mask can predict: geometry by style
    geometry_rows = [r for r in rows if "chamfer_mm" in r]
    summary["geometry_by_hair_style"] = geometry_by(geometry_rows, "hair_style")
    # SynHead >= 0.2.0 turns 60 % of heads by up to 10 degrees, which the mask shows only indirectly
    summary["geometry_by_pose"] = geometry_by(geometry_rows, "pose")
    summary.update({"label_set": labels.name,
                    "label_consistency_miou": seg["miou"],
                    "label_per_class_iou": _per_class(seg["per_class_iou"], labels.names),
                    # precision < recall: the render paints a class wider than the mask has it
                    "label_per_class_precision": _per_class(seg["per_class_precision"], labels.names),
                    "label_per_class_recall": _per_class(seg["per_class_recall"], labels.names),
                    "count": len(rows), "geometry_count": len(geometry_rows), "grid": grid, "view_resolution": view_res,
                    "seconds": round(time.time() - t0, 1), "per_sample": rows})
    if real_masks is not None and human:
        summary["real_masks"] = evaluate_real_masks(model, renderer, real_masks, view_res, sheet_path)
    elif real_masks is not None:
        notes.append(f"label set {labels.name}: --real-masks (CelebAMask-HQ id maps) skipped")
    if notes:
        summary["notes"] = notes
    return summary


@torch.no_grad()
def seed_sheet(model, renderer, sample, view_res: int, path: Path, seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)) -> None:
    """One mask, several seeds: front (top row) and left (bottom row) renders, for the appearance check."""
    from backend.models.mask2triplane import ids_to_onehot
    from backend.models.renderer import orthographic_camera
    from training.datasets import read_ids

    onehot = ids_to_onehot(torch.from_numpy(read_ids(sample.path("mask"), model.labels))[None].long(),
                           model.num_classes)
    cols = []
    for seed in seeds:
        planes = model.planes_from_onehot(onehot, model.sample_z(seed))
        field = lambda x: model.query(planes, x)  # noqa: E731
        cols.append(np.concatenate([_to_uint8(_render_srgb(renderer.render(field, orthographic_camera(v, view_res))))
                                    for v in ("front", "left")], 0))
    _save_png(path, np.concatenate(cols, 1))


@torch.no_grad()
def evaluate_real_masks(model, renderer, folder: Path, view_res: int, sheet_path: Path | None) -> dict[str, Any]:
    """Label consistency on real id maps (e.g. CelebAMask-HQ): front semantic render vs the mask (seed 0)."""
    from backend.models.mask2triplane import ids_to_onehot
    from backend.models.renderer import orthographic_camera
    from training.datasets import mode_pool, read_ids
    from training.metrics import confusion_matrix, segmentation_scores

    import cv2

    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    per, sheet = [], []
    for p in sorted(folder.glob("*.png")):
        ids = read_ids(p)
        if ids.shape[0] != ids.shape[1]:
            continue
        if ids.shape[0] % view_res:
            ids = cv2.resize(ids, (512, 512), interpolation=cv2.INTER_NEAREST)
        onehot = ids_to_onehot(torch.from_numpy(ids)[None].long(), NUM_CLASSES)
        planes = model.planes_from_onehot(onehot, model.sample_z(0))
        out = {v: renderer.render(lambda x: model.query(planes, x), orthographic_camera(v, view_res)) for v in ("front", "left")}
        target = mode_pool(ids, view_res)
        c = confusion_matrix(out["front"]["semantic"][0].argmax(0).numpy(), target, NUM_CLASSES)
        conf += c
        per.append({"file": p.name, "miou": segmentation_scores(c)["miou"]})
        sheet.append(np.concatenate([colorize(target), colorize(out["front"]["semantic"][0].argmax(0).numpy().astype(np.uint8)),
                                     _to_uint8(_render_srgb(out["front"])), _to_uint8(_render_srgb(out["left"]))], 1))
    if sheet_path is not None and sheet:
        _save_png(sheet_path.with_name(sheet_path.stem + "_real_masks.png"), np.concatenate(sheet, 0))
    seg = segmentation_scores(conf)
    return {"count": len(per), "label_consistency_miou": seg["miou"], "per_file": per}


def _resize_tile(t: np.ndarray, res: int) -> np.ndarray:
    if t.shape[0] == res:
        return t
    import cv2

    return cv2.resize(t, (res, res), interpolation=cv2.INTER_NEAREST)


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image
    import io

    from backend.weights import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _per_class(values: list, names: tuple[str, ...] = LABEL_NAMES) -> dict[str, float | None]:
    """Per-class values by label name (``names``: the label set's, default the human one), rounded."""
    return {name: (None if v is None else round(v, 4)) for name, v in zip(names, values)}


@torch.no_grad()
def evaluate_sketch2mask(net, data, augmented: bool, seed: int = 1234, batch: int = 8,
                         mirror_average: bool | None = None, shaded: bool = False,
                         keep_accessories: bool = False, style: str | None = None) -> dict[str, Any]:
    """mIoU / mAP with per-class tables of a :class:`SketchToMask` on a SynHead split, overall and per style
    (``mirror_average``: None = the network's own setting, see :meth:`SketchToMask.predict_ids`).

    ``augmented``: each test sketch through the training augmentation (fixed seed; with ``keep_accessories``
    the same draws but glasses strokes never dropped, :func:`training.augment.augment_strokes`: the default
    protocol also tests sketches whose label map has glasses nobody drew); ``shaded``: each
    stored test sketch with shading marks on the skin (:func:`training.augment.face_marks`, fixed seed,
    label map unchanged): SynHead's own sketches never shade a face, people do.

    ``style``: each head re-drawn in that SynHead style (:func:`training.synhead.drawing_styles.draw_style`
    from its strokes, front render and label map; generator :func:`training.synhead.drawing_styles.style_rng`
    of the head's seed and the style name, so every run draws the same sketches) instead of its stored
    sketch; heads without strokes (or without a render, for portrait and pencil) are skipped (``skipped``),
    ``count`` is the number measured.

    Classes come from the network's label set (``net.labels``; the data must serve the same set). For a
    non-human set ``shaded``, ``keep_accessories`` and ``style`` have nothing to act on (the marks, glasses
    strokes and drawing styles are human-only, training/augment.py), so the sketches are the clean or
    augmented ones; :func:`main` does not ask for those protocols then.
    Raises ValueError for an unknown style name."""
    from training.augment import augmented_sketch, face_marks
    from training.metrics import confusion_matrix, segmentation_scores

    labels: LabelSet = getattr(net, "labels", CELEBAMASK_HQ)
    k_classes = labels.num_classes
    conf = np.zeros((k_classes, k_classes), np.int64)
    by_style: dict[str, np.ndarray] = {}
    pending: list[tuple[np.ndarray, np.ndarray, str]] = []

    def flush():
        x = torch.from_numpy(np.stack([p[0] for p in pending]))[:, None]
        pred = net.predict_ids(x, mirror_average).numpy()
        for (_, mk, style), pr in zip(pending, pred):
            c = confusion_matrix(pr, mk, k_classes)
            conf[...] += c
            by_style.setdefault(style, np.zeros_like(conf))
            by_style[style] += c
        pending.clear()

    if style is not None:
        from training.augment import redraw_in_style
        from training.synhead.drawing_styles import check_style_names, style_rng

        check_style_names([style])
    count = skipped = 0
    for i in range(len(data)):
        item = data.sketch_item(i)
        sk, mk = item["sketch"], item["mask"]
        if style is not None:
            head = item["seed"] if item.get("seed", -1) >= 0 else i
            sk = redraw_in_style(item, style_rng(head, style), [style], labels) if item.get("strokes") else None
            if sk is None:  # no strokes, or no render for a style drawn from it
                skipped += 1
                continue
            item = dict(item, style=style)
        elif augmented:
            sk, mk = augmented_sketch(item, np.random.default_rng([seed, i]), keep_accessories=keep_accessories,
                                      labels=labels)
        elif shaded:
            sk = face_marks(np.asarray(sk, np.float32), mk, np.random.default_rng([seed, i, 1]), labels=labels)
        pending.append((np.ascontiguousarray(sk, np.float32), mk, item["style"]))
        count += 1
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    seg = segmentation_scores(conf)
    return {"miou": seg["miou"], "map": seg["map"], "pixel_accuracy": seg["pixel_accuracy"],
            "per_class_iou": _per_class(seg["per_class_iou"], labels.names),
            "per_class_precision": _per_class(seg["per_class_precision"], labels.names),
            "per_class_recall": _per_class(seg["per_class_recall"], labels.names),
            "per_style_miou": {k: segmentation_scores(v)["miou"] for k, v in sorted(by_style.items())},
            "count": count, **({"style": style, "skipped": skipped} if style is not None else {})}


def style_table(results: dict[str, dict[str, Any]]) -> str:
    """Text table of :func:`evaluate_sketch2mask` results per sketch style: one column per style, rows
    mIoU, mAP, the number of heads and each class's IoU (``-`` where a class never occurs), the classes
    those of the results' ``per_class_iou`` (the label set they were measured with)."""
    names = list(results)
    width = max(8, *(len(n) + 1 for n in names))
    fmt = lambda v: f"{'-' if v is None else f'{v:.3f}':>{width}}"  # noqa: E731
    lines = ["class".ljust(12) + "".join(f"{n:>{width}}" for n in names)]
    lines.append("mIoU".ljust(12) + "".join(fmt(results[n]["miou"]) for n in names))
    lines.append("mAP".ljust(12) + "".join(fmt(results[n]["map"]) for n in names))
    lines.append("heads".ljust(12) + "".join(f"{results[n]['count']:>{width}}" for n in names))
    for c in (results[names[0]]["per_class_iou"] if names else ()):
        lines.append(c.ljust(12) + "".join(fmt(results[n]["per_class_iou"][c]) for n in names))
    return "\n".join(lines)


#: Face parts the sketch issue asks for on every real sketch's mask, as label-name alternatives.
REQUIRED_PARTS: dict[str, tuple[str, ...]] = {"hair": ("hair",), "eyes": ("l_eye", "r_eye"),
                                              "brows": ("l_brow", "r_brow"), "nose": ("nose",),
                                              "lips": ("u_lip", "l_lip")}


def mask_plausibility(ids: np.ndarray, min_pixels: int = 20, main_fraction: float = 0.95) -> dict[str, Any]:
    """Does a predicted label map ``ids (H, W)`` (ids of backend/labels.py) look like one face?

    The sketch issue's criteria, made measurable: one face region (the largest 8-connected ``skin``
    component holds at least ``main_fraction`` of the skin pixels); hair, eyes, brows, nose and lips each
    present with at least ``min_pixels`` pixels; brows above eyes above nose above lips (centroid rows);
    eyes, nose and lips centred inside the main skin component's bounding box. Returns
    ``{"ok", "failed": [reasons], "skin_main_fraction", "part_pixels": {part: count}}``.
    """
    import cv2

    from backend.labels import LABEL_IDS

    failed: list[str] = []
    skin = (ids == LABEL_IDS["skin"]).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(skin, connectivity=8)
    main_frac, box = 0.0, None
    if n > 1:
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        main_frac = float(stats[k, cv2.CC_STAT_AREA] / skin.sum())
        x, y, w, h = (int(stats[k, c]) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        box = (x, y, x + w, y + h)
    if main_frac < main_fraction:
        failed.append(f"face region: largest skin component {main_frac:.0%} of the skin (< {main_fraction:.0%})")
    centre: dict[str, tuple[float, float]] = {}
    counts: dict[str, int] = {}
    for part, names in REQUIRED_PARTS.items():
        sel = np.isin(ids, [LABEL_IDS[nm] for nm in names])
        counts[part] = int(sel.sum())
        if counts[part] < min_pixels:
            failed.append(f"{part}: missing ({counts[part]} px)")
            continue
        rows, cols = np.nonzero(sel)
        centre[part] = (float(rows.mean()), float(cols.mean()))
    order = [p for p in ("brows", "eyes", "nose", "lips") if p in centre]
    for upper, lower in zip(order, order[1:]):
        if centre[upper][0] >= centre[lower][0]:
            failed.append(f"{upper} not above {lower}")
    if box is not None:
        for part in ("eyes", "nose", "lips"):
            if part in centre:
                r, c = centre[part]
                if not (box[0] <= c <= box[2] and box[1] <= r <= box[3]):
                    failed.append(f"{part} outside the face region")
    return {"ok": not failed, "failed": failed, "skin_main_fraction": round(main_frac, 4), "part_pixels": counts}


@torch.no_grad()
def predict_real_sketches(net, folder: Path, mirror_average: bool | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(file name, framed sketch (512, 512) float32, predicted ids (512, 512) uint8)`` for every real
    sketch image in ``folder``, framed and predicted as ``s3d generate`` does it (content-box framing, then
    the landmark reframing from the first mask: :func:`backend.pipeline.predict_mask_with_refined_framing`);
    ``mirror_average`` as in :func:`evaluate_sketch2mask`."""
    from backend.align import frame_sketch as frame_first_pass
    from backend.pipeline import predict_mask_with_refined_framing
    from backend.sketch.intake import load_sketch

    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            image = load_sketch(str(p)).image
            first, transform = frame_first_pass(image, 512)
            framed, pred, _ = predict_mask_with_refined_framing(net, image, first, transform, "cpu", mirror_average)
            out.append((p.name, framed.astype(np.float32) / 255.0, pred))
    return out


def real_sketch_sheet(predictions: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> list[str]:
    """Contact sheet of :func:`predict_real_sketches`' sketches and masks; returns the file names."""
    tiles = [np.concatenate([np.repeat(_to_uint8(sk)[..., None], 3, -1), colorize(pred)], 1)[::2, ::2]
             for _, sk, pred in predictions]
    if tiles:
        _save_png(path, np.concatenate(tiles, 0))
    return [name for name, _, _ in predictions]


def _load_s2m_checkpoint(run: Path):
    from backend.models.sketch2mask import SketchToMask
    from training.loop import inference_state, load_checkpoint

    ck = load_checkpoint(run / "checkpoint.pt" if run.is_dir() else run)
    net = SketchToMask(ck["meta"]["config"])
    net.load_state_dict(inference_state(ck))
    return net.eval(), ck


def update_cards(weights_dir: Path, report: dict[str, Any], command: str) -> None:
    """Write the measured numbers into the cards' ``metrics`` (the sha256 of the weights is unchanged).

    When the card already holds metrics of *the same weights* measured on a different split (another
    SynHead version or folder), those move to ``metrics_history`` (oldest first) instead of being lost, so
    numbers from different splits are never confused. Metrics of other weights are dropped.
    """
    from backend.weights import read_card, write_card

    for name, key in (("mask2triplane_lite", "mask2triplane"), ("sketch2mask_lite", "sketch2mask")):
        if key not in report:
            continue
        card = read_card(name, weights_dir)
        r = report[key]
        if key == "mask2triplane":
            metrics = {k: v for k, v in r.items() if k not in ("per_sample", "real_masks")}
            if "real_masks" in r:
                metrics["real_masks_label_consistency_miou"] = r["real_masks"]["label_consistency_miou"]
                metrics["real_masks_count"] = r["real_masks"]["count"]
        else:
            metrics = {k: v for k, v in r.items() if k != "ablation"}
        metrics["eval_command"] = command
        metrics["eval_split"] = report.get("sketch_data", report["data"]) if key == "sketch2mask" else report["data"]
        old = card.get("metrics") or {}
        if (old.get("weights_sha256") == card.get("sha256") and "eval_split" in old
                and old["eval_split"] != metrics["eval_split"]):
            card.setdefault("metrics_history", []).append(old)
        card["metrics"] = metrics
        write_card(card, name, weights_dir)


def appearance_side_by_side(data_root: str, split: str, limit: int,
                            weights: list[tuple[str, str]]) -> dict[str, Any]:
    """:func:`training.appearance_eval.evaluate_appearance` for each ``(label, weights folder)`` on the same
    first ``limit`` heads; prints each result as it comes."""
    from backend.pipeline import load_models
    from training.appearance_eval import evaluate_appearance
    from training.datasets import SynHead

    data = SynHead(data_root, split, limit=limit)
    out = {}
    for label, folder in weights:
        t0 = time.time()
        out[label] = evaluate_appearance(load_models(folder, device="cpu", need_sketch=False), data)
        out[label]["weights"] = folder
        out[label]["seconds"] = round(time.time() - t0, 1)
        print(f"  appearance {label}: {json.dumps({k: v for k, v in out[label].items() if k != 'per_group'})}",
              file=sys.stderr)
    return out


def _data_labels(root: str) -> LabelSet:
    """The label set of the ``--data`` folder(s) (SynHead manifests; human for an MM-CelebA-HQ folder).

    Raises:
        DataError: unreadable or disagreeing manifests (:class:`training.datasets.SynHead`).
    """
    from training.datasets import SynHead, data_roots

    roots = data_roots(root)
    if len(roots) == 1 and not (roots[0] / "manifest.json").is_file():
        return CELEBAMASK_HQ
    return SynHead(roots, "all").labels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3d-eval", description="measure S3D weights on the SynHead test split")
    p.add_argument("--data", required=True, help="SynHead folder (its test split is used; see --split)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="which samples of --data to measure: test (default; the only split --update-cards "
                        "accepts), or train / all, e.g. for a folder of held-out validation heads whose "
                        "seeds are outside the test seeds")
    p.add_argument("--weights", default="weights", help="weights folder")
    p.add_argument("--out", required=True, help="report JSON path; contact sheets are written beside it")
    p.add_argument("--limit", type=int, help="evaluate the first N samples of the split (mask -> 3D)")
    p.add_argument("--geometry-limit", type=int,
                   help="measure the geometry on the first N of those heads only (about 30 s a head); label "
                        "consistency, PSNR and the rest on all of them (a few seconds a head). 0: no geometry")
    p.add_argument("--sketch-limit", type=int, help="evaluate the first N sketches of the split (default: all)")
    p.add_argument("--grid", type=int, default=256, help="density grid cells per side for the geometry metrics")
    p.add_argument("--view-resolution", type=int, default=128)
    p.add_argument("--only", choices=["mask2triplane", "sketch2mask", "appearance"],
                   help="evaluate one network only, or only the appearance figures (with --appearance N)")
    p.add_argument("--real-masks", type=Path, help="folder of real label-id PNGs (label consistency)")
    p.add_argument("--real-sketches", type=Path, help="folder of real sketches (contact sheet)")
    p.add_argument("--ablation", action="append", default=[], metavar="LABEL=RUN",
                   help="sketch2mask run folder to measure on the same split (repeatable)")
    p.add_argument("--appearance", type=int, metavar="N",
                   help="measure the appearance figures (training/appearance_eval.py) on the first N heads")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=WEIGHTS",
                   help="another weights folder whose generator gets the appearance figures too, side by side")
    p.add_argument("--update-cards", action="store_true", help="write the numbers into the model cards")
    p.add_argument("--sketch-styles", metavar="NAMES",
                   help="comma-separated SynHead sketch styles (clean, rough, pencil, portrait, hatched, marker, "
                        "strands): every evaluated head is also re-drawn in each (seeded by the head and the style) "
                        "and mIoU with the per-class IoU is reported per style (sketch2mask ``styles``)")
    p.add_argument("--threads", type=int, default=2)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.geometry_limit is not None and args.geometry_limit < 0:
        parser.error(f"--geometry-limit must be >= 0 (0: no geometry), got {args.geometry_limit}")
    if args.only == "appearance" and not args.appearance:
        parser.error("--only appearance needs --appearance N (the number of heads)")
    if args.update_cards and args.split != "test":
        # a card's metrics are test-split numbers; validation numbers go in the report only
        parser.error(f"--update-cards writes test-split metrics into the model cards; drop it or use "
                     f"--split test (got --split {args.split})")
    styles = None
    if args.sketch_styles is not None:
        from training.synhead.drawing_styles import check_style_names

        try:
            styles = check_style_names([n.strip() for n in args.sketch_styles.split(",") if n.strip()])
        except ValueError as e:
            parser.error(f"--sketch-styles: {e}")
        if args.only in ("mask2triplane", "appearance"):
            parser.error("--sketch-styles measures the sketch network; drop --only " + args.only)
    torch.set_num_threads(args.threads)
    from backend.models.loading import load_mask2triplane, load_sketch2mask
    from backend.weights import WeightsError, atomic_write_text
    from training.datasets import DataError, SynHead, open_sketch_data
    from training.loop import command_line

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        report: dict[str, Any] = {"command": command_line()}
        notes: list[str] = []
        if args.only not in ("sketch2mask", "appearance"):
            data = SynHead(args.data, args.split, limit=args.limit)
            report["data"] = data.describe()
            model, card = load_mask2triplane(args.weights, label_set=data.labels.name)
            report["mask2triplane"] = evaluate_mask2triplane(model, data, args.grid, args.view_resolution,
                                                             out.with_name(out.stem + "_mask2triplane.png"),
                                                             real_masks=args.real_masks,
                                                             geometry_limit=args.geometry_limit)
            report["mask2triplane"]["weights_sha256"] = card["sha256"]
            notes += report["mask2triplane"].get("notes", [])
        if args.appearance and _data_labels(args.data).subject != "human":
            notes.append(f"label set {_data_labels(args.data).name}: --appearance (human class groups, "
                         f"training/appearance_eval.py) skipped")
        elif args.appearance:
            report["appearance"] = appearance_side_by_side(args.data, args.split, args.appearance,
                                                           [("weights", args.weights)] + [
                                                               tuple(c.split("=", 1)) for c in args.compare])
        if args.only not in ("mask2triplane", "appearance"):
            data = open_sketch_data(args.data, args.split, limit=args.sketch_limit)
            report.setdefault("data", data.describe())
            report["sketch_data"] = data.describe()
            labels = getattr(data, "labels", CELEBAMASK_HQ)
            human = labels.subject == "human"
            net, card = load_sketch2mask(args.weights, label_set=labels.name)
            r = {"clean": evaluate_sketch2mask(net, data, False), "augmented": evaluate_sketch2mask(net, data, True)}
            if human:
                r["shaded"] = evaluate_sketch2mask(net, data, False, shaded=True)
                r["augmented_glasses_kept"] = evaluate_sketch2mask(net, data, True, keep_accessories=True)
            else:
                notes.append(f"label set {labels.name}: the shaded and glasses-kept sketch protocols (human marks "
                             f"and accessories) skipped")
            r.update({"weights_sha256": card["sha256"], "mirror_average": net.mirror_average})
            # the other inference setting on the same split: the evidence for the card's choice
            other = not net.mirror_average
            r["mirror_average_other"] = {"mirror_average": other,
                                         "clean_miou": evaluate_sketch2mask(net, data, False, mirror_average=other)["miou"],
                                         "augmented_miou": evaluate_sketch2mask(net, data, True, mirror_average=other)["miou"]}
            if human:
                r["mirror_average_other"]["shaded_miou"] = evaluate_sketch2mask(net, data, False, mirror_average=other,
                                                                                shaded=True)["miou"]
            if args.real_sketches and not human:
                notes.append(f"label set {labels.name}: --real-sketches (human face checks) skipped")
            elif args.real_sketches:
                predictions = predict_real_sketches(net, args.real_sketches)
                r["real_sketches_sheet"] = real_sketch_sheet(predictions, out.with_name(out.stem + "_real_sketches.png"))
                r["real_sketches_checks"] = {name: mask_plausibility(pred) for name, _, pred in predictions}
                r["mirror_average_other"]["real_sketches_pass"] = sum(
                    mask_plausibility(pred)["ok"] for _, _, pred in predict_real_sketches(net, args.real_sketches, other))
                bad = {k: v["failed"] for k, v in r["real_sketches_checks"].items() if not v["ok"]}
                print(f"  real sketches: {len(r['real_sketches_checks']) - len(bad)} of {len(r['real_sketches_checks'])} "
                      f"masks pass the face checks" + (f"; failing: {bad}" if bad else ""), file=sys.stderr)
            ablation = {}
            for spec in args.ablation:
                label, _, run = spec.partition("=")
                anet, ck = _load_s2m_checkpoint(Path(run))
                ablation[label] = {"run": run, "recipe": ck["meta"]["recipe"], "steps": int(ck["step"]),
                                   "minutes": round(ck["elapsed_s"] / 60, 1),
                                   "clean_miou": evaluate_sketch2mask(anet, data, False)["miou"],
                                   "augmented_miou": evaluate_sketch2mask(anet, data, True)["miou"]}
                print(f"  ablation {label}: {ablation[label]}", file=sys.stderr)
            if ablation:
                r["ablation"] = ablation
            if styles and not human:
                notes.append(f"label set {labels.name}: --sketch-styles (SynHead's human drawing styles) skipped")
            elif styles:
                r["styles"] = {name: evaluate_sketch2mask(net, data, False, style=name) for name in styles}
                print("  sketch2mask per sketch style (IoU):\n" + style_table(r["styles"]), file=sys.stderr)
            report["sketch2mask"] = r
        if notes:
            report["notes"] = notes
            for line in notes:
                print(f"  note: {line}", file=sys.stderr)
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
        if args.update_cards:
            update_cards(Path(args.weights), report, report["command"])
        brief = {"mask2triplane": {k: v for k, v in report.get("mask2triplane", {}).items() if k.startswith(("mean_", "label_consistency"))},
                 "sketch2mask": {k: {"miou": v["miou"], "map": v["map"]} for k, v in report.get("sketch2mask", {}).items()
                                 if isinstance(v, dict) and "miou" in v}}
        if styles and "styles" in report.get("sketch2mask", {}):
            brief["sketch2mask_styles"] = {k: v["miou"] for k, v in report["sketch2mask"]["styles"].items()}
        print(json.dumps(brief, indent=2))
        return 0
    except (DataError, WeightsError, FileNotFoundError) as e:
        print(f"s3d-eval: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
