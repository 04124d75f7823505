"""Training and evaluation on SynCat (seg2cat, six classes) through the human networks' code: the readers,
augmentation, losses, both trainers, export, loading and ``s3d-eval`` take the label set from the data.

The data are made here with the SynCat writer (training/syncat/writer.py): three training cats (seeds
200-202) and one test cat (seed 0), 512 px masks and 128 px views (about 5 s on the 2-core machine).
The networks are tiny (a few thousand weights) and train for two steps: these tests check shapes, label
sets and refusals, not quality.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("embreex")
pytest.importorskip("mcubes")

from backend.labels import CAT, CELEBAMASK_HQ  # noqa: E402
from training.run_spec import TrainRun  # noqa: E402

torch.set_num_threads(1)

#: Tiny mask -> tri-plane sizes (as tests/test_training.py's ``_tiny_m2t_override``).
TINY_M2T = {"mask_resolution": 32, "encoder_channels": [8, 16, 16], "pixel_feature_channels": 8, "z_dim": 8,
            "w_dim": 16, "num_ws_geometry": 2, "num_ws_appearance": 2, "plane_resolution": 32, "plane_channels": 8,
            "synthesis_channels": 8, "depth_code_channels": 4, "decoder_hidden": 16, "appearance_resolution": 16,
            "appearance_channels": [8, 8], "render_samples": 8, "render_importance_samples": 8}
#: Tiny sketch U-Net sizes; its style head matches TINY_M2T's geometry w+ (2 x 16).
TINY_S2M = {"channels": [4, 8, 8, 8, 8, 8, 8, 8], "num_ws_geometry": 2, "w_dim": 16}


def _args(**kw) -> TrainRun:
    """A tiny two-step test run with ``kw`` set."""
    base = dict(data="", out="", steps=2, checkpoint_minutes=10.0, log_every=1)
    base.update(kw)
    return TrainRun(**base)


@pytest.fixture(scope="module")
def cat_dir(tmp_path_factory) -> Path:
    from training.syncat.writer import synthesise_cats

    out = tmp_path_factory.mktemp("syncat_train")
    synthesise_cats(out, 1, seed=0, views=4, workers=1, progress=False)  # test split (seeds 0-199)
    synthesise_cats(out, 3, seed=200, views=4, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def cat_runs(cat_dir, tmp_path_factory) -> dict[str, Path]:
    """Both cat networks trained for two steps (the sketch network with L_SV from the cat generator and every
    augmentation switched on, human-only ones included) and exported with their cards."""
    from training.loop import RunContext
    from training.train_cli import export
    from training.train_mask2triplane import train as train_m2t
    from training.train_sketch2mask import train as train_s2m

    root = tmp_path_factory.mktemp("cat_runs")
    ctx = RunContext(torch.device("cpu"), "test")
    train_m2t(_args(data=str(cat_dir), out=str(root / "m2t"), config_override=TINY_M2T,
                    recipe_override={"batch": 2, "points": 256, "rays_per_view": 16, "render_warmup_steps": 0}), ctx)
    train_s2m(_args(data=str(cat_dir), out=str(root / "s2m"), config_override=TINY_S2M, batch=2,
                    recipe_override={"mirror_prob": 0.5, "face_marks_prob": 0.5, "closed_eyes_prob": 0.5,
                                     "empty_eyes_prob": 0.5, "new_style_prob": 0.5, "small_class_weight": 2.0,
                                     "body_prob": 0.5, "minimal_marks_prob": 0.5},
                    mask_encoder=str(root / "m2t" / "checkpoint.pt")), ctx)
    weights = root / "weights"
    export(root / "m2t", weights, semantic_logit_adjustment=1.0)
    export(root / "s2m", weights, mirror_average=True)
    return {"root": root, "m2t": root / "m2t", "s2m": root / "s2m", "weights": weights}


# ---- readers, augmentation, losses -------------------------------------------------------------------

def test_reader_exposes_the_cat_label_set(cat_dir, tmp_path):
    from tests.test_training import write_fake_synhead
    from training.datasets import DataError, SynHead

    data = SynHead(cat_dir, "train")
    assert data.labels is CAT and len(data) == 3
    rng = np.random.default_rng(0)
    item = data.mask2triplane_item(0, rng, 32, 16, 128, rays_per_view=32)
    assert item["mask"].shape == (CAT.num_classes, 32, 32) and np.allclose(item["mask"].sum(0), 1)
    assert item["label"].max() < CAT.num_classes and item["ray_label"].max() < CAT.num_classes
    assert data.view_patch(0, rng, 8, 0.5)["patch_label"].shape == (CAT.num_classes, 8, 8)
    assert data.sketch_item(0)["mask"].max() == CAT.num_classes - 1
    human = write_fake_synhead(tmp_path / "human", [5, 6])
    assert SynHead(human, "train").labels is CELEBAMASK_HQ
    with pytest.raises(DataError, match="disagree on label_set"):
        SynHead([cat_dir, human], "train")


def test_human_only_augmentations_are_no_ops_for_cats(cat_dir):
    from training.augment import augmented_sketch, face_marks, mirror, redraw_in_style
    from training.datasets import SynHead

    item = SynHead(cat_dir, "train").sketch_item(0)
    sk = item["sketch"].astype(np.float32)
    rng = np.random.default_rng(3)
    assert face_marks(sk, item["mask"], rng, labels=CAT) is sk
    assert redraw_in_style(item, rng, labels=CAT) is None
    assert rng.random() == np.random.default_rng(3).random()  # no random number drawn by either
    # every human-only step on: the same sketch and mask as with them off (same random numbers)
    on = augmented_sketch(item, np.random.default_rng(7), stroke_prob=1.0, marks_prob=1.0, closed_eyes_prob=1.0,
                          empty_eyes_prob=1.0, new_style_prob=1.0, mirror_prob=0.0, labels=CAT)
    off = augmented_sketch(item, np.random.default_rng(7), stroke_prob=1.0, labels=CAT)
    assert np.array_equal(on[0], off[0]) and np.array_equal(on[1], off[1])
    # with the human label set the same switches change the drawing (the no-op is the cat set's)
    human = augmented_sketch(item, np.random.default_rng(7), stroke_prob=1.0, marks_prob=1.0,
                             closed_eyes_prob=1.0, labels=CELEBAMASK_HQ)
    assert not np.array_equal(human[0], off[0])
    # the cat mirror only flips (seg2cat has no left/right classes)
    flipped_sketch, flipped = mirror(sk, item["mask"], CAT)
    assert np.array_equal(flipped, item["mask"][:, ::-1]) and np.array_equal(flipped_sketch, sk[:, ::-1])


def test_small_classes_follow_the_label_set():
    from training.losses import SMALL_CLASSES, small_class_weights, small_classes

    assert small_classes(CELEBAMASK_HQ) == SMALL_CLASSES
    assert [CAT.names[i] for i in small_classes(CAT)] == ["mouth", "eyes", "whiskers"]
    w = small_class_weights(CAT.num_classes, 3.0, classes=small_classes(CAT))
    assert w.tolist() == [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    assert torch.equal(small_class_weights(19, 3.0), small_class_weights(19, 3.0, classes=small_classes()))


# ---- networks and configs ------------------------------------------------------------------------------

def test_configs_name_their_label_set():
    from backend.models.config import PROFILES, LabelSetError, config_labels, for_label_set, get_config
    from backend.models.mask2triplane import Mask2Triplane

    human = get_config("lite", "mask2triplane")
    assert for_label_set(get_config("lite", "mask2triplane"), CELEBAMASK_HQ) == human  # human configs unchanged
    assert all("label_set" not in cfg for p in PROFILES.values() for cfg in p.values())
    cat = for_label_set({**human, **TINY_M2T}, CAT)
    assert cat["num_classes"] == 6 and cat["label_set"] == "seg2cat" and config_labels(cat) is CAT
    with pytest.raises(LabelSetError, match="seg2cat"):
        for_label_set(dict(cat), CELEBAMASK_HQ)
    with pytest.raises(LabelSetError, match="num_classes is 19"):
        config_labels({**cat, "num_classes": 19})
    with pytest.raises(LabelSetError, match="colours"):
        Mask2Triplane({**cat, "appearance_code": "colours"})


def test_cat_generator_mirror_average_only_flips():
    """With no left/right classes the mirror pair is the flipped mask's planes, classes in place."""
    from backend.models.config import for_label_set, get_config
    from backend.models.mask2triplane import Mask2Triplane

    torch.manual_seed(0)
    model = Mask2Triplane(for_label_set({**get_config("lite", "mask2triplane"), **TINY_M2T}, CAT)).eval()
    mask = torch.zeros(1, 32, 32, dtype=torch.long)
    mask[0, 8:24, 4:20] = 1
    mask[0, 10:14, 6:10] = 4  # an eye on the image's left only
    z = torch.zeros(1, model.z_dim)
    model.mirror_average = True
    pair = model.planes_from_mask(mask, z)
    model.mirror_average = False
    assert torch.allclose(pair[:, 1], model.planes_from_mask(mask.flip(-1), z), atol=1e-5)
    assert not torch.allclose(pair[:, 0], pair[:, 1], atol=1e-3)  # the mask is not symmetric
    out = model.query(pair, torch.rand(1, 50, 3) * 2 - 1)
    assert out["semantic"].shape == (1, 50, 6) and torch.allclose(out["semantic"].exp().sum(-1), torch.ones(1, 50))


# ---- training, export, loading ---------------------------------------------------------------------------

def test_cat_runs_export_six_class_networks_with_a_cat_card(cat_runs):
    from backend.models.loading import load_mask2triplane, load_sketch2mask
    from backend.weights import WeightsError

    weights = cat_runs["weights"]
    for kind in ("mask2triplane", "sketch2mask"):
        card = json.loads((weights / f"{kind}_lite.json").read_text())
        assert card["label_set"] == "seg2cat" and card["config"]["label_set"] == "seg2cat"
        assert card["config"]["num_classes"] == 6
    m2t_card = json.loads((weights / "mask2triplane_lite.json").read_text())
    # the logit adjustment is on the cat's small classes
    assert set(m2t_card["inference"]["semantic_logit_offsets"]) == {"mouth", "eyes", "whiskers"}
    model, _ = load_mask2triplane(weights, label_set="seg2cat")
    net, card = load_sketch2mask(weights, label_set=None)
    assert model.labels is CAT and net.labels is CAT and net.mirror_average
    assert model.semantic_logit_offsets.shape == (6,) and model.semantic_logit_offsets[3] < 0
    sketch = torch.ones(1, 1, 128, 128)
    assert net.label_scores(sketch).shape == (1, 6, 128, 128)
    z = torch.zeros(1, model.z_dim)
    planes = model.planes_from_mask(torch.zeros(1, 64, 64, dtype=torch.long), z)
    assert model.query(planes, torch.zeros(1, 4, 3))["semantic"].shape == (1, 4, 6)
    # the loaders serve the human set unless asked: a cat card in the human networks' place is refused
    with pytest.raises(WeightsError, match="seg2cat"):
        load_mask2triplane(weights)
    with pytest.raises(WeightsError, match="seg2cat"):
        load_sketch2mask(weights)


def test_card_that_disagrees_with_its_label_set_is_refused(cat_runs, tmp_path):
    import shutil

    from backend.models.loading import load_sketch2mask
    from backend.weights import WeightsError

    for f in cat_runs["weights"].glob("sketch2mask_lite.*"):
        shutil.copy(f, tmp_path / f.name)
    card_path = tmp_path / "sketch2mask_lite.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "label_set": "celebamask-hq-19"}))
    with pytest.raises(WeightsError, match="num_classes is 6"):
        load_sketch2mask(tmp_path, label_set=None)


def test_warm_start_across_label_sets_is_refused(cat_dir, cat_runs, tmp_path):
    """Decision: a 19-class (human) run never warm-starts a 6-class (cat) network, nor the reverse; the error
    names both sets. The same label set warm-starts as before."""
    from backend.models.config import LabelSetError, for_label_set, get_config
    from backend.models.mask2triplane import Mask2Triplane
    from backend.models.sketch2mask import SketchToMask
    from training.loop import RunContext, warm_start
    from training.train_mask2triplane import train as train_m2t

    human_cfg = {**get_config("lite", "mask2triplane"), **TINY_M2T}
    human = Mask2Triplane(human_cfg)
    torch.save({"model": human.state_dict(), "step": 3, "elapsed_s": 1.0,
                "meta": {"kind": "mask2triplane", "config": human_cfg}}, tmp_path / "checkpoint.pt")
    ctx = RunContext(torch.device("cpu"), "test")
    with pytest.raises(LabelSetError, match="seg2cat network .* celebamask-hq-19 network"):
        train_m2t(_args(data=str(cat_dir), out=str(tmp_path / "m2t"), config_override=TINY_M2T,
                        recipe_override={"batch": 2, "points": 128, "rays_per_view": 0},
                        init_from=str(tmp_path / "checkpoint.pt")), ctx)
    assert not (tmp_path / "m2t" / "checkpoint.pt").exists()
    with pytest.raises(LabelSetError, match="celebamask-hq-19 network .* seg2cat network"):
        warm_start(Mask2Triplane(human_cfg), cat_runs["m2t"] / "checkpoint.pt", "mask2triplane")
    s2m_human = SketchToMask({**get_config("lite", "sketch2mask"), **TINY_S2M})
    with pytest.raises(LabelSetError, match="seg2cat"):
        warm_start(s2m_human, cat_runs["weights"], "sketch2mask")  # from a weights folder too
    cat = Mask2Triplane(for_label_set({**human_cfg}, CAT))
    info = warm_start(cat, cat_runs["m2t"] / "checkpoint.pt", "mask2triplane")
    assert info["steps"] == 2


def test_sketch_network_refuses_a_generator_of_another_label_set(cat_dir, tmp_path):
    from backend.models.config import LabelSetError, get_config
    from backend.models.mask2triplane import Mask2Triplane
    from training.loop import RunContext
    from training.train_sketch2mask import train as train_s2m

    human_cfg = {**get_config("lite", "mask2triplane"), **TINY_M2T}
    torch.save({"model": Mask2Triplane(human_cfg).state_dict(), "step": 1, "elapsed_s": 1.0,
                "meta": {"kind": "mask2triplane", "config": human_cfg}}, tmp_path / "checkpoint.pt")
    with pytest.raises(LabelSetError, match="mask-encoder"):
        train_s2m(_args(data=str(cat_dir), out=str(tmp_path / "s2m"), config_override=TINY_S2M, batch=2,
                        mask_encoder=str(tmp_path / "checkpoint.pt")), RunContext(torch.device("cpu"), "test"))


# ---- evaluation ----------------------------------------------------------------------------------------

def test_eval_on_a_cat_folder_uses_cat_classes_and_skips_human_parts(cat_dir, cat_runs, tmp_path, capsys):
    from training.eval_cli import main as eval_main

    report = tmp_path / "s2m.json"
    assert eval_main(["--data", str(cat_dir), "--weights", str(cat_runs["weights"]), "--out", str(report),
                      "--only", "sketch2mask", "--sketch-styles", "hatched", "--threads", "1"]) == 0
    rep = json.loads(report.read_text())
    s2m = rep["sketch2mask"]
    assert list(s2m["clean"]["per_class_iou"]) == list(CAT.names) and s2m["clean"]["count"] == 1
    assert "shaded" not in s2m and "styles" not in s2m and "augmented" in s2m
    assert any("sketch-styles" in n for n in rep["notes"]) and any("shaded" in n for n in rep["notes"])
    report = tmp_path / "m2t.json"
    assert eval_main(["--data", str(cat_dir), "--weights", str(cat_runs["weights"]), "--out", str(report),
                      "--only", "mask2triplane", "--grid", "24", "--view-resolution", "32", "--threads", "1"]) == 0
    m2t = json.loads(report.read_text())["mask2triplane"]
    assert m2t["label_set"] == "seg2cat" and list(m2t["label_per_class_iou"]) == list(CAT.names)
    assert "mean_chamfer_mm" in m2t and "mean_chamfer_mm_face" not in m2t
    assert any("geometry regions" in n for n in m2t["notes"])
    # weights of the human set on cat data: refused (exit code 2), the message naming both sets
    human_weights = tmp_path / "human_weights"
    human_weights.mkdir()
    for f in cat_runs["weights"].glob("sketch2mask_lite.*"):
        (human_weights / f.name).write_bytes(f.read_bytes())
    card = json.loads((human_weights / "sketch2mask_lite.json").read_text())
    (human_weights / "sketch2mask_lite.json").write_text(json.dumps({**card, "label_set": "celebamask-hq-19"}))
    assert eval_main(["--data", str(cat_dir), "--weights", str(human_weights), "--out", str(tmp_path / "x.json"),
                      "--only", "sketch2mask", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "celebamask-hq-19" in err and "seg2cat" in err
