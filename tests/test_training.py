"""training/: data readers, losses on known values, metrics, augmentation, training steps, export, eval.

The data are built here: a tiny SynHead-layout folder of ellipsoid "heads" (skin below, hair on top,
a nose disc in the mask), written exactly in the manifest format of docs/contracts.md section 3.
"""
from __future__ import annotations

import json
from dataclasses import replace
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from backend.coords import BOX_SIZE_M
from backend.models.renderer import orthographic_camera

torch.set_num_threads(1)

SKIN, NOSE, HAIR = 1, 2, 13


def _head_params(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"radii": rng.uniform(0.45, 0.7, size=3), "skin": rng.uniform(0.4, 0.9, size=3),
            "hair": rng.uniform(0.05, 0.4, size=3)}


def _label_of(z: np.ndarray, c: float) -> np.ndarray:
    return np.where(z > 0.4 * c, HAIR, SKIN)


def write_fake_synhead(root: Path, seeds: list[int], res: int = 64, view_res: int = 32, points: int = 3000) -> Path:
    """Write a SynHead-layout folder of ellipsoid heads; returns ``root``. Seeds < 3 are the test split."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for seed in seeds:
        p = _head_params(seed)
        a, b, c = p["radii"]
        sid = f"s{seed:06d}"
        d = root / sid
        d.mkdir(exist_ok=True)
        col = (np.arange(res) + 0.5) / res * 2 - 1
        x, z = np.meshgrid(col, -col)  # front view: right = +x, up = +z
        inside = (x / a) ** 2 + (z / c) ** 2 < 1
        mask = np.where(inside, _label_of(z, c), 0).astype(np.uint8)
        mask[inside & (x ** 2 + (z + 0.05) ** 2 < 0.01)] = NOSE
        colours = {SKIN: p["skin"], HAIR: p["hair"], NOSE: p["skin"] * 0.9}
        rgb = np.ones((res, res, 3))
        for k, v in colours.items():
            rgb[mask == k] = v
        Image.fromarray(mask).save(d / "mask.png")
        Image.fromarray((rgb * 255).astype(np.uint8)).save(d / "rgb.png")
        edges = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        Image.fromarray(np.where(edges, 0, 255).astype(np.uint8)).save(d / "sketch.png")
        t = np.linspace(0, 2 * math.pi, 40)
        outline = np.stack([(a * np.cos(t) + 1) / 2, (1 - c * np.sin(t)) / 2], -1)
        hairline = np.stack([(np.linspace(-a, a, 10) * 0.9 + 1) / 2, np.full(10, (1 - 0.4 * c) / 2)], -1)
        (d / "strokes.json").write_text(json.dumps({"version": 1, "frame": "normalized", "strokes": [
            {"points": outline.tolist(), "width": 0.01, "group": "face_outline"},
            {"points": hairline.tolist(), "width": 0.01, "group": "hair"}]}))
        rng = np.random.default_rng(seed + 1000)
        uni = rng.uniform(-1, 1, size=(points // 3, 3))
        u = rng.normal(size=(points - len(uni), 3))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        surf = u * np.array([a, b, c]) * (1 + rng.normal(0, 0.03, size=(len(u), 1)))
        xyz = np.concatenate([uni, surf])
        occ = ((xyz / np.array([a, b, c])) ** 2).sum(1) < 1
        lab = _label_of(xyz[:, 2], c)
        prgb = np.stack([colours[int(k)] for k in lab])
        kind = np.concatenate([np.zeros(len(uni)), np.ones(len(surf))])
        np.savez(d / "points.npz", xyz=xyz.astype(np.float16), occ=occ.astype(np.uint8), label=lab.astype(np.uint8),
                 rgb=(prgb * 255).astype(np.uint8), kind=kind.astype(np.uint8))
        views = []
        for name in ("front", "back", "left", "right"):
            cam = orthographic_camera(name, view_res)
            vc = (np.arange(view_res) + 0.5) / view_res * 2 - 1
            uu, vv = np.meshgrid(vc, -vc)
            half_w = {"front": a, "back": a, "left": b, "right": b}[name]
            depth_r = {"front": b, "back": b, "left": a, "right": a}[name]
            q = (uu / half_w) ** 2 + (vv / c) ** 2
            alpha = (q < 1).astype(np.float32)
            depth = np.where(q < 1, BOX_SIZE_M / 2 - depth_r * np.sqrt(np.clip(1 - q, 0, None)) * BOX_SIZE_M / 2, np.inf)
            vlab = np.where(q < 1, _label_of(vv, c), 0).astype(np.uint8)
            vrgb = np.ones((view_res, view_res, 3))
            for k, v in colours.items():
                vrgb[vlab == k] = v
            Image.fromarray((vrgb * 255).astype(np.uint8)).save(d / f"{name}_rgb.png")
            Image.fromarray(vlab).save(d / f"{name}_label.png")
            Image.fromarray((alpha * 255).astype(np.uint8)).save(d / f"{name}_alpha.png")
            np.save(d / f"{name}_depth.npy", depth.astype(np.float16))
            views.append({"name": name, "rgb": f"{sid}/{name}_rgb.png", "label": f"{sid}/{name}_label.png",
                          "alpha": f"{sid}/{name}_alpha.png", "depth": f"{sid}/{name}_depth.npy", "camera": cam})
        import trimesh

        from backend.export import ply_bytes

        mesh = trimesh.creation.icosphere(subdivisions=3)
        mesh.vertices = mesh.vertices * np.array([a, b, c]) * BOX_SIZE_M / 2
        # SynHead's layout: a labelled PLY (hair on the upper third, skin below) for the face/hair metrics
        top = mesh.vertices[:, 2] > c * BOX_SIZE_M / 6
        (d / "mesh.ply").write_bytes(ply_bytes(mesh.vertices, mesh.faces, np.full((len(mesh.vertices), 3), 0.5),
                                               np.where(top, 13, 1).astype(np.uint8)))
        samples.append({"id": sid, "seed": seed, "split": "test" if seed < 3 else "train",
                        "sketch": f"{sid}/sketch.png", "sketch_style": "clean", "strokes": f"{sid}/strokes.json",
                        "mask": f"{sid}/mask.png", "rgb": f"{sid}/rgb.png", "views": views,
                        "points": f"{sid}/points.npz", "mesh": f"{sid}/mesh.ply",
                        "camera": {"type": "orthographic", "view": "front", "box_size_m": BOX_SIZE_M}})
    (root / "manifest.json").write_text(json.dumps({
        "generator": "synhead", "version": "test", "box_size_m": BOX_SIZE_M, "label_set": "celebamask-hq-19",
        "input_resolution": res, "view_resolution": view_res, "test_seeds": [0, 2], "samples": samples}))
    return root


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    return write_fake_synhead(tmp_path_factory.mktemp("synhead"), list(range(8)))


def _tiny_m2t_override():
    return {"mask_resolution": 32, "encoder_channels": [8, 16, 16], "pixel_feature_channels": 8, "z_dim": 8,
            "w_dim": 16, "num_ws_geometry": 2, "num_ws_appearance": 2, "plane_resolution": 32, "plane_channels": 8,
            "synthesis_channels": 8, "depth_code_channels": 4, "decoder_hidden": 16, "appearance_resolution": 16,
            "appearance_channels": [8, 8], "render_samples": 8, "render_importance_samples": 8}


# ---- data ------------------------------------------------------------------------------------------

def test_train_reader_never_returns_test_seeds(fake_data):
    from training.datasets import DataError, SynHead, assert_no_test_samples

    train = SynHead(fake_data, "train")
    test = SynHead(fake_data, "test")
    assert sorted(s.seed for s in train.samples) == [3, 4, 5, 6, 7]
    assert sorted(s.seed for s in test.samples) == [0, 1, 2]
    train.samples.append(test.samples[0])
    with pytest.raises(DataError, match="test-split"):
        assert_no_test_samples(train)
    with pytest.raises(DataError, match="manifest.json"):
        SynHead(fake_data / "nowhere")


def test_several_data_folders_read_as_one_and_must_agree(fake_data, tmp_path):
    """Heads generated later with other seeds join a training set: ``A:B`` reads both folders' samples in
    order, the card's description names both; a folder sharing a seed, or one whose 3D points' occupancy
    was made differently, is refused with the reason."""
    import json
    import os

    from training.datasets import DataError, SynHead, open_sketch_data

    more = write_fake_synhead(tmp_path / "more", [8, 9])
    joined = f"{fake_data}{os.pathsep}{more}"
    both = SynHead(joined, "train")
    assert [s.seed for s in both.samples] == [3, 4, 5, 6, 7, 8, 9]
    assert both.samples[-1].root == more and both.samples[-1].path("mask").is_file()
    desc = both.describe()
    assert desc["count"] == 7 and desc["roots"] == {str(fake_data): 5, str(more): 2}
    assert [s.seed for s in SynHead(joined, "test").samples] == [0, 1, 2]
    assert len(open_sketch_data(joined, "train")) == 7
    again = write_fake_synhead(tmp_path / "again", [9, 10])
    with pytest.raises(DataError, match="seed 9 is in both"):
        SynHead([fake_data, more, again], "train")
    other = write_fake_synhead(tmp_path / "other", [11])
    man = json.loads((other / "manifest.json").read_text())
    man["points_occupancy"] = "cavities-filled" if man.get("points_occupancy", "parts") == "parts" else "parts"
    (other / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(DataError, match="disagree on points_occupancy"):
        SynHead([fake_data, other], "train")


def test_mask2triplane_item_shapes_and_ray_targets(fake_data):
    from training.datasets import SynHead, onehot_area, mode_pool

    data = SynHead(fake_data, "train")
    item = data.mask2triplane_item(0, np.random.default_rng(0), 32, 16, 500, rays_per_view=64, num_ray_views=2)
    assert item["mask"].shape == (19, 32, 32) and np.allclose(item["mask"].sum(0), 1)
    assert item["xyz"].shape == (500, 3) and item["occ"].shape == (500,)
    assert abs(item["surface"].mean() - 0.7) < 0.05
    assert item["ray_o"].shape == (128, 3) and item["ray_rgb"].shape == (128, 3)
    covered = item["ray_alpha"] > 0.5
    assert covered.any() and (item["ray_depth"][covered] > 0).all() and (item["ray_depth"][~covered] == 0).all()
    # focus rays: a quarter of each view's rays land on the pixels of the chosen (rare) labels
    labels, counts = np.unique(item["ray_label"][covered], return_counts=True)
    rare = int(labels[np.argmin(counts)])
    plain = data.mask2triplane_item(0, np.random.default_rng(1), 32, 16, 100, rays_per_view=64, num_ray_views=2)
    focused = data.mask2triplane_item(0, np.random.default_rng(1), 32, 16, 100, rays_per_view=64, num_ray_views=2,
                                      focus_labels=(rare,), focus_fraction=0.25)
    assert focused["ray_o"].shape == (128, 3)
    assert (focused["ray_label"] == rare).mean() >= 0.25 > (plain["ray_label"] == rare).mean()
    ids = np.array([[0, 0, 1, 1], [0, 2, 1, 1], [3, 3, 1, 1], [3, 3, 1, 0]], np.uint8)
    frac = onehot_area(ids, 2)
    assert frac[0, 0, 0] == 0.75 and frac[1, 0, 1] == 1.0 and frac[3, 1, 0] == 1.0
    assert mode_pool(ids, 2).tolist() == [[0, 1], [3, 1]]


def test_depth_interval_targets_match_the_ellipsoid(fake_data):
    """Front/back depth maps -> (centre, half-thickness) per front pixel: for the fake ellipsoid heads the
    interval along Y is [-b sqrt(1-q), +b sqrt(1-q)] in normalised units, and off the silhouette h < 0."""
    from training.datasets import SynHead

    data = SynHead(fake_data, "train")
    interval, fg = data.depth_interval(0)
    seed = data.samples[0].entry["seed"]
    a, b, c = _head_params(seed)["radii"]
    vc = (np.arange(32) + 0.5) / 32 * 2 - 1
    uu, vv = np.meshgrid(vc, -vc)
    q = (uu / a) ** 2 + (vv / c) ** 2
    assert interval.shape == (2, 32, 32) and fg.shape == (32, 32)
    assert np.array_equal(fg > 0, q < 1)
    inside = q < 1
    # float16 depth maps: about 1e-3 normalised units (0.2 mm) of rounding
    assert np.allclose(interval[1][inside], b * np.sqrt(1 - q[inside]), atol=3e-3)
    assert np.allclose(interval[0][inside], 0.0, atol=3e-3)
    assert (interval[1][~inside] < 0).all()
    item = data.mask2triplane_item(0, np.random.default_rng(0), 32, 16, 300, with_interval=True)
    assert np.array_equal(item["interval"], interval) and "on_surface" in item


# ---- losses and metrics on known values ------------------------------------------------------------

def test_interval_point_and_class_weight_losses_known_values():
    from training.losses import SMALL_CLASSES, depth_interval_loss, point_losses, small_class_weights

    target = torch.zeros(1, 2, 4, 4)
    target[:, 1] = 0.3
    fg = torch.zeros(1, 4, 4)
    fg[:, :2] = 1.0
    pred = target.clone()
    pred[:, 0] += 0.1  # centre off by 0.1, counted on the silhouette only
    pred[:, 1, 2:] += 0.2  # half-thickness off by 0.2 on half of the pixels, counted everywhere
    assert float(depth_interval_loss(pred, target, fg)) == pytest.approx(0.1 + 0.1)
    # a finer prediction is area-averaged to the target's size
    assert float(depth_interval_loss(torch.nn.functional.interpolate(pred, scale_factor=2.0), target, fg)) == \
        pytest.approx(0.2)

    w = small_class_weights(19, 3.0)
    assert small_class_weights(19, 1.0) is None
    assert w is not None and float(w.sum()) == 19 + 2 * len(SMALL_CLASSES) and float(w[4]) == 3.0 and float(w[1]) == 1.0

    # occupancy weight 0 removes a point from the BCE (on-surface points have no inside/outside)
    logit = torch.tensor([[[5.0], [5.0]]])
    out = {"occupancy_logit": logit, "rgb": torch.zeros(1, 2, 3), "semantic": torch.zeros(1, 2, 19)}
    occ = torch.tensor([[1.0, 0.0]])
    args = (occ, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 3), torch.ones(1, 2))
    both = float(point_losses(out, *args)["occ"])
    first = float(point_losses(out, *args, occ_weight=torch.tensor([[1.0, 0.0]]))["occ"])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert first == pytest.approx(float(bce(torch.tensor(5.0), torch.tensor(1.0))))
    assert both == pytest.approx((first + float(bce(torch.tensor(5.0), torch.tensor(0.0)))) / 2)



def test_losses_known_values():
    from training.losses import kl_to_standard_normal, sketch_to_mask_loss, soft_dice_loss

    assert float(kl_to_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4))) == pytest.approx(0.0)
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension
    assert float(kl_to_standard_normal(torch.ones(1, 4), torch.zeros(1, 4))) == pytest.approx(2.0)
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert float(soft_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    # uniform prediction over 2 classes: dice_k = (2 * 0.5 n_k + 1) / (n/2*... ) computed by hand
    uniform = torch.zeros(1, 2, 2, 2)
    d0 = (2 * 0.5 * 1 + 1) / (2 + 1 + 1)   # class 0: sum p = 2, |T| = 1
    d1 = (2 * 0.5 * 3 + 1) / (2 + 3 + 1)   # class 1: sum p = 2, |T| = 3
    assert float(soft_dice_loss(uniform, target)) == pytest.approx(1 - (d0 + d1) / 2, abs=1e-6)
    style, ws = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    out = sketch_to_mask_loss(uniform, style, target, ws)
    assert float(out["ce"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(out["sv"]) == pytest.approx(1.0)
    assert float(out["loss"]) == pytest.approx(math.log(2) + float(out["dice"]) + 1.0, abs=1e-6)
    assert float(sketch_to_mask_loss(uniform, style, target, None)["sv"]) == 0.0


def test_metrics_known_values():
    from training.metrics import chamfer_fscore, confusion_matrix, psnr, segmentation_scores, ssim

    gt = np.random.default_rng(0).uniform(-0.1, 0.1, size=(2000, 3))
    same = chamfer_fscore(gt, gt)
    assert same["chamfer_mm"] == 0.0 and same["fscore_5mm"] == 1.0
    shifted = chamfer_fscore(gt + np.array([0.003, 0, 0]), gt)  # 3 mm shift: within 5 mm, not within 2 mm
    assert shifted["fscore_5mm"] == 1.0 and shifted["fscore_2mm"] < 0.5 and 0 < shifted["chamfer_mm"] <= 3.0
    assert chamfer_fscore(np.zeros((0, 3)), gt)["fscore_5mm"] == 0.0
    pred = np.array([0, 1, 1, 2])
    true = np.array([0, 1, 2, 2])
    s = segmentation_scores(confusion_matrix(pred, true, 4))
    assert s["per_class_iou"][:3] == [1.0, 0.5, 0.5] and s["per_class_iou"][3] is None
    assert s["miou"] == pytest.approx(2 / 3) and s["map"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert s["per_class_precision"][:3] == [1.0, 0.5, 1.0] and s["per_class_recall"][:3] == [1.0, 1.0, 0.5]
    a = np.random.default_rng(1).uniform(size=(32, 32))
    assert psnr(a, a) == float("inf") and psnr(np.zeros(4), np.full(4, 0.1)) == pytest.approx(20.0)
    assert ssim(a, a) == pytest.approx(1.0) and ssim(a, 1 - a) < 0.0


# ---- augmentation ----------------------------------------------------------------------------------

def test_augmentation_is_deterministic_under_a_seed_and_changes_the_sketch(fake_data):
    from training.augment import augment_strokes, augmented_sketch, s3d_morphology
    from training.datasets import SynHead

    item = SynHead(fake_data, "train").sketch_item(0)
    a = augmented_sketch(item, np.random.default_rng(5))
    b = augmented_sketch(item, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    outs = [augmented_sketch(item, np.random.default_rng(s))[0] for s in range(6)]
    assert any(not np.array_equal(o, item["sketch"]) for o in outs)
    assert all(o.shape == item["sketch"].shape for o in outs)
    # S3D morphology: erosion (k7) of dark-on-white thickens the ink, dilation (k3) thins it
    sk = np.ones((32, 32), np.float32)
    sk[16, 4:28] = 0.0
    inks = []
    for s in range(40):
        inks.append(float((s3d_morphology(sk, np.random.default_rng(s)) < 0.5).sum()))
    assert {24.0, 0.0} <= set(inks) and max(inks) > 24
    # whole groups are dropped, never invented
    doc = item["strokes"]
    groups = {s["group"] for s in doc["strokes"]}
    for s in range(20):
        g = {st["group"] for st in augment_strokes(doc, np.random.default_rng(s), group_drop=1.0)["strokes"]}
        assert g <= groups and "hair" not in g
    # the framing range is the caller's: a fixed half scale shrinks the face to a quarter of its area
    fg = float((item["mask"] > 0).sum())
    _, small = augmented_sketch(item, np.random.default_rng(3), stroke_prob=0.0, framing_prob=1.0,
                                scale_range=(0.5, 0.5), max_shift=0.0)
    assert 0.2 < (small > 0).sum() / fg < 0.3


def test_mirror_swaps_left_and_right_labels_and_is_an_involution(fake_data):
    from backend.labels import LABEL_IDS, MIRROR_IDS, mirror_mask
    from training.augment import augmented_sketch, mirror
    from training.datasets import SynHead

    assert all(MIRROR_IDS[MIRROR_IDS[i]] == i for i in range(len(MIRROR_IDS)))
    mask = np.zeros((8, 10), np.uint8)
    mask[2, 1] = LABEL_IDS["l_eye"]
    mask[2, 8] = LABEL_IDS["r_brow"]
    mask[5, 3] = LABEL_IDS["nose"]
    m = mirror_mask(mask)
    assert m[2, 8] == LABEL_IDS["r_eye"] and m[2, 1] == LABEL_IDS["l_brow"] and m[5, 6] == LABEL_IDS["nose"]
    assert np.array_equal(mirror_mask(m), mask)
    with pytest.raises(ValueError, match="outside the label set"):
        mirror_mask(np.full((2, 2), 19, np.uint8))
    sk = np.linspace(0, 1, 80, dtype=np.float32).reshape(8, 10)
    s2, m2 = mirror(sk, mask)
    assert np.array_equal(s2, sk[:, ::-1]) and np.array_equal(mirror(s2, m2)[0], sk)
    # in the full augmentation: mirror_prob 1 gives the mirror image of what mirror_prob 0 gives
    item = SynHead(fake_data, "train").sketch_item(0)
    plain = augmented_sketch(item, np.random.default_rng(7))
    flipped = augmented_sketch(item, np.random.default_rng(7), mirror_prob=1.0)
    assert np.array_equal(flipped[0], plain[0][:, ::-1]) and np.array_equal(flipped[1], mirror_mask(plain[1]))


def test_close_eyes_keeps_one_arc_per_eye():
    from training.augment import augment_strokes, close_eyes

    lid = {"group": "lid", "points": [[0.40, 0.50], [0.45, 0.47], [0.50, 0.50]], "width": 0.004}
    doc = {"version": 1, "frame": "normalized", "width": 1, "height": 1, "strokes": [
        lid, {"group": "eye", "points": [[0.40, 0.50], [0.45, 0.52], [0.50, 0.50]]},
        {"group": "iris", "points": [[0.45, 0.50]], "width": 0.01},
        {"group": "nose", "points": [[0.45, 0.6], [0.46, 0.65]]}]}
    outs = [close_eyes(doc["strokes"], np.random.default_rng(s)) for s in range(12)]
    assert all([st["group"] for st in o] == ["lid", "nose"] for o in outs)
    assert close_eyes(doc["strokes"], np.random.default_rng(3)) == outs[3]  # seeded
    mids = {round(o[0]["points"][1][1], 6) for o in outs}
    assert mids == {0.47, 0.53}  # kept as drawn, or reflected across its chord (ends stay put)
    assert all(o[0]["points"][0] == [0.40, 0.50] and np.allclose(o[0]["points"][-1], [0.50, 0.50]) for o in outs)
    assert doc["strokes"][0]["points"][1] == [0.45, 0.47]  # the input is not changed
    groups = {st["group"] for st in augment_strokes(doc, np.random.default_rng(0), 0.0, 0.0, closed_eyes=1.0)["strokes"]}
    assert groups == {"lid", "nose"}
    # empty eyes: only the irises go, the outlines stay
    groups = [st["group"] for st in augment_strokes(doc, np.random.default_rng(0), 0.0, 0.0, empty_eyes=1.0)["strokes"]]
    assert groups == ["lid", "eye", "nose"]
    assert "iris" in {st["group"] for st in augment_strokes(doc, np.random.default_rng(0), 0.0, 0.0)["strokes"]}


def test_face_marks_shade_only_the_skin_and_are_seeded():
    from backend.labels import LABEL_IDS
    from training.augment import augmented_sketch, face_marks

    mask = np.zeros((256, 256), np.uint8)
    mask[40:200, 60:200] = LABEL_IDS["hair"]
    mask[70:190, 80:180] = LABEL_IDS["skin"]
    mask[120:135, 115:145] = LABEL_IDS["nose"]
    sketch = np.ones((256, 256), np.float32)
    a = face_marks(sketch, mask, np.random.default_rng(4))
    assert np.array_equal(a, face_marks(sketch, mask, np.random.default_rng(4)))
    inked = a < 0.9
    assert inked.sum() > 20  # something was drawn ...
    grown = cv2.dilate((mask == LABEL_IDS["skin"]).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (inked & ~grown).any()  # ... only on (the rim of) the skin, never on hair or background
    nose_inside = cv2.erode((mask == LABEL_IDS["nose"]).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not (inked & nose_inside).any()
    # marks are placed away from the eyes: with a wide eye band the upper face stays clean
    eyes = mask.copy()
    eyes[95:105, 90:170] = LABEL_IDS["l_eye"]
    near = np.zeros_like(inked)
    near[90:110, 85:175] = True  # within 3 % (8 px) of the eye band
    marked = [face_marks(sketch, eyes, np.random.default_rng(s)) < 0.9 for s in range(6)]
    assert all(m.any() for m in marked) and not any(m[near].any() for m in marked)
    assert a.dtype == np.float32 and (a <= sketch).all()
    # no skin, nothing to shade; marks_prob = 0 keeps the earlier recipes' random stream
    hair_only = np.where(mask > 0, LABEL_IDS["hair"], 0).astype(np.uint8)
    assert np.array_equal(face_marks(sketch, hair_only, np.random.default_rng(4)), sketch)
    item = {"sketch": sketch, "mask": mask}
    plain = augmented_sketch(item, np.random.default_rng(2), framing_prob=0.0)
    marked = augmented_sketch(item, np.random.default_rng(2), framing_prob=0.0, marks_prob=1.0)
    assert np.array_equal(plain[1], marked[1]) and (marked[0] < 0.9).sum() > (plain[0] < 0.9).sum()


# ---- training, export, evaluation ------------------------------------------------------------------

def _args(**kw):
    """A tiny test run (:class:`training.run_spec.TrainRun`) with ``kw`` set."""
    from training.run_spec import TrainRun

    base = dict(data="", out="", checkpoint_minutes=10.0, log_every=1)
    base.update(kw)
    return TrainRun(**base)


def test_train_run_from_the_parsed_command_line():
    """``s3d-train``'s arguments become the trainers' run description: every run field the subcommand has,
    the other network's flags at their defaults, the process settings (device, threads) left out."""
    from dataclasses import asdict

    from training.run_spec import TrainRun
    from training.train_cli import build_parser

    ns = build_parser().parse_args(["mask2triplane", "--data", "d", "--out", "o", "--steps", "7", "--seed", "3",
                                    "--no-render-loss", "--recipe-override", '{"lr": 0.1}', "--device", "cpu"])
    run = TrainRun.from_namespace(ns)
    assert asdict(run) == {**asdict(TrainRun(data="d", out="o")), "steps": 7, "seed": 3, "no_render_loss": True,
                           "recipe_override": {"lr": 0.1}}
    ns = build_parser().parse_args(["sketch2mask", "--data", "d", "--out", "o", "--minutes", "2.5", "--no-sv",
                                    "--mask-encoder", "w", "--init-from", "i", "--workers", "2", "--limit", "4"])
    run = TrainRun.from_namespace(ns)
    assert (run.minutes, run.no_sv, run.no_aug, run.mask_encoder, run.init_from, run.workers, run.limit) == (
        2.5, True, False, "w", "i", 2, 4)
    assert not hasattr(run, "device") and not hasattr(run, "threads")


def _loss_at(loss_module, batch):
    loss_module.eval()
    with torch.no_grad():
        v = float(loss_module(batch)["loss"])
    loss_module.train()
    return v


def test_run_loop_keeps_a_moving_average_of_weights_and_buffers_and_resumes_it(tmp_path):
    from training.loop import LoopLimits, RunContext, inference_state, load_checkpoint, run_loop
    from training.prefetch import step_rng

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
            self.seen: list[dict[str, torch.Tensor]] = []  # the weights each step starts from

        def forward(self, batch):
            self.seen.append({k: v.detach().clone() for k, v in self.net.state_dict().items() if v.is_floating_point()})
            return {"loss": ((self.net(batch["x"]) - batch["y"]) ** 2).mean()}

    torch.manual_seed(0)
    toy = Toy()
    make = lambda step: {"x": torch.as_tensor(step_rng(0, step, 0).normal(size=(8, 3)), dtype=torch.float32),
                         "y": torch.as_tensor(step_rng(0, step, 0).normal(size=(8, 1)), dtype=torch.float32)}
    ctx, decay = RunContext(torch.device("cpu"), "test"), 0.6
    opt = torch.optim.SGD(toy.net.parameters(), lr=0.1)

    def run(steps, resume):
        run_loop(ctx, toy, opt, make, tmp_path, LoopLimits(steps=steps, log_every=1), dict, resume, toy.net,
                 "toy", ema_decay=decay)
        return load_checkpoint(tmp_path / "checkpoint.pt")

    ck = run(3, False)
    final = {k: v for k, v in ck["model"].items() if v.is_floating_point()}
    expected = dict(toy.seen[0])
    for after_step in toy.seen[1:] + [final]:
        expected = {k: decay * expected[k] + (1 - decay) * after_step[k] for k in expected}
    ema = inference_state(ck)
    assert ema is ck["model_ema"] and ck["ema_decay"] == decay
    for k in expected:  # parameters and BatchNorm running statistics alike
        torch.testing.assert_close(ema[k], expected[k])
    assert not torch.allclose(ema["0.weight"], final["0.weight"])

    toy.seen.clear()  # resuming continues the same average instead of restarting it from the raw weights
    ck2 = run(5, True)
    final2 = {k: v for k, v in ck2["model"].items() if v.is_floating_point()}
    for after_step in toy.seen[1:] + [final2]:
        expected = {k: decay * expected[k] + (1 - decay) * after_step[k] for k in expected}
    for k in expected:
        torch.testing.assert_close(ck2["model_ema"][k], expected[k])
    with pytest.raises(ValueError, match="ema_decay"):
        run_loop(ctx, toy, opt, make, tmp_path, LoopLimits(steps=1), dict, False, toy.net, "toy", ema_decay=1.0)
    assert inference_state({"model": final}) is final  # runs without an average stand for their raw weights


def test_mask2triplane_steps_lower_the_loss_and_resume(fake_data, tmp_path):
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.datasets import SynHead
    from training.loop import RunContext
    from training.train_mask2triplane import Mask2TriplaneLoss, Mask2TriplaneRecipe, make_batch_fn, train

    cfg = get_config("lite", "mask2triplane")
    cfg.update(_tiny_m2t_override())
    recipe = Mask2TriplaneRecipe(batch=2, points=512, rays_per_view=32, render_samples=8, render_importance=4, lr=3e-3)
    torch.manual_seed(0)
    model = Mask2Triplane(cfg)
    lm = Mask2TriplaneLoss(model, recipe)
    make = make_batch_fn(SynHead(fake_data, "train"), cfg, recipe, torch.device("cpu"))
    fixed = make(np.random.default_rng(123))
    before = _loss_at(lm, fixed)
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    for step in range(25):
        losses = lm(make(np.random.default_rng(step)))
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
    assert {"occ", "point_rgb", "point_sem", "kl", "ray_rgb", "ray_alpha", "ray_depth", "ray_sem"} <= set(losses)
    assert _loss_at(lm, fixed) < 0.8 * before

    ctx = RunContext(torch.device("cpu"), "test")
    out = tmp_path / "run"
    args = _args(data=str(fake_data), out=str(out), steps=3, config_override=_tiny_m2t_override(),
                 recipe_override={"batch": 2, "points": 256, "rays_per_view": 16, "render_samples": 4, "render_importance": 4})
    s1 = train(args, ctx)
    assert s1["steps"] == 3 and (out / "checkpoint.pt").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    s2 = train(replace(args, steps=5, resume=True), ctx)
    assert s2["steps"] == 5
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 5 and ck["meta"]["data"]["split"] == "train" and ck["meta"]["config"]["plane_resolution"] == 32
    assert any("interval" in json.loads(line) for line in (out / "log.jsonl").read_text().splitlines())

    # warm start: a new run begins with the earlier run's parameters and records where they came from
    from training.loop import warm_start

    fresh = Mask2Triplane(ck["meta"]["config"])
    info = warm_start(fresh, out / "checkpoint.pt", "mask2triplane")
    assert info["steps"] == 5 and all(torch.equal(fresh.state_dict()[k], v) for k, v in ck["model"].items())
    with pytest.raises(RuntimeError):
        warm_start(Mask2Triplane({**ck["meta"]["config"], "plane_channels": 6}), out / "checkpoint.pt", "mask2triplane")
    with pytest.raises(FileNotFoundError):
        warm_start(fresh, tmp_path / "nowhere", "mask2triplane")


def test_pack_sketches_makes_a_sketch_only_synhead_folder_without_test_seeds(fake_data, tmp_path):
    import tarfile

    from training.data_cli import main as data_main
    from training.datasets import DataError, SynHead
    from training.pack import pack_sketches

    out = tmp_path / "sk.tar.gz"
    assert data_main(["pack-sketches", "--data", str(fake_data), "--out", str(out)]) == 0
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sk.tar.gz", "unpacked"]  # no temporary file left
    packed, source = SynHead(tmp_path / "unpacked" / "sk", "all"), SynHead(fake_data, "train")
    assert [s.seed for s in packed.samples] == [s.seed for s in source.samples] == [3, 4, 5, 6, 7]
    assert {p.name for p in (tmp_path / "unpacked" / "sk" / "s000004").iterdir()} == {"sketch.png", "strokes.json",
                                                                                      "mask.png"}
    for i in (0, 4):
        a, b = packed.sketch_item(i), source.sketch_item(i)
        np.testing.assert_array_equal(a["sketch"], b["sketch"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
        assert a["strokes"] == b["strokes"] and a["style"] == b["style"]
    assert packed.test_seeds == source.test_seeds and packed.manifest["packed"]["count"] == 5

    assert pack_sketches(fake_data, tmp_path / "two.tar.gz", limit=2)["count"] == 2
    assert pack_sketches(fake_data, tmp_path / "small.tar.gz", max_mib=1e-6)["count"] == 1  # stops at the budget
    with pytest.raises(ValueError, match="max-mib"):
        pack_sketches(fake_data, tmp_path / "none.tar.gz", max_mib=0)
    with pytest.raises(DataError, match="no manifest|not found"):
        pack_sketches(tmp_path / "nowhere", tmp_path / "none.tar.gz")
    with pytest.raises(ValueError, match=".tar.gz"):
        pack_sketches(fake_data, tmp_path / "sk.zip")
    broken = tmp_path / "broken"
    shutil.copytree(fake_data, broken)
    (broken / "s000006" / "mask.png").unlink()
    with pytest.raises(DataError, match="s000006/mask.png is missing"):  # a half-written archive is never left
        pack_sketches(broken, tmp_path / "broken.tar.gz")
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob("[nb]*.tar.gz"))


def test_gpu_training_script_continues_the_bundled_sketch_network_from_a_pack(fake_data, tmp_path):
    """scripts/gpu_train_sketch2mask.sh end to end on the CPU (DEVICE=cpu): unpack, train from the bundled weights
    with their card's configuration and recipe, export. Only the device differs on a GPU machine."""
    import os
    import subprocess
    import sys

    from training.pack import pack_sketches

    repo = Path(__file__).resolve().parent.parent
    script = repo / "scripts" / "gpu_train_sketch2mask.sh"
    pack = tmp_path / "sk.tar.gz"
    pack_sketches(fake_data, pack)
    env = {**os.environ, "DEVICE": "cpu", "STEPS": "1", "BATCH": "2", "PYTHON": sys.executable}
    run = subprocess.run(["bash", str(script), str(pack), "5", str(tmp_path / "out")], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    card = json.loads((tmp_path / "out" / "sketch2mask_lite.json").read_text())
    assert (tmp_path / "out" / "checkpoint_fp16.pt").stat().st_size > 0  # what comes back from a device machine
    bundled = json.loads((repo / "weights" / "sketch2mask_lite.json").read_text())
    generator = json.loads((repo / "weights" / "mask2triplane_lite.json").read_text())
    assert card["config"] == bundled["config"] and card["training"]["steps"] == 1
    assert card["training"]["init_from"]["sha256"] == bundled["sha256"]
    if bundled["training"]["recipe"]["sv_weight"] > 0:  # L_SV's target is the bundled generator's mask encoder
        assert card["training"]["mask_encoder"]["sha256"] == generator["sha256"]
    else:  # a bundle trained without L_SV is continued without it
        assert card["training"].get("mask_encoder") is None and card["training"]["recipe"]["sv_weight"] == 0
    recipe, old = card["training"]["recipe"], bundled["training"]["recipe"]
    assert recipe["batch"] == 2 and math.isclose(recipe["lr"], old["lr"] * math.sqrt(2 / old["batch"]))
    assert {k: v for k, v in recipe.items() if k in old and k not in ("batch", "lr")} == \
        {k: v for k, v in old.items() if k not in ("batch", "lr")}
    from training.train_sketch2mask import SketchToMaskRecipe  # keys added since the card: at their defaults

    assert all(recipe[k] == getattr(SketchToMaskRecipe(), k) for k in set(recipe) - set(old))
    assert card["inference"]["mirror_average"] is True and card["sha256"] != bundled["sha256"]
    assert "--workers" in card["training"]["command"] and card["data"]["count"] == 5
    umask = os.umask(0)
    os.umask(umask)
    mode = (tmp_path / "out" / "sketch2mask_lite.safetensors").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask  # the user's usual mode, not mkstemp's 0600

    bad = subprocess.run(["bash", str(script), str(tmp_path / "missing.tar.gz"), "5", str(tmp_path / "o2")], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "pack-sketches" in bad.stderr and not (tmp_path / "o2").exists()


class _BrokenBuilder:
    """A batch builder whose data is unreadable (module level: spawn workers unpickle it by reference)."""

    def __call__(self, rng):
        raise ValueError(f"sample unreadable (draw {rng.integers(10)})")


def test_prefetched_batches_equal_the_serial_ones_for_any_worker_count(fake_data):
    from backend.models.config import get_config
    from training.datasets import SynHead
    from training.prefetch import PrefetchedBatches
    from training.train_mask2triplane import Mask2TriplaneBatchBuilder, Mask2TriplaneRecipe
    from training.train_sketch2mask import SketchBatchBuilder, SketchToMaskRecipe

    data = SynHead(fake_data, "train")
    sketch = SketchBatchBuilder(data, {"internal_resolution": 64}, SketchToMaskRecipe(batch=3), enc_res=32)
    m2t_cfg = {**get_config("lite", "mask2triplane"), **_tiny_m2t_override()}
    m2t = Mask2TriplaneBatchBuilder(data, m2t_cfg, Mask2TriplaneRecipe(batch=2, points=64, rays_per_view=8))
    steps = [0, 1, 2, 6, 7, 3]  # in order, then a jump ahead (past what was built) and one back (a resume)
    for build in (sketch, m2t):
        with PrefetchedBatches(build, seed=5, rank=1, workers=0) as serial:
            want = [serial(s) for s in steps]
        with PrefetchedBatches(build, seed=5, rank=1, workers=2, depth=3) as pooled:
            got = [pooled(s) for s in steps]
        for w, g in zip(want, got):
            assert w.keys() == g.keys()
            for k in w:
                np.testing.assert_array_equal(w[k], g[k])
        assert not np.array_equal(want[0][next(iter(want[0]))], want[1][next(iter(want[1]))])  # steps differ
    assert set(want[0]) >= {"xyz", "occ", "step_seed"} and sketch(np.random.default_rng(0))["mask_area"].shape == (3, 19, 32, 32)

    with PrefetchedBatches(_BrokenBuilder(), seed=0, workers=1) as broken:
        with pytest.raises(ValueError, match="sample unreadable"):
            broken(0)
    with pytest.raises(ValueError, match="workers must be"):
        PrefetchedBatches(sketch, seed=0, workers=-1)


def test_sketch2mask_steps_lower_the_loss_then_export_and_eval(fake_data, tmp_path):
    from training.eval_cli import main as eval_main
    from training.loop import RunContext
    from training.train_cli import export
    from training.train_mask2triplane import train as train_m2t
    from training.train_sketch2mask import train as train_s2m

    ctx = RunContext(torch.device("cpu"), "test")
    m2t_run = tmp_path / "m2t"
    train_m2t(_args(data=str(fake_data), out=str(m2t_run), steps=2, config_override=_tiny_m2t_override(),
                    recipe_override={"batch": 2, "points": 256, "rays_per_view": 0}), ctx)
    s2m_over = {"channels": [4, 8, 8, 8, 8, 8, 8, 8], "num_ws_geometry": 2, "w_dim": 16}
    s2m_run = tmp_path / "s2m"
    train_s2m(_args(data=str(fake_data), out=str(s2m_run), steps=30, config_override=s2m_over, batch=4,
                    recipe_override={"lr": 1e-2},
                    mask_encoder=str(m2t_run / "checkpoint.pt"), no_aug=True), ctx)
    rows = [json.loads(line) for line in (s2m_run / "log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.8 * first and all(r["sv"] >= 0 for r in rows)

    weights = tmp_path / "weights"
    card = export(m2t_run, weights, "mask2triplane_lite")
    assert card["kind"] == "mask2triplane" and card["data"]["count"] == 5 and card["training"]["steps"] == 2
    assert export(s2m_run, weights, "sketch2mask_lite", mirror_average=True)["inference"] == {"mirror_average": True}
    both = export(m2t_run, tmp_path / "w_mirror", mirror_average=True, semantic_logit_adjustment=1.0)["inference"]
    assert both["mirror_average"] is True and both["semantic_logit_offsets"]["mouth"] < 0
    adjusted = export(m2t_run, tmp_path / "w_adj", semantic_logit_adjustment=1.0)["inference"]
    assert adjusted["semantic_logit_offsets"]["mouth"] == pytest.approx(-math.log(3.0), abs=1e-4)  # recipe weight 3
    assert len(adjusted["semantic_logit_offsets"]) == 8 and "skin" not in adjusted["semantic_logit_offsets"]
    with pytest.raises(ValueError, match="semantic-logit-adjustment"):
        export(s2m_run, tmp_path / "w_bad", semantic_logit_adjustment=1.0)
    report = tmp_path / "report.json"
    real = tmp_path / "real_sketches"  # a stand-in for a folder of real drawings: one SynHead sketch as PNG
    real.mkdir()
    shutil.copy(next(fake_data.glob("*/sketch.png")), real / "drawing.png")
    rc = eval_main(["--data", str(fake_data), "--weights", str(weights), "--out", str(report), "--limit", "1",
                    "--grid", "24", "--view-resolution", "32", "--update-cards", "--threads", "1",
                    "--real-sketches", str(real)])
    assert rc == 0
    rep = json.loads(report.read_text())
    checks = rep["sketch2mask"]["real_sketches_checks"]
    assert list(checks) == ["drawing.png"] and isinstance(checks["drawing.png"]["ok"], bool)
    assert rep["sketch2mask"]["real_sketches_sheet"] == ["drawing.png"]
    assert (tmp_path / "report_real_sketches.png").is_file()
    m = rep["mask2triplane"]
    assert m["count"] == 1 and "mean_chamfer_mm" in m and "mean_chamfer_mm_outer" in m
    assert "mean_chamfer_mm_face" in m and "mean_fscore_5mm_hair" in m
    assert sum(g["count"] for g in m["geometry_by_pose"].values()) == 1
    assert 0 <= m["label_consistency_miou"] <= 1
    assert len(m["label_per_class_precision"]) == len(m["label_per_class_recall"]) == 19
    s = rep["sketch2mask"]
    assert s["clean"]["count"] == 3 and len(s["clean"]["per_class_iou"]) == 19
    # measured with the card's mirror averaging, and without it for comparison
    assert s["mirror_average"] is True and s["mirror_average_other"]["mirror_average"] is False
    assert s["shaded"]["count"] == 3 and 0 <= s["mirror_average_other"]["shaded_miou"] <= 1
    assert rep["data"]["split"] == "test"
    # --split: held-out validation heads are measured with the same code; their numbers never reach a card
    val_report = tmp_path / "val.json"
    assert eval_main(["--data", str(fake_data), "--weights", str(weights), "--out", str(val_report), "--split", "train",
                      "--limit", "2", "--geometry-limit", "0", "--view-resolution", "32", "--only", "mask2triplane",
                      "--threads", "1"]) == 0
    val = json.loads(val_report.read_text())
    assert val["data"]["split"] == "train" and val["mask2triplane"]["count"] == 2
    assert not {r["seed"] for r in val["mask2triplane"]["per_sample"]} & set(val["data"]["test_seeds"])
    with pytest.raises(SystemExit):
        eval_main(["--data", str(fake_data), "--weights", str(weights), "--out", str(val_report), "--split", "train",
                   "--update-cards"])

    # calibration (training/calibration.py): refused on the weights' own training heads; on fresh heads the
    # fitted offsets go into the card, the mIoU on those heads does not fall, and the weights still load
    from backend.models.loading import load_model
    from backend.weights import read_card
    from training.calibration import calibrate
    from training.train_cli import main as train_main

    with pytest.raises(ValueError, match="training heads"):
        calibrate(weights, "sketch2mask", fake_data)
    fresh = write_fake_synhead(tmp_path / "fresh", [20, 21])
    assert train_main(["calibrate", "--kind", "sketch2mask", "--weights", str(weights), "--data", str(fresh),
                       "--max-offset", "1", "--step", "0.5"]) == 0
    for kind in ("sketch2mask", "mask2triplane"):
        if kind == "mask2triplane":
            calibrate(weights, kind, fresh, limit=1, max_offset=1.0, step=0.5)
        card = read_card(f"{kind}_lite", weights)
        cal = card["inference"]["calibration"]
        assert cal["seed_min"] == 20 and cal["miou_after"] >= cal["miou_before"]
        assert set(cal["group_offsets"]) == {"eye_g", "eyes", "brows", "mouth", "lips"}
        model, _ = load_model(kind, weights)
        offsets = card["inference"].get("semantic_logit_offsets", {})
        assert (model.semantic_logit_offsets is None) == (not offsets)
    assert read_card("sketch2mask_lite", weights)["inference"]["mirror_average"] is True  # other settings kept
    assert s["augmented_glasses_kept"]["count"] == 3 and len(s["augmented_glasses_kept"]["per_class_iou"]) == 19
    assert 0 <= s["mirror_average_other"]["clean_miou"] <= 1 and s["mirror_average_other"]["real_sketches_pass"] in (0, 1)
    saved = json.loads((weights / "sketch2mask_lite.json").read_text())
    assert saved["metrics"]["clean"]["miou"] == s["clean"]["miou"]
    from backend.models.loading import load_sketch2mask

    load_sketch2mask(weights)  # checksum still matches after the card update


def test_interpolate_mixes_a_run_with_the_weights_it_was_fine_tuned_from(fake_data, tmp_path):
    from backend.models.loading import load_sketch2mask
    from backend.weights import load_state_dict
    from training.loop import RunContext
    from training.train_cli import export, interpolate, main as train_main
    from training.train_sketch2mask import train as train_s2m

    ctx = RunContext(torch.device("cpu"), "test")
    over = {"channels": [4, 8, 8, 8, 8, 8, 8, 8], "num_ws_geometry": 2, "w_dim": 16}
    base_run, run, base_w = tmp_path / "base", tmp_path / "run", tmp_path / "w_base"
    common = dict(data=str(fake_data), config_override=over, batch=2, no_sv=True, no_aug=True)
    train_s2m(_args(out=str(base_run), steps=2, **common), ctx)
    export(base_run, base_w)
    train_s2m(_args(out=str(run), steps=3, init_from=str(base_w), recipe_override={"lr": 0.05}, **common), ctx)

    card = interpolate(base_w, run, 0.25, tmp_path / "w_mix", mirror_average=True)
    base_sd, base_card = load_state_dict("sketch2mask_lite", base_w)
    run_sd = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    mixed, saved = load_state_dict("sketch2mask_lite", tmp_path / "w_mix")
    moved = 0
    for k, v in run_sd.items():
        if v.is_floating_point():
            torch.testing.assert_close(mixed[k], 0.75 * base_sd[k] + 0.25 * v)
            moved += int(not torch.equal(base_sd[k], v))
        else:
            assert torch.equal(mixed[k], v)
    assert moved > 0  # the fine-tune changed something, so the test can tell the mix from either end
    info = saved["training"]["interpolation"]
    assert info["alpha"] == 0.25 and info["base"]["sha256"] == base_card["sha256"] and saved == card
    assert saved["training"]["steps"] == 3 and saved["inference"] == {"mirror_average": True}
    assert load_sketch2mask(tmp_path / "w_mix")[0].mirror_average is True

    with pytest.raises(ValueError, match="alpha"):
        interpolate(base_w, run, 0.0, tmp_path / "w_bad")
    other = tmp_path / "other"  # a different architecture does not interpolate
    train_s2m(_args(out=str(other), steps=1, **{**common, "config_override": {**over, "w_dim": 8}}), ctx)
    with pytest.raises(ValueError, match="not the same sketch2mask architecture"):
        interpolate(base_w, other, 0.5, tmp_path / "w_bad")
    assert not (tmp_path / "w_bad").exists()
    assert train_main(["interpolate", str(base_w), str(run), "--alpha", "1", "--weights", str(tmp_path / "w_cli")]) == 0
    assert torch.equal(load_state_dict("sketch2mask_lite", tmp_path / "w_cli")[0]["head.weight"], run_sd["head.weight"])


def test_update_cards_keeps_same_weights_metrics_from_another_split(tmp_path):
    from training.eval_cli import update_cards

    card = {"kind": "sketch2mask", "sha256": "abc", "metrics": {"clean": {"miou": 0.8}, "weights_sha256": "abc",
                                                                  "eval_split": {"version": "0.1.0"}}}
    (tmp_path / "sketch2mask_lite.json").write_text(json.dumps(card))
    report = {"data": {"version": "0.3.0"}, "sketch2mask": {"clean": {"miou": 0.7}, "weights_sha256": "abc"}}
    update_cards(tmp_path, report, "s3d-eval ...")
    saved = json.loads((tmp_path / "sketch2mask_lite.json").read_text())
    assert saved["metrics"]["clean"]["miou"] == 0.7 and saved["metrics"]["eval_split"] == {"version": "0.3.0"}
    assert [m["clean"]["miou"] for m in saved["metrics_history"]] == [0.8]
    update_cards(tmp_path, report, "s3d-eval ...")  # same split again: replaced, not stacked
    assert len(json.loads((tmp_path / "sketch2mask_lite.json").read_text())["metrics_history"]) == 1
    card.update(sha256="new")  # other weights: their old numbers are dropped
    (tmp_path / "sketch2mask_lite.json").write_text(json.dumps(card))
    update_cards(tmp_path, report, "s3d-eval ...")
    assert "metrics_history" not in json.loads((tmp_path / "sketch2mask_lite.json").read_text())


def test_geometry_grouped_by_head_pose():
    from types import SimpleNamespace

    from training.geometry_eval import geometry_by, head_pose

    def sample(pose):
        return SimpleNamespace(entry={"placement": {"pose_deg": pose} if pose is not None else {}})

    assert head_pose(sample(None)) == "frontal"  # generator 0.1.0: no pose
    assert head_pose(sample({"yaw": 0.0, "pitch": 0.4, "roll": -0.2})) == "frontal"
    assert head_pose(sample({"yaw": 0.0, "pitch": -6.0, "roll": 0.0})) == "turned"
    rows = [{"pose": "turned", "chamfer_mm": 4.0, "fscore_5mm": 0.6}, {"pose": "turned", "chamfer_mm": 6.0, "fscore_5mm": 0.8},
            {"pose": "frontal", "chamfer_mm": 3.0, "fscore_5mm": 0.9}, {"chamfer_mm": 9.0, "fscore_5mm": 0.1}]
    groups = geometry_by(rows, "pose")
    assert sorted(groups) == ["frontal", "turned"]
    assert groups["turned"]["count"] == 2 and groups["turned"]["mean_chamfer_mm"] == pytest.approx(5.0)
    assert groups["frontal"]["mean_fscore_5mm"] == pytest.approx(0.9) and "mean_chamfer_mm_face" not in groups["frontal"]


def test_geometry_limit_measures_labels_on_every_head_and_geometry_on_the_first(fake_data):
    from backend.models.config import get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.datasets import SynHead
    from training.eval_cli import evaluate_mask2triplane

    torch.manual_seed(0)
    model = Mask2Triplane({**get_config("lite", "mask2triplane"), **_tiny_m2t_override()}).eval()
    data = SynHead(fake_data, "test")
    kw = dict(grid=16, view_res=32, sheet_path=None, outer_reference=False)
    full = evaluate_mask2triplane(model, data, **kw)
    part = evaluate_mask2triplane(model, data, geometry_limit=1, **kw)
    assert full["count"] == part["count"] == 3 and full["geometry_count"] == 3 and part["geometry_count"] == 1
    assert ["chamfer_mm" in r for r in part["per_sample"]] == [True, False, False]
    # the labels do not depend on the geometry: same confusion over all three heads
    assert part["label_consistency_miou"] == pytest.approx(full["label_consistency_miou"])
    assert part["mean_chamfer_mm"] == pytest.approx(full["per_sample"][0]["chamfer_mm"])
    assert sum(g["count"] for g in part["geometry_by_pose"].values()) == 1
    labels_only = evaluate_mask2triplane(model, data, geometry_limit=0, **kw)
    assert labels_only["geometry_count"] == 0 and "mean_chamfer_mm" not in labels_only
    assert labels_only["label_consistency_miou"] == pytest.approx(full["label_consistency_miou"])
    with pytest.raises(ValueError, match="geometry_limit"):
        evaluate_mask2triplane(model, data, geometry_limit=-1, **kw)
    from training.eval_cli import main as eval_main

    with pytest.raises(SystemExit):  # the command line says what is wrong before loading anything
        eval_main(["--data", str(fake_data), "--out", "unused.json", "--geometry-limit", "-1"])


def test_published_layout_readers(tmp_path):
    """MM-CelebA-HQ (sketch/ + mask/ id maps) and CelebAMask-HQ (per-part annotations) read as documented."""
    from training.datasets import CelebAMaskHQ, DataError, open_sketch_data

    mm = tmp_path / "mm"
    (mm / "sketch").mkdir(parents=True)
    (mm / "mask").mkdir()
    for i in range(10):
        Image.fromarray(np.full((256, 256), 255, np.uint8)).save(mm / "sketch" / f"{i}.jpg")
        ids = np.zeros((1024, 1024), np.uint8)
        ids[200:800, 300:700] = 1
        Image.fromarray(ids).save(mm / "mask" / f"{i}.png")
    train, test = open_sketch_data(mm, "train"), open_sketch_data(mm, "test")
    assert (len(train), len(test)) == (9, 1)
    item = test.sketch_item(0)
    assert item["sketch"].shape == (512, 512) and item["mask"].shape == (512, 512) and item["mask"][250, 250] == 1

    ce = tmp_path / "celeba"
    (ce / "CelebA-HQ-img").mkdir(parents=True)
    (ce / "CelebAMask-HQ-mask-anno" / "0").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(ce / "CelebA-HQ-img" / "3.jpg")
    skin = np.zeros((512, 512), np.uint8)
    skin[100:400, 100:400] = 255
    nose = np.zeros((512, 512), np.uint8)
    nose[200:250, 200:250] = 255
    Image.fromarray(skin).save(ce / "CelebAMask-HQ-mask-anno" / "0" / "00003_skin.png")
    Image.fromarray(nose).save(ce / "CelebAMask-HQ-mask-anno" / "0" / "00003_nose.png")
    m = CelebAMaskHQ(ce).mask(0)
    assert m[150, 150] == 1 and m[220, 220] == 2 and m[0, 0] == 0
    with pytest.raises(DataError, match="neither"):
        open_sketch_data(tmp_path, "train")


def test_warm_start_refits_only_the_named_tensors(tmp_path):
    """A 128 px sketch U-Net warm-starts a 256 px one: the convolutions carry over, the style head (whose
    input grows with the bottleneck) starts fresh and is recorded; without ``refit`` the same load fails."""
    from backend.models.config import PROFILES
    from backend.models.sketch2mask import SketchToMask
    from training.loop import warm_start

    torch.manual_seed(0)
    cfg = {**PROFILES["lite"]["sketch2mask"], "channels": [4, 4, 4, 4, 4, 4, 4, 8]}
    small = SketchToMask(cfg)
    torch.save({"model": small.state_dict(), "step": 3, "elapsed_s": 6.0, "meta": {"kind": "sketch2mask", "config": cfg}},
               tmp_path / "checkpoint.pt")
    big = SketchToMask({**cfg, "internal_resolution": 256})
    before = {k: v.clone() for k, v in big.state_dict().items()}
    info = warm_start(big, tmp_path / "checkpoint.pt", "sketch2mask", refit=("style_head.",))
    assert info["refit"] == ["style_head.1.weight"]
    after = big.state_dict()
    assert torch.equal(after["style_head.1.weight"], before["style_head.1.weight"])
    assert torch.equal(after["stem.0.weight"], small.state_dict()["stem.0.weight"])
    assert torch.equal(after["style_head.3.weight"], small.state_dict()["style_head.3.weight"])
    with pytest.raises(RuntimeError):
        warm_start(SketchToMask({**cfg, "internal_resolution": 256}), tmp_path / "checkpoint.pt", "sketch2mask")


def test_widening_the_sketch_unet_keeps_its_output_and_trains_the_new_channels(tmp_path):
    """A wider U-Net warm-started from a narrower one (training/widen.py) gives the same logits and style,
    its new channels receive gradients (they are not dead), and a narrower target is refused."""
    from backend.models.config import PROFILES
    from backend.models.sketch2mask import SketchToMask
    from training.loop import warm_start
    from training.widen import widen_sketch2mask_state

    torch.manual_seed(0)
    cfg = {**PROFILES["lite"]["sketch2mask"], "channels": [4, 4, 4, 4, 4, 4, 4, 8]}
    narrow = SketchToMask(cfg)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters, so that they must carry over
        for m in narrow.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    torch.save({"model": narrow.state_dict(), "step": 3, "elapsed_s": 6.0,
                "meta": {"kind": "sketch2mask", "config": cfg}}, tmp_path / "checkpoint.pt")
    wide_channels = [6, 4, 8, 4, 5, 4, 12, 10]
    wide = SketchToMask({**cfg, "channels": wide_channels})
    info = warm_start(wide, tmp_path / "checkpoint.pt", "sketch2mask", widen=widen_sketch2mask_state)
    assert info["widened_from"] == cfg["channels"]
    sketch = torch.rand(2, 1, 128, 128)
    narrow.eval(), wide.eval()
    with torch.no_grad():
        (a, sa), (b, sb) = narrow(sketch), wide(sketch)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(sa, sb, atol=1e-6)
    wide.train()
    logits, style = wide(sketch)
    (logits.square().mean() + style.square().mean()).backward()
    # decoder[0] reads cat([bottleneck (10 ch, 8 old), skip (12 ch, 4 old)]): the new inputs' zero weights learn
    new_inputs = [8, 9] + list(range(10 + 4, 10 + 12))
    assert wide.decoder[0][0].weight.grad[:, new_inputs].abs().sum() > 0
    assert wide.head.weight.grad[:, 4:].abs().sum() > 0
    with pytest.raises(ValueError, match="must not be smaller"):
        widen_sketch2mask_state(wide.state_dict(), wide_channels, SketchToMask(cfg))
    with pytest.raises(RuntimeError):  # without widen the shapes do not fit
        warm_start(SketchToMask({**cfg, "channels": wide_channels}), tmp_path / "checkpoint.pt", "sketch2mask")


def test_warm_start_expands_the_decoder_without_changing_its_output(tmp_path):
    """Adding the relative-depth input to a trained decoder: the warm-started network gives the same
    occupancy, colour and semantics as the earlier one (the new input's weights start at zero)."""
    from backend.models.config import PROFILES
    from backend.models.mask2triplane import Mask2Triplane
    from training.loop import warm_start

    torch.manual_seed(0)
    cfg = {**PROFILES["lite"]["mask2triplane"], "decoder_relative_depth": False}
    before = Mask2Triplane(cfg).eval()
    torch.save({"model": before.state_dict(), "step": 2, "elapsed_s": 1.0, "meta": {"kind": "mask2triplane", "config": cfg}},
               tmp_path / "checkpoint.pt")
    after = Mask2Triplane({**cfg, "decoder_relative_depth": True}).eval()
    assert after.decoder.fc1.in_features == before.decoder.fc1.in_features + 1
    info = warm_start(after, tmp_path / "checkpoint.pt", "mask2triplane", expand=("decoder.fc1.weight",))
    assert info["expanded"] == ["decoder.fc1.weight"]
    planes = torch.randn(1, 3, cfg["plane_channels"], 16, 16)
    xyz = torch.rand(1, 200, 3) * 2 - 1
    with torch.no_grad():
        a, b = before.query(planes, xyz), after.query(planes, xyz)
    for key in ("occupancy_logit", "rgb", "semantic"):
        assert torch.allclose(a[key], b[key], atol=1e-6)
    with torch.no_grad():  # and the new input is live: a non-zero weight changes the output
        after.decoder.fc1.weight[:, -1] = 1.0
        assert not torch.allclose(after.query(planes, xyz)["semantic"], a["semantic"], atol=1e-4)


def test_region_restricted_chamfer_fscore():
    """Truth = two 10 cm patches 50 cm apart (a "face" and a "hair" region); the prediction matches the
    face exactly and sits 1 cm off the hair: restricted to the face the metrics are perfect, restricted to
    the hair they see the 1 cm, and the whole lies in between."""
    from training.metrics import chamfer_fscore

    rng = np.random.default_rng(0)
    face = np.c_[rng.uniform(0, 0.1, (3000, 2)), np.zeros(3000)]
    hair = face + np.array([0.5, 0, 0])
    gt = np.concatenate([face, hair])
    pred = np.concatenate([face, hair + np.array([0, 0, 0.01])])
    in_face = np.arange(len(gt)) < len(face)
    f = chamfer_fscore(pred, gt, gt_region=in_face)
    h = chamfer_fscore(pred, gt, gt_region=~in_face)
    whole = chamfer_fscore(pred, gt)
    assert f["chamfer_mm"] == 0.0 and f["fscore_5mm"] == 1.0
    assert h["chamfer_mm"] == pytest.approx(10.0, abs=0.5) and h["fscore_5mm"] == 0.0
    assert f["chamfer_mm"] < whole["chamfer_mm"] < h["chamfer_mm"] and whole["fscore_5mm"] == pytest.approx(0.5, abs=0.01)
    # a prediction of the face alone has no sample near the hair: infinite distance, F 0, no crash
    assert chamfer_fscore(face, gt, gt_region=~in_face)["chamfer_mm"] == float("inf")
    with pytest.raises(ValueError, match="gt_region"):
        chamfer_fscore(pred, gt, gt_region=np.zeros(len(gt), bool))


def test_labelled_visible_samples_carry_the_part_labels(tmp_path):
    """A SynHead-style PLY of two labelled spheres side by side (skin at x < 0, hair at x > 0): every
    visible sample carries the label of the sphere it lies on, and the points are the very samples of
    the unlabelled call with the same seed (the face and hair metrics refine the visible reference)."""
    import trimesh

    from backend.export import ply_bytes
    from training.geometry_eval import mesh_surface_points

    left = trimesh.creation.icosphere(subdivisions=3, radius=0.04)
    left.apply_translation([-0.06, 0, 0])
    right = trimesh.creation.icosphere(subdivisions=3, radius=0.04)
    right.apply_translation([0.06, 0, 0])
    both = trimesh.util.concatenate([left, right])
    labels = np.r_[np.full(len(left.vertices), 1), np.full(len(right.vertices), 13)].astype(np.uint8)
    path = tmp_path / "mesh.ply"
    path.write_bytes(ply_bytes(both.vertices, both.faces, np.full((len(both.vertices), 3), 0.5), labels))
    pts, lab = mesh_surface_points(path, 2000, np.random.default_rng(0), with_labels=True)
    assert len(pts) == len(lab) == 2000 and set(np.unique(lab)) == {1, 13}
    assert np.all(lab[pts[:, 0] < 0] == 1) and np.all(lab[pts[:, 0] > 0] == 13)
    np.testing.assert_array_equal(pts, mesh_surface_points(path, 2000, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="visible"):
        mesh_surface_points(path, 10, np.random.default_rng(0), reference="outer", with_labels=True)


def test_ground_truth_samples_keep_only_the_outer_surface(tmp_path):
    """A ground-truth mesh of two closed parts, a 40 mm sphere inside an 80 mm one (like an eyeball in
    the skull): the outer and visible reference samples lie on the outer sphere only; with the ``all``
    reference about a fifth lie on the inner one (its share of the area)."""
    import trimesh

    from training.geometry_eval import mesh_surface_points

    outer = trimesh.creation.icosphere(subdivisions=4, radius=0.08)
    inner = trimesh.creation.icosphere(subdivisions=4, radius=0.04)
    path = tmp_path / "mesh.ply"
    trimesh.util.concatenate([outer, inner]).export(path)
    for reference in ("outer", "visible"):
        pts = mesh_surface_points(path, 3000, np.random.default_rng(0), reference=reference)
        r = np.linalg.norm(pts, axis=1)
        assert len(pts) == 3000 and np.all(r > 0.075), reference
    r_all = np.linalg.norm(mesh_surface_points(path, 3000, np.random.default_rng(0), reference="all"), axis=1)
    assert 0.1 < (r_all < 0.05).mean() < 0.3


def test_visible_reference_leaves_out_a_cavity(tmp_path):
    """An 8 cm cube holding a 3 cm cavity that opens to the outside only through a kinked 4 mm tunnel
    (one closed mesh, like the mouth cavity behind the lips): the cavity's walls lie outside every
    closed part, so the ``outer`` reference keeps them, but no camera outside sees them, so the
    ``visible`` reference drops them."""
    import mcubes
    import trimesh

    from training.geometry_eval import mesh_surface_points

    n, h = 101, 0.05  # grid points a side over [-h, h], 1 mm apart
    x, y, z = np.meshgrid(*[np.linspace(-h, h, n)] * 3, indexing="ij")
    solid = (np.abs(x) < 0.04) & (np.abs(y) < 0.04) & (np.abs(z) < 0.04)
    cavity = (np.abs(x) < 0.015) & (np.abs(y) < 0.015) & (np.abs(z) < 0.015)
    up = (np.abs(x) < 0.002) & (np.abs(y) < 0.002) & (z > 0) & (z < 0.03)
    out = (x > -0.002) & (np.abs(y) < 0.002) & (np.abs(z - 0.028) < 0.002)
    vol = (solid & ~cavity & ~up & ~out).astype(np.float32)
    verts, faces = mcubes.marching_cubes(vol, 0.5)
    path = tmp_path / "mesh.ply"
    trimesh.Trimesh(verts * (2 * h / (n - 1)) - h, faces).export(path)
    in_cavity = lambda p: (np.abs(p) < 0.0175).all(1)  # noqa: E731
    outer = mesh_surface_points(path, 3000, np.random.default_rng(0), reference="outer")
    visible = mesh_surface_points(path, 3000, np.random.default_rng(0), reference="visible")
    assert in_cavity(outer).mean() > 0.1  # 6 x 9 cm^2 of about 6 x 64 + 6 x 9 cm^2
    assert not in_cavity(visible).any() and len(visible) == 3000
    with pytest.raises(ValueError, match="reference"):
        mesh_surface_points(path, 10, np.random.default_rng(0), reference="inner")


def test_mask_plausibility_accepts_a_face_and_names_what_is_wrong():
    """One skin region with brows above eyes above nose above lips passes; each broken criterion fails
    with its own reason."""
    from backend.labels import LABEL_IDS as L
    from training.eval_cli import mask_plausibility

    face = np.zeros((128, 128), np.uint8)
    face[10:30, 30:98] = L["hair"]
    face[30:110, 34:94] = L["skin"]
    face[40:44, 44:58] = L["l_brow"]
    face[48:54, 46:56] = L["l_eye"]
    face[48:54, 72:82] = L["r_eye"]
    face[55:75, 60:68] = L["nose"]
    face[84:88, 54:74] = L["u_lip"]
    face[88:92, 54:74] = L["l_lip"]
    good = mask_plausibility(face)
    assert good["ok"] and good["failed"] == [] and good["skin_main_fraction"] > 0.99

    swapped = face.copy()
    swapped[84:92, 54:74] = L["skin"]
    swapped[32:38, 54:74] = L["u_lip"]  # lips on the forehead
    assert any("not above lips" in f for f in mask_plausibility(swapped)["failed"])

    no_brows = face.copy()
    no_brows[no_brows == L["l_brow"]] = L["skin"]
    assert mask_plausibility(no_brows)["failed"] == ["brows: missing (0 px)"]

    split = face.copy()
    split[30:110, 62:66] = L["background"]  # the face cut in two halves
    assert any(f.startswith("face region") for f in mask_plausibility(split)["failed"])


def test_keep_accessories_never_drops_glasses_strokes_and_changes_nothing_else():
    from training.augment import augment_strokes

    doc = {"version": 1, "frame": "normalized", "width": 1, "height": 1, "strokes": [
        {"group": "glasses", "points": [[0.35, 0.45], [0.45, 0.45], [0.45, 0.5], [0.35, 0.45]]},
        {"group": "glasses", "points": [[0.55, 0.45], [0.65, 0.45], [0.65, 0.5], [0.55, 0.45]]},
        {"group": "nose", "points": [[0.5, 0.55], [0.5, 0.65]]},
        {"group": "brow", "points": [[0.35, 0.4], [0.45, 0.38]]}]}
    # everything droppable is dropped, except the glasses when they are kept
    gone = augment_strokes(doc, np.random.default_rng(0), group_drop=1.0, stroke_drop=1.0)["strokes"]
    kept = augment_strokes(doc, np.random.default_rng(0), group_drop=1.0, stroke_drop=1.0, keep_accessories=True)
    assert gone == [] and {s["group"] for s in kept["strokes"]} == {"glasses"}
    assert len(kept["strokes"]) >= 2  # both lenses (a stroke may be broken into pieces or doubled)
    # the default protocol draws the same numbers as before: without drops, both settings agree exactly
    for seed in range(5):
        a = augment_strokes(doc, np.random.default_rng(seed), group_drop=0.0, stroke_drop=0.0)
        b = augment_strokes(doc, np.random.default_rng(seed), group_drop=0.0, stroke_drop=0.0, keep_accessories=True)
        assert a == b
    # and glasses dropped by the default protocol in some seeds are always there when kept
    dropped = [s for s in range(40) if "glasses" not in {st["group"] for st in
                                                        augment_strokes(doc, np.random.default_rng(s))["strokes"]}]
    assert dropped, "the default protocol should drop the glasses group in some of 40 seeds"
    assert all("glasses" in {st["group"] for st in augment_strokes(doc, np.random.default_rng(s),
                                                                  keep_accessories=True)["strokes"]} for s in dropped)


def test_rough_redraws_are_deterministic_and_off_by_default():
    from training.augment import augmented_sketch

    doc = {"version": 1, "frame": "normalized", "width": 1, "height": 1, "strokes": [
        {"group": "face_outline", "points": [[0.3, 0.3], [0.3, 0.7], [0.5, 0.85], [0.7, 0.7], [0.7, 0.3]]},
        {"group": "nose", "points": [[0.5, 0.45], [0.48, 0.6], [0.52, 0.6]]},
        {"group": "mouth", "points": [[0.42, 0.7], [0.5, 0.72], [0.58, 0.7]]}]}
    item = {"sketch": np.ones((512, 512), np.float32), "mask": np.zeros((512, 512), np.uint8), "strokes": doc}
    draw = lambda seed, **kw: augmented_sketch(item, np.random.default_rng(seed), stroke_prob=1.0,  # noqa: E731
                                               framing_prob=0.0, **kw)[0]
    changed = 0
    for seed in range(6):
        np.testing.assert_array_equal(draw(seed), draw(seed, rough_prob=0.0))  # default: the same draws as before
        np.testing.assert_array_equal(draw(seed, rough_prob=1.0), draw(seed, rough_prob=1.0))  # seeded
        changed += not np.array_equal(draw(seed), draw(seed, rough_prob=1.0))
    assert changed >= 4  # the rough pass changes the drawing (a re-draw may also drop every stroke)


def test_sketch2mask_bf16_autocast_trains_and_keeps_float32_weights(fake_data, tmp_path):
    """With ``bf16`` the U-Net runs under bfloat16 autocast: the loss still falls over a few steps, the
    weights stay float32, and the step's loss is close to the float32 one on the same batch."""
    from backend.models.config import get_config
    from backend.models.sketch2mask import SketchToMask
    from training.datasets import SynHead
    from training.train_sketch2mask import (SketchBatchBuilder, SketchToMaskLoss, SketchToMaskRecipe,
                                            sketch_batch_to_device)

    cfg = {**get_config("lite", "sketch2mask"), "channels": [4, 8, 8, 8, 8, 8, 8, 8], "num_ws_geometry": 2, "w_dim": 16}
    torch.manual_seed(0)
    net = SketchToMask(cfg)
    recipe = SketchToMaskRecipe(batch=4, lr=1e-2, sv_weight=0.0, augment=False, bf16=True)
    lm, plain = SketchToMaskLoss(net, recipe), SketchToMaskLoss(net, SketchToMaskRecipe(**{**vars(recipe), "bf16": False}))
    build = SketchBatchBuilder(SynHead(fake_data, "train"), cfg, recipe, None)
    batch = sketch_batch_to_device(build(np.random.default_rng(0)), torch.device("cpu"), None)
    net.eval()
    with torch.no_grad():
        a, b = float(lm(batch)["loss"]), float(plain(batch)["loss"])
    assert a == pytest.approx(b, rel=0.05) and a != b  # autocast really ran, and agrees with float32
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    losses = []
    for step in range(20):
        out = lm(sketch_batch_to_device(build(np.random.default_rng(step)), torch.device("cpu"), None))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_no_training_library_module_imports_a_cli_module():
    """Only the command-line modules (``training/*_cli.py``) may import another CLI module: a library module
    (calibration, the trainers, the geometry helpers, ...) must not depend on argument parsing."""
    import ast

    root = Path(__file__).resolve().parent.parent / "training"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name.endswith("_cli.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root.parent)}: {n}" for n in names if n.split(".")[-1].endswith("_cli")]
    assert not offenders, offenders
