"""Per-class logit offsets fitted on held-out heads (training/calibration.py)."""
import numpy as np
import pytest

from backend.labels import LABEL_NAMES, NUM_CLASSES
from training.calibration import OffsetSearchData, fit_logit_offsets
from training.metrics import confusion_matrix

MOUTH = LABEL_NAMES.index("mouth")


def _images(rng, n=4, size=32, bias=None):
    """Noisy scores whose argmax is mostly the truth; ``bias (K,)`` is added to every pixel's scores."""
    out = []
    for _ in range(n):
        labels = rng.integers(0, NUM_CLASSES, (size, size))
        scores = rng.normal(0.0, 1.0, (NUM_CLASSES, size, size)).astype(np.float32)
        np.put_along_axis(scores, labels[None], np.take_along_axis(scores, labels[None], 0) + 2.0, 0)
        if bias is not None:
            scores += np.asarray(bias, np.float32)[:, None, None]
        out.append((scores, labels))
    return out


def test_confusion_matches_a_full_argmax_for_any_offsets_in_range():
    rng = np.random.default_rng(0)
    images = _images(rng)
    data = OffsetSearchData(NUM_CLASSES, max_offset=1.0)
    for scores, labels in images:
        data.add(scores, labels)
    assert 0 < data.open_pixels < 4 * 32 * 32  # some pixels are settled, some stay open
    for offsets in (np.zeros(NUM_CLASSES), rng.uniform(-1.0, 1.0, NUM_CLASSES)):
        direct = sum(confusion_matrix((s + offsets[:, None, None]).argmax(0), t, NUM_CLASSES) for s, t in images)
        np.testing.assert_array_equal(data.confusion(offsets), direct)


def test_fit_undoes_a_known_bias_and_raises_the_miou():
    rng = np.random.default_rng(1)
    bias = np.zeros(NUM_CLASSES)
    bias[MOUTH] = 1.5  # the mouth painted too wide, as a x3-weighted cross-entropy does
    data = OffsetSearchData(NUM_CLASSES, max_offset=3.0)
    for scores, labels in _images(rng, n=8, bias=bias):
        data.add(scores, labels)
    res = fit_logit_offsets(data, groups={"mouth": ("mouth",), "eyes": ("l_eye", "r_eye")}, step=0.25)
    assert res["group_offsets"]["mouth"] == pytest.approx(-1.5, abs=0.5)
    assert abs(res["group_offsets"]["eyes"]) <= 0.5  # an unbiased pair stays near 0
    assert res["miou_after"] > res["miou_before"]
    assert res["per_class_iou_after"]["mouth"] > res["per_class_iou_before"]["mouth"]
    assert res["semantic_logit_offsets"]["mouth"] == res["group_offsets"]["mouth"]
    if res["group_offsets"]["eyes"] != 0.0:  # a pair always shares one offset
        assert res["semantic_logit_offsets"]["l_eye"] == res["semantic_logit_offsets"]["r_eye"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="max_offset"):
        OffsetSearchData(NUM_CLASSES, max_offset=0.0)
    data = OffsetSearchData(NUM_CLASSES, max_offset=1.0)
    with pytest.raises(ValueError, match="scores must be"):
        data.add(np.zeros((NUM_CLASSES, 8, 8)), np.zeros((4, 4), np.int64))
    data.add(np.zeros((NUM_CLASSES, 8, 8)), np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match="offsets must lie"):
        data.confusion(np.full(NUM_CLASSES, 2.0))
    with pytest.raises(ValueError, match="unknown label names"):
        fit_logit_offsets(data, groups={"teeth": ("teeth",)})
    with pytest.raises(ValueError, match="step"):
        fit_logit_offsets(data, step=0.0)
