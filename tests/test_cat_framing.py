"""The second (landmark / head-box) framing pass for cats (seg2cat): the canonical cat places measured on
SynCat masks, the cat landmark classes, the per-set switch, and the human values left as they were."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.align import apply_to_image, frame_mask, framing_transform, refine_with_landmarks
from backend.align_landmarks import (CANONICAL_DEFAULTS, LANDMARK_CLASSES, LANDMARK_REFRAMING, canonical_framing_path,
                                     canonical_head_box, canonical_landmarks, mask_head_box, mask_landmarks)
from backend.labels import CAT, CELEBAMASK_HQ

FACE, EAR, MOUTH, EYES, WHISKERS = (CAT.ids[n] for n in ("face", "ear", "mouth", "eyes", "whiskers"))


def drawn_cat(h: int = 520, w: int = 440, mouth_y: int = 300) -> np.ndarray:
    """A seg2cat label map ``(h, w)`` uint8: an ellipse face with a neck down to the page edge, two ears
    (tips at row 70), eyes centred at (220, 220), a mouth blob centred at (220, ``mouth_y``) and two
    whisker pads beside and under it (bottom row 329)."""
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (220, 240), (130, 115), 0, 0, 360, FACE, -1)
    m[300:, 140:301] = FACE  # neck and chest, which SynCat labels face fur too
    for ear in ([(100, 180), (115, 70), (175, 150)], [(340, 180), (325, 70), (265, 150)]):
        cv2.fillPoly(m, [np.array(ear, np.int32)], EAR)
    for x in (170, 270):
        cv2.ellipse(m, (x, 220), (22, 14), 0, 0, 360, EYES, -1)
    for x in (195, 245):
        cv2.ellipse(m, (x, 310), (26, 19), 0, 0, 360, WHISKERS, -1)
    cv2.ellipse(m, (220, mouth_y), (14, 9), 0, 0, 360, MOUTH, -1)
    return m


def test_cat_canonical_values_are_in_range_and_the_file_matches_the_defaults():
    lm, box = canonical_landmarks(labels=CAT), canonical_head_box(CAT)
    assert lm["source"] == "canonical_framing_seg2cat.json"  # the measured file, not the fallback
    assert abs(lm["eye_center"][0] - 0.5) < 0.02 and 0.40 < lm["eye_center"][1] < 0.52
    assert 0.12 < lm["eye_mouth_distance"] < 0.19
    assert 0.05 < box["top"] < 0.2 and 0.6 < box["chin"] < 0.8 and abs(box["center_x"] - 0.5) < 0.02
    # the measured cat places differ from the human ones (cat eyes sit lower: ear tips where the crown is)
    assert lm["eye_center"][1] - canonical_landmarks()["eye_center"][1] > 0.05
    data = json.loads(canonical_framing_path(CAT).read_text())
    assert data["label_set"] == "seg2cat" and data["landmarks_n"] >= 2000 and data["head_box_n"] >= 2000
    assert "train-split" in data["source"]  # measured without the test seeds
    default_lm, default_box = CANONICAL_DEFAULTS[CAT.name]
    assert abs(default_lm["eye_center"][1] - lm["eye_center"][1]) < 0.002
    assert abs(default_lm["eye_mouth_distance"] - lm["eye_mouth_distance"]) < 0.002
    assert all(abs(default_box[k] - box[k]) < 0.002 for k in ("top", "chin", "center_x"))


def test_human_canonical_values_and_classes_are_unchanged():
    assert canonical_landmarks() == {"eye_center": [0.5011, 0.379], "eye_mouth_distance": 0.1538,
                                     "source": "canonical_framing.json"}
    assert canonical_landmarks(labels=CELEBAMASK_HQ) == canonical_landmarks()
    assert canonical_head_box() == {"top": 0.113, "chin": 0.684, "center_x": 0.5}
    assert CANONICAL_DEFAULTS[CELEBAMASK_HQ.name] == (
        {"eye_center": [0.5, 0.380], "eye_mouth_distance": 0.153,
         "source": "defaults in backend/align.py (300 SynHead v1 masks)"},
        {"top": 0.113, "chin": 0.684, "center_x": 0.5})
    assert LANDMARK_CLASSES[CELEBAMASK_HQ.name] == {"eye": (4, 5), "mouth": (10, 11, 12), "head": tuple(range(1, 16)),
                                                    "face": (1, 2, 4, 5, 6, 7, 10, 11, 12)}
    assert LANDMARK_REFRAMING[CELEBAMASK_HQ.name] is True


def test_mask_landmarks_and_head_box_on_a_drawn_cat():
    m = drawn_cat()
    lm = mask_landmarks(m, CAT)
    assert lm is not None
    assert np.allclose(lm["eye"], [220, 220], atol=0.5) and np.allclose(lm["mouth"], [220, 300], atol=0.5)
    box = mask_head_box(m, CAT)
    # top: the ear tips; "chin": the bottom of the whisker pads (row 329), not the neck at the page edge
    assert box["top"] == 69.5 and box["chin"] == 329.5 and abs(box["center_x"] - 220) < 0.5
    # the human classes read nothing in a cat map, the cat classes nothing in a human one
    assert mask_landmarks(m) is None
    # implausible or missing: the mouth above the eyes, no eyes, a too small mouth
    assert mask_landmarks(drawn_cat(mouth_y=150), CAT) is None
    assert mask_landmarks(np.where(m == EYES, FACE, m).astype(np.uint8), CAT) is None
    tiny = np.where(m == MOUTH, WHISKERS, m).astype(np.uint8)
    tiny[300, 220] = MOUTH
    assert mask_landmarks(tiny, CAT) is None


def _framed_eye_error(framed: np.ndarray) -> tuple[np.ndarray, float]:
    """Eye centroid offset from the cat canonical place (pixels at 512) and eye-mouth distance error."""
    canon = canonical_landmarks(labels=CAT)
    got = mask_landmarks(framed, CAT)
    err = np.asarray(got["eye"]) - (np.asarray(canon["eye_center"]) * 512 - 0.5)
    dist = float(np.linalg.norm(np.subtract(got["mouth"], got["eye"])))
    return err, dist - canon["eye_mouth_distance"] * 512


def test_reframing_puts_a_cat_mask_s_eyes_on_the_cat_canonical_place():
    m = drawn_cat()
    framed, t = frame_mask(m, 512, labels=CAT)  # label-map input
    assert t.method == "landmarks"
    err, derr = _framed_eye_error(framed)
    assert np.all(np.abs(err) < 1.5) and abs(derr) < 2.0
    # the second pass of a sketch job: from a first, content-box framing (which puts the eyes elsewhere)
    first = framing_transform(m > 0, 512)
    f1 = apply_to_image(m, first, fill=0, nearest=True)
    assert np.abs(_framed_eye_error(f1)[0]).max() > 10
    refined = refine_with_landmarks(first, f1, labels=CAT)
    assert refined is not None and refined.method == "landmarks"
    err, derr = _framed_eye_error(apply_to_image(m, refined, fill=0, nearest=True))
    assert np.all(np.abs(err) < 1.5) and abs(derr) < 2.0
    # far from where the human canonical eye centre would have put them
    human_y = canonical_landmarks()["eye_center"][1] * 512 - 0.5
    assert abs(mask_landmarks(framed, CAT)["eye"][1] - human_y) > 30


def test_cat_head_box_fallback_when_the_eyes_are_missing():
    m = drawn_cat()
    m = np.where(m == EYES, FACE, m).astype(np.uint8)
    first = framing_transform(m > 0, 512)
    refined = refine_with_landmarks(first, apply_to_image(m, first, fill=0, nearest=True), labels=CAT)
    assert refined is not None and refined.method == "head_box"
    got, c = mask_head_box(apply_to_image(m, refined, fill=0, nearest=True), CAT), canonical_head_box(CAT)
    assert abs(got["top"] - (c["top"] * 512 - 0.5)) < 1.5 and abs(got["chin"] - (c["chin"] * 512 - 0.5)) < 1.5
    assert abs(got["center_x"] - (c["center_x"] * 512 - 0.5)) < 1.5


def test_the_cat_switch_turns_the_second_pass_off_for_cats_only(monkeypatch):
    monkeypatch.setitem(LANDMARK_REFRAMING, CAT.name, False)
    m = drawn_cat()
    framed, t = frame_mask(m, 512, labels=CAT)
    assert t.method == "content_box"
    assert refine_with_landmarks(t, framed, labels=CAT) is None
    human = np.zeros((400, 300), np.uint8)
    human[60:380, 60:240] = 1
    human[150:165, 100:125] = 4
    human[150:165, 175:200] = 5
    human[240:250, 125:175] = 11
    assert frame_mask(human, 512)[1].method == "landmarks"


def _write_sample(root, seed: int, mask: np.ndarray) -> dict:
    folder = root / f"s{seed:06d}"
    folder.mkdir()
    Image.fromarray(mask).save(folder / "mask.png")
    entry = {"id": folder.name, "seed": seed, "split": "test" if seed < 200 else "train", "generator": "syncat",
             "generator_version": "0.1.0", "label_set": "seg2cat", "mask": f"{folder.name}/mask.png",
             "content_box": [0.1, 0.1, 0.9, 0.9]}
    (folder / "sample.json").write_text(json.dumps(entry))
    return entry


def test_framing_command_measures_cat_masks_of_the_train_split(tmp_path):
    from training.data_cli import main

    cat = np.zeros((512, 512), np.uint8)
    cat[:520, :440] = drawn_cat(512, 440)
    _write_sample(tmp_path, 300, cat)
    _write_sample(tmp_path, 5, np.roll(cat, 60, axis=0))  # a test-split seed: must not count
    out = tmp_path / "framing.json"
    assert main(["framing", str(tmp_path), "--split", "train", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["label_set"] == "seg2cat" and data["n"] == 1 and data["landmarks_n"] == 1
    # pixel centres -> normalised: (p + 0.5) / 512, rounded to 4 decimals
    lm, box = mask_landmarks(cat, CAT), mask_head_box(cat, CAT)
    assert np.allclose(data["eye_center"], (np.asarray(lm["eye"]) + 0.5) / 512, atol=6e-5)
    assert abs(data["eye_mouth_distance"] - np.linalg.norm(np.subtract(lm["mouth"], lm["eye"])) / 512) < 6e-5
    assert data["head_box"] == {k: pytest.approx((box[k] + 0.5) / 512, abs=6e-5) for k in box}
    assert data["head_box"]["top"] == round(70 / 512, 4) and data["head_box"]["chin"] == round(330 / 512, 4)
    assert main(["framing", str(tmp_path), "--split", "all", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["landmarks_n"] == 2


class _SmallHeadNet:
    """A stand-in cat sketch network whose every prediction is ``mask`` (512, 512) seg2cat ids; records its
    calls."""

    def __init__(self, mask: np.ndarray):
        import torch

        self.mask, self.calls = torch.from_numpy(mask), []

    def predict_ids(self, x, mirror_average=None):
        self.calls.append(mirror_average)
        return self.mask[None].clone()


def _whole_body_drawing() -> tuple[np.ndarray, np.ndarray]:
    """``(drawing (300, 600) uint8, first-pass mask (512, 512) ids)``: a long body outline with a head at its
    left end, and the mask a network trained on whole-body drawings gives: the head alone, small."""
    from backend.align import frame_sketch

    img = np.full((300, 600), 255, np.uint8)
    cv2.rectangle(img, (40, 120), (560, 260), 0, 3)  # the body (and the head's outline, at the left)
    first, t = frame_sketch(img, 512)
    head = cv2.resize(drawn_cat(), (110, 130), interpolation=cv2.INTER_NEAREST)
    mask = np.zeros((512, 512), np.uint8)
    y0, x0 = int(t.matrix[1][2] + t.scale * 100), int(t.matrix[0][2] + t.scale * 40)
    mask[y0:y0 + 130, x0:x0 + 110] = head
    return img, mask


def test_a_whole_body_drawing_is_framed_to_the_head_from_the_first_mask():
    from backend.align import frame_sketch
    from backend.whole_body_framing import MAX_HEAD_SHARE, head_share, reframe_head_mask
    from backend.stages import predict_mask_with_refined_framing

    img, mask = _whole_body_drawing()
    first, t = frame_sketch(img, 512)
    assert head_share(t, mask) < MAX_HEAD_SHARE
    framed, head_t = reframe_head_mask(t, mask, CAT)
    assert head_t.method == "head_mask" and head_t.scale > 2 * t.scale
    # the head now fills the frame as a head drawing's does: the eyes on the cat's canonical place
    err, _ = _framed_eye_error(framed)
    assert np.all(np.abs(err) < 3.0)
    # the transform maps the input to the framed mask: the input's head box lands in the frame
    hx0, hy0, hx1, hy1 = head_t.landmarks["head_box"]
    s, tx, ty = head_t.scale, head_t.matrix[0][2], head_t.matrix[1][2]
    ys, xs = np.nonzero(framed > 0)
    assert abs((s * hx0 + tx) - xs.min()) < 0.05 * 512 and abs((s * hx1 + tx) - xs.max()) < 0.05 * 512
    # the product's sketch -> mask step: one prediction, the mask resampled, not predicted again
    net = _SmallHeadNet(mask)
    sketch, ids, used = predict_mask_with_refined_framing(net, img, first, t, "cpu", True, labels=CAT)
    assert net.calls == [True] and used.method == "head_mask" and np.array_equal(ids, framed)
    assert sketch.shape == (512, 512)


def test_head_mask_reframing_leaves_heads_people_and_unframed_inputs_alone(monkeypatch):
    from backend.align import frame_sketch, framing_transform
    from backend.whole_body_framing import HEAD_MASK_REFRAMING, reframe_head_mask

    head = drawn_cat()
    t = framing_transform(head > 0, 512)
    assert reframe_head_mask(t, apply_to_image(head, t, fill=0, nearest=True), CAT) is None  # a head drawing
    img, mask = _whole_body_drawing()
    _, t = frame_sketch(img, 512)
    assert reframe_head_mask(t, mask, CELEBAMASK_HQ) is None  # off for people (neck and cloth classes)
    _, unframed = frame_sketch(img, 512, auto_frame=False)
    assert reframe_head_mask(unframed, mask, CAT) is None  # --no-frame: the user's framing is kept
    monkeypatch.setitem(HEAD_MASK_REFRAMING, CAT.name, False)
    assert reframe_head_mask(t, mask, CAT) is None
