"""training/synhead/drawing_styles.py: the four drawing styles of real drawings, their registry, and the
trainer's on-the-fly re-draw (``new_style_prob``).

The heads are drawn here from ellipses (a face, hair short or reaching the shoulders, eyes, brows, nose,
lips, neck, clothes) with a label map, a shaded render and a stroke document traced from the labels;
no SynHead engine is needed.
"""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from backend.labels import LABEL_IDS

S = 512
GROUPS = {"skin": "face_outline", "hair": "hair", "l_eye": "eye", "r_eye": "eye", "l_brow": "brow",
          "r_brow": "brow", "nose": "nose", "u_lip": "lips", "l_lip": "lips", "neck": "neck", "cloth": "shoulders"}
COLOURS = {"skin": (220, 180, 150), "hair": (70, 50, 30), "l_eye": (60, 60, 60), "r_eye": (60, 60, 60),
           "l_brow": (80, 60, 40), "r_brow": (80, 60, 40), "nose": (210, 170, 140), "u_lip": (170, 90, 90),
           "l_lip": (170, 90, 90), "neck": (200, 160, 130), "cloth": (60, 90, 160)}


def synthetic_head(long_hair: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(stroke doc, rgb (512, 512, 3) uint8, label (512, 512) uint8)`` of an ellipse head."""
    lab = np.zeros((S, S), np.uint8)
    ids = LABEL_IDS
    cv2.ellipse(lab, (256, 560), (250, 110), 0, 0, 360, ids["cloth"], -1)
    cv2.rectangle(lab, (215, 300), (297, 470), ids["neck"], -1)
    cv2.ellipse(lab, (256, 200), (125, 140), 0, 0, 360, ids["hair"], -1)
    if long_hair:
        cv2.rectangle(lab, (131, 200), (200, 430), ids["hair"], -1)
        cv2.rectangle(lab, (312, 200), (381, 430), ids["hair"], -1)
    cv2.ellipse(lab, (256, 240), (95, 125), 0, 0, 360, ids["skin"], -1)
    for name, x in (("l_eye", 215), ("r_eye", 297)):
        cv2.ellipse(lab, (x, 220), (20, 9), 0, 0, 360, ids[name], -1)
    for name, x in (("l_brow", 215), ("r_brow", 297)):
        cv2.ellipse(lab, (x, 195), (26, 6), 0, 0, 360, ids[name], -1)
    cv2.ellipse(lab, (256, 265), (14, 28), 0, 0, 360, ids["nose"], -1)
    cv2.ellipse(lab, (256, 318), (34, 8), 0, 180, 360, ids["u_lip"], -1)
    cv2.ellipse(lab, (256, 318), (34, 10), 0, 0, 180, ids["l_lip"], -1)
    rgb = np.full((S, S, 3), 255, np.uint8)
    for name, col in COLOURS.items():
        rgb[lab == ids[name]] = col
    shade = np.linspace(1.05, 0.8, S)[None, :, None]  # light from the left
    rgb = np.where((lab > 0)[..., None], np.clip(rgb * shade, 0, 255), rgb).astype(np.uint8)
    strokes = []
    for name, group in GROUPS.items():
        cs, _ = cv2.findContours((lab == ids[name]).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in cs:
            pts = c.reshape(-1, 2).astype(float) / S
            if len(pts) >= 2:
                strokes.append({"points": np.vstack([pts, pts[:1]]).round(5).tolist(), "width": 0.004, "group": group})
    for x in (0.42, 0.5, 0.58):
        strokes.append({"points": [[0.5, 0.13], [x, 0.2], [x + (x - 0.5), 0.28]], "width": 0.003, "group": "hair_flow"})
    doc = {"version": 1, "frame": "normalized", "width": S, "height": S, "strokes": strokes}
    return doc, rgb, lab


@pytest.fixture(scope="module")
def heads():
    return {"long": synthetic_head(True), "short": synthetic_head(False)}


def _ink(img: np.ndarray) -> np.ndarray:
    return np.asarray(img) < 128


def test_new_styles_are_seeded_ink_drawings_of_the_head(heads):
    from training.synhead.drawing_styles import NEW_STYLES, draw_style

    doc, rgb, lab = heads["long"]
    near_head = cv2.dilate((lab > 0).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    for name in NEW_STYLES:
        a = draw_style(name, doc, rgb, lab, np.random.default_rng(3))
        b = draw_style(name, doc, rgb, lab, np.random.default_rng(3))
        c = draw_style(name, doc, rgb, lab, np.random.default_rng(4))
        assert a.shape == (S, S) and a.dtype == np.uint8, name
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert not np.array_equal(a, c), name
        ink = _ink(a)
        assert 0.003 < ink.mean() < 0.5, (name, ink.mean())
        assert (ink & near_head).sum() >= 0.9 * ink.sum(), name  # the drawing is of the head, not elsewhere
        assert np.median(a) == 255, name  # white paper (the portrait's grey paper was cleaned by intake)


def test_hatched_fills_the_hair_and_marker_thickens_the_lines(heads):
    from backend.sketch.raster import rasterize_strokes
    from training.synhead.drawing_styles import draw_style

    doc, rgb, lab = heads["short"]
    hair = lab == LABEL_IDS["hair"]
    clean = _ink(rasterize_strokes(doc, S))
    for seed in range(3):
        hatched = _ink(draw_style("hatched", doc, rgb, lab, np.random.default_rng(seed)))
        assert hatched[hair].mean() > max(0.2, clean[hair].mean() + 0.08)  # a quarter to a half of the hair inked
        assert (hatched & ~cv2.dilate(hair.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)).sum() \
            <= 1.6 * clean.sum()  # the fill stays in the hair
        marker = _ink(draw_style("marker", doc, rgb, lab, np.random.default_rng(seed)))
        assert marker.sum() > 1.8 * clean.sum()  # (some short strokes are dropped)
        # a marker line is thick: most of its ink is 2+ px inside the ink (an eroded copy keeps it)
        assert cv2.erode(marker.astype(np.uint8), np.ones((5, 5), np.uint8)).sum() > 0.3 * marker.sum()


def test_strands_draw_long_hair_down_to_its_ends_and_short_hair_falls_back_to_hatched(heads):
    from training.synhead.drawing_styles import draw_style, has_long_hair

    doc, rgb, lab = heads["long"]
    assert has_long_hair(lab) and not has_long_hair(heads["short"][2])
    for seed in range(4):
        img = _ink(draw_style("strands", doc, rgb, lab, np.random.default_rng(seed)))
        # strands run down both sides of the hair past the chin (the hair columns end at row 430, the
        # face at 365; columns 128-192 and 320-384 are hair only, away from the face and neck outlines)
        for cols in (slice(128, 192), slice(320, 384)):
            assert img[335:356, cols].any(1).mean() > 0.9, seed
        # and nowhere else: the ink there is strands in the hair or the outlines of the jaw and neck
        drawn = np.isin(lab, [LABEL_IDS["hair"], LABEL_IDS["skin"], LABEL_IDS["neck"]]).astype(np.uint8)
        near = cv2.dilate(drawn, np.ones((15, 15), np.uint8)).astype(bool)
        assert (img[330:400] & ~near[330:400]).sum() < 0.05 * img[330:400].sum()
    sdoc, srgb, slab = heads["short"]
    np.testing.assert_array_equal(draw_style("strands", sdoc, srgb, slab, np.random.default_rng(5)),
                                  draw_style("hatched", sdoc, srgb, slab, np.random.default_rng(5)))


def test_portrait_is_what_intake_makes_of_a_grey_scan(heads, monkeypatch):
    """The portrait passes through the backend's load_sketch (the upload path): counted by a spy."""
    from backend.sketch import intake
    from training.synhead.drawing_styles import draw_style

    calls = []
    real = intake.load_sketch

    def spy(source, *a, **kw):
        calls.append(type(source))
        out = real(source, *a, **kw)
        calls.append(out.intake.get("steps"))
        return out

    monkeypatch.setattr(intake, "load_sketch", spy)
    doc, rgb, lab = heads["long"]
    img = draw_style("portrait", doc, rgb, lab, np.random.default_rng(0))
    assert calls[0] is bytes and len(calls) == 2  # the JPEG bytes, once
    assert {"flatten", "paper_white"} & set(calls[1])  # the grey paper was cleaned to white
    ink = _ink(img)
    hair = lab == LABEL_IDS["hair"]
    assert ink[hair].mean() > 5 * max(ink[lab == 0].mean(), 1e-4)  # dark hair drawn, background white


def test_registry_names_all_seven_styles_and_refuses_unknown_ones(heads):
    from training.synhead.drawing_styles import STYLE_FUNCTIONS, draw_style, style_rng

    assert set(STYLE_FUNCTIONS) == {"clean", "rough", "pencil", "portrait", "hatched", "marker", "strands"}
    doc, rgb, lab = heads["short"]
    with pytest.raises(ValueError, match="unknown sketch style"):
        draw_style("watercolour", doc, rgb, lab, np.random.default_rng(0))
    a, b = style_rng(7, "marker").random(), style_rng(7, "hatched").random()
    assert a != b and a == style_rng(7, "marker").random()


def test_new_style_prob_redraws_batches_deterministically_and_is_off_by_default(tmp_path):
    from test_training import write_fake_synhead

    from training.augment import s3d_morphology
    from training.datasets import SynHead, resize_grey
    from training.train_sketch2mask import SketchBatchBuilder, SketchToMaskRecipe

    data = SynHead(write_fake_synhead(tmp_path / "d", list(range(3, 7)), res=128), "train")
    cfg = {"internal_resolution": 64}
    plain = dict(batch=4, stroke_prob=0.0, framing_prob=0.0)
    off = SketchBatchBuilder(data, cfg, SketchToMaskRecipe(**plain), None)
    zero = SketchBatchBuilder(data, cfg, SketchToMaskRecipe(**plain, new_style_prob=0.0), None)
    on = SketchBatchBuilder(data, cfg, SketchToMaskRecipe(**plain, new_style_prob=1.0), None)
    b0 = off(np.random.default_rng(11))
    np.testing.assert_array_equal(b0["sketch"], zero(np.random.default_rng(11))["sketch"])  # default = before
    b1 = on(np.random.default_rng(11))
    b2 = pickle.loads(pickle.dumps(on))(np.random.default_rng(11))  # --workers pickle the builder
    np.testing.assert_array_equal(b1["sketch"], b2["sketch"])
    np.testing.assert_array_equal(b1["mask"], b0["mask"])  # the target is the head's own label map
    idx = np.random.default_rng(11).choice(len(data), 4, replace=False)
    for k, i in enumerate(idx):
        stored = data.sketch_item(int(i))["sketch"]
        # whatever S3D's morphology did to it, the stored sketch is not what the batch holds
        variants = [resize_grey(s3d_morphology(stored, np.random.default_rng(s)), 64) for s in range(12)]
        assert all(np.abs(b1["sketch"][k, 0] - v).mean() > 0.01 for v in variants)
    with pytest.raises(ValueError, match="unknown sketch style"):
        SketchToMaskRecipe(new_style_prob=0.5, new_styles=["portrait", "oil"])


def test_redraw_without_a_render_picks_only_styles_drawn_from_strokes(heads):
    """A sketch pack holds no rgb.png: the re-draw then never picks portrait or pencil, and with only
    those named it leaves the sketch alone."""
    from training.augment import augmented_sketch, redraw_in_style
    from training.synhead.drawing_styles import draw_style

    doc, rgb, lab = heads["short"]
    item = {"sketch": np.ones((S, S), np.float32), "mask": lab, "strokes": doc, "rgb_path": None}
    for seed in range(4):
        got = redraw_in_style(item, np.random.default_rng(seed), ["portrait", "marker"])
        rng = np.random.default_rng(seed)
        rng.integers(1)  # the pick among the one drawable name
        np.testing.assert_array_equal(got, draw_style("marker", doc, None, lab, rng).astype(np.float32) / 255)
    assert redraw_in_style(item, np.random.default_rng(0), ["portrait", "pencil"]) is None
    kw = dict(stroke_prob=0.0, framing_prob=0.0, new_style_prob=1.0, new_styles=["portrait"])
    sk, _ = augmented_sketch(item, np.random.default_rng(1), **kw)
    assert set(np.unique(sk)) <= {1.0}  # the stored (blank) sketch, morphology aside
    with pytest.raises(ValueError, match="pass rgb"):
        draw_style("portrait", doc, None, lab, np.random.default_rng(0))


class _RecordingNet:
    """Stands in for SketchToMask in evaluate_sketch2mask: records the inputs, predicts all background."""

    def __init__(self):
        self.inputs = []

    def predict_ids(self, x, mirror_average=None):
        import torch

        self.inputs.extend(x[:, 0].numpy().copy())
        return torch.zeros((x.shape[0],) + tuple(x.shape[2:]), dtype=torch.long)


def test_eval_per_style_redraws_each_head_seeded_by_its_seed_and_the_style(tmp_path):
    from test_training import write_fake_synhead

    from training.datasets import SynHead, read_rgb
    from training.eval_cli import evaluate_sketch2mask
    from training.synhead.drawing_styles import draw_style, style_rng

    data = SynHead(write_fake_synhead(tmp_path / "d", [0, 1, 2], res=128), "test")
    for style in ("marker", "portrait", "clean"):
        net = _RecordingNet()
        r = evaluate_sketch2mask(net, data, False, style=style)
        assert r["count"] == 3 and r["skipped"] == 0 and r["style"] == style and list(r["per_style_miou"]) == [style]
        for i, got in enumerate(net.inputs):
            item = data.sketch_item(i)
            rgb = (read_rgb(item["rgb_path"]) * 255 + 0.5).astype(np.uint8)
            rng = style_rng(item["seed"], style)
            rng.integers(1)  # the style pick among one name
            want = draw_style(style, item["strokes"], rgb, item["mask"], rng).astype(np.float32) / 255
            np.testing.assert_array_equal(got, want)
            assert not np.array_equal(got, item["sketch"])
    with pytest.raises(ValueError, match="unknown sketch style"):
        evaluate_sketch2mask(_RecordingNet(), data, False, style="crayon")


def test_s3d_eval_sketch_styles_reports_miou_and_class_iou_per_style(tmp_path, capsys):
    import json

    from s3d_tiny_weights import make_tiny_weights
    from test_training import write_fake_synhead

    from training.eval_cli import main as eval_main

    data = write_fake_synhead(tmp_path / "d", [0, 1, 2, 3], res=128)
    weights = make_tiny_weights(tmp_path / "w")
    names = ["clean", "rough", "pencil", "portrait", "hatched", "marker", "strands"]
    outs = []
    for k in range(2):
        out = tmp_path / f"r{k}.json"
        assert eval_main(["--data", str(data), "--weights", str(weights), "--out", str(out), "--only", "sketch2mask",
                          "--threads", "1", "--sketch-styles", ",".join(names)]) == 0
        outs.append(json.loads(out.read_text()))
        printed = capsys.readouterr()
        assert "sketch2mask per sketch style" in printed.err and all(n in printed.err for n in names)
        assert set(json.loads(printed.out)["sketch2mask_styles"]) == set(names)
    rep = outs[0]["sketch2mask"]
    assert {"clean", "augmented", "shaded", "augmented_glasses_kept", "mirror_average_other"} <= set(rep)
    assert list(rep["styles"]) == names
    for name in names:
        st = rep["styles"][name]
        assert st["count"] == 3 and 0 <= st["miou"] <= 1 and len(st["per_class_iou"]) == 19
    assert outs[0]["sketch2mask"]["styles"] == outs[1]["sketch2mask"]["styles"]  # seeded: the same numbers
    with pytest.raises(SystemExit):
        eval_main(["--data", str(data), "--weights", str(weights), "--out", str(tmp_path / "x.json"),
                   "--only", "sketch2mask", "--sketch-styles", "clean,oil"])
