"""Quick cat doodles for the cat sketch network (training/syncat/quick_drawings.py): whole-body drawings
with the head small at one end, and faces of a few marks. One SynCat cat is made here (seed 0)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("embreex")

from backend.align import canonical_content_box  # noqa: E402
from backend.labels import CAT, CELEBAMASK_HQ  # noqa: E402
from backend.sketch.raster import rasterize_strokes  # noqa: E402


@pytest.fixture(scope="module")
def cat_item(tmp_path_factory):
    from training.datasets import SynHead
    from training.syncat.writer import synthesise_cats

    out = tmp_path_factory.mktemp("syncat_quick")
    synthesise_cats(out, 1, seed=0, views=1, workers=1, progress=False)
    return SynHead(out, "test").sketch_item(0)


def _ink_box(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img < 128)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64) / img.shape[0]


def test_head_with_body_moves_the_head_and_leaves_the_body_out_of_the_mask(cat_item):
    from training.syncat.quick_drawings import head_with_body

    doc, mask = cat_item["strokes"], cat_item["mask"]
    out, new_mask = head_with_body(doc, mask, np.random.default_rng(4))
    size = mask.shape[0]
    # every class survives, the head only shrinks (the body adds no labels)
    assert set(np.unique(new_mask)) == set(np.unique(mask))
    assert 0 < (new_mask > 0).sum() < 0.5 * (mask > 0).sum()
    body = [s for s in out["strokes"] if s["group"] == "body"]
    assert body and len(out["strokes"]) == len(doc["strokes"]) + len(body)
    # the body's ink lies outside the head's labels: the outline stops where the head is drawn over it
    body_ink = rasterize_strokes({**out, "strokes": body}, size=size) < 128
    assert (body_ink & (new_mask > 0)).sum() < 0.01 * body_ink.sum()
    # the head strokes keep their pen widths
    assert [s["width"] for s in out["strokes"][:len(doc["strokes"])]] == [s["width"] for s in doc["strokes"]]
    # the whole drawing fits the canonical content box, as the inference framing's first pass puts it
    box = canonical_content_box()
    x0, y0, x1, y1 = _ink_box(rasterize_strokes(out, size=size))
    assert x1 - x0 <= box["width"] + 0.02 and y1 - y0 <= box["height"] + 0.02
    assert abs((x0 + x1) / 2 - box["center"][0]) < 0.05
    # the same seed, the same drawing
    again, again_mask = head_with_body(doc, mask, np.random.default_rng(4))
    assert again == out and np.array_equal(again_mask, new_mask)


def test_head_with_body_refuses_what_it_cannot_place(cat_item):
    from training.syncat.quick_drawings import head_with_body

    with pytest.raises(ValueError, match="normalised"):
        head_with_body({**cat_item["strokes"], "frame": "image"}, cat_item["mask"], np.random.default_rng(0))
    with pytest.raises(ValueError, match="no head"):
        head_with_body(cat_item["strokes"], np.zeros_like(cat_item["mask"]), np.random.default_rng(0))


def test_minimal_face_marks_turn_each_eye_into_one_mark_at_its_centre(cat_item):
    from training.syncat.quick_drawings import minimal_face_marks

    doc = cat_item["strokes"]
    eyes = [np.asarray(s["points"]).mean(0) for s in doc["strokes"] if s["group"] == "eye"]
    for seed in range(6):
        out = minimal_face_marks(doc, np.random.default_rng(seed))
        marks = [s for s in out["strokes"] if s["group"] == "eye"]
        assert len(marks) == len(eyes)
        for mark, centre in zip(marks, eyes):
            pts = np.asarray(mark["points"])
            assert len(pts) == 2 and np.allclose(pts.mean(0), centre, atol=0.01)
        assert not any(s["group"] == "pupil" for s in out["strokes"])
        assert len([s for s in out["strokes"] if s["group"] == "nose"]) <= 1
        # the outline and whiskers are untouched
        for group in ("outline", "whiskers"):
            assert [s for s in out["strokes"] if s["group"] == group] == [s for s in doc["strokes"]
                                                                          if s["group"] == group]


def test_augmented_sketch_draws_quick_doodles_for_cats_only(cat_item):
    from training.augment import augmented_sketch

    plain = augmented_sketch(cat_item, np.random.default_rng(2), stroke_prob=1.0, framing_prob=0.0, labels=CAT)
    body = augmented_sketch(cat_item, np.random.default_rng(2), stroke_prob=1.0, framing_prob=0.0, labels=CAT,
                            body_prob=1.0)
    assert (body[1] > 0).sum() < 0.5 * (plain[1] > 0).sum()  # the head is drawn small, the body unlabelled
    # off for the human label set: the same random numbers and drawing as without the switches
    human = augmented_sketch(cat_item, np.random.default_rng(2), stroke_prob=1.0, framing_prob=0.0,
                             labels=CELEBAMASK_HQ)
    human_on = augmented_sketch(cat_item, np.random.default_rng(2), stroke_prob=1.0, framing_prob=0.0,
                                labels=CELEBAMASK_HQ, body_prob=1.0, minimal_marks_prob=1.0)
    assert np.array_equal(human[0], human_on[0]) and np.array_equal(human[1], human_on[1])


def test_the_quick_doodle_benchmark_draws_the_same_sketches_every_run(cat_item):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quick_cat_doodles.py"
    spec = importlib.util.spec_from_file_location("quick_cat_doodles", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for protocol in bench.PROTOCOLS:
        a, b = bench.drawings(cat_item, 3, protocol), bench.drawings(cat_item, 3, protocol)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert a[0].shape == cat_item["sketch"].shape and a[0].min() < 0.5
    marks, body = bench.drawings(cat_item, 3, "marks"), bench.drawings(cat_item, 3, "body")
    assert np.array_equal(marks[1], cat_item["mask"])  # marks keep the label map
    assert (body[1] > 0).sum() < 0.5 * (cat_item["mask"] > 0).sum()  # the whole cat: the head drawn small
