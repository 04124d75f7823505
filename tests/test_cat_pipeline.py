"""Cat jobs (``subject: cat``, issue 40) through the real pipeline with tiny random seg2cat networks.

The cat networks are not trained yet; tests/s3d_tiny_weights.py writes tiny random ``*_cat_lite`` weights
(6 classes, label set seg2cat) and an analytic ellipsoid stands in for the untrained density, as in
tests/test_pipeline.py, so the real intake, framing, mesh, colour, label and export path runs.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from s3d_tiny_weights import make_tiny_weights, sphere_query

from backend.export import read_ply
from backend.labels import CAT, CELEBAMASK_HQ
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import GenerateOptions, PipelineError, generate, load_models

FAST = {"resolution": 64, "views": 4, "view_resolution": 96, "color_resolution": 64, "subject": "cat"}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """Human and cat tiny networks side by side, as a real weights folder would hold them."""
    d = tmp_path_factory.mktemp("weights")
    make_tiny_weights(d)
    return make_tiny_weights(d, subject="cat")


@pytest.fixture
def sphere_field(monkeypatch):
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))


def cat_sketch() -> np.ndarray:
    """A drawn cat face ``(480, 400)`` uint8, dark on white: head, ears, eyes, nose, mouth, whiskers."""
    import cv2

    img = np.full((480, 400), 255, np.uint8)
    cv2.ellipse(img, (200, 270), (130, 115), 0, 0, 360, 0, 3)
    for ear in ([(95, 200), (110, 90), (165, 165)], [(305, 200), (290, 90), (235, 165)]):
        cv2.polylines(img, [np.array(ear, np.int32)], True, 0, 3)
    for x in (150, 250):
        cv2.ellipse(img, (x, 245), (22, 14), 0, 0, 360, 0, 2)
    cv2.fillPoly(img, [np.array([(190, 290), (210, 290), (200, 302)], np.int32)], 0)
    cv2.line(img, (200, 302), (185, 320), 0, 2)
    cv2.line(img, (200, 302), (215, 320), 0, 2)
    for dy in (-8, 8):
        cv2.line(img, (175, 300 + dy), (90, 290 + 2 * dy), 0, 1)
        cv2.line(img, (225, 300 + dy), (310, 290 + 2 * dy), 0, 1)
    return img


def cat_mask() -> np.ndarray:
    """A seg2cat label map ``(400, 400)`` uint8: face, two ears, two eyes, mouth, whiskers."""
    import cv2

    m = np.zeros((400, 400), np.uint8)
    cv2.ellipse(m, (200, 230), (120, 105), 0, 0, 360, int(CAT.ids["face"]), -1)
    for ear in ([(90, 170), (105, 60), (160, 140)], [(310, 170), (295, 60), (240, 140)]):
        cv2.fillPoly(m, [np.array(ear, np.int32)], int(CAT.ids["ear"]))
    for x in (150, 250):
        cv2.ellipse(m, (x, 210), (20, 13), 0, 0, 360, int(CAT.ids["eyes"]), -1)
    cv2.ellipse(m, (200, 280), (22, 10), 0, 0, 360, int(CAT.ids["mouth"]), -1)
    cv2.line(m, (170, 265), (100, 255), int(CAT.ids["whiskers"]), 3)
    cv2.line(m, (230, 265), (300, 255), int(CAT.ids["whiskers"]), 3)
    return m


def _check_cat_job(out, result):
    """Labels < 6 in the mesh, cat class names, subject and label set recorded, cat palette in mask_color."""
    assert result["subject"] == "cat" and result["label_set"] == "seg2cat"
    assert result["options"]["subject"] == "cat"
    assert set(result["class_vertex_counts"]) <= set(CAT.names) - {"background"}
    assert result["class_vertex_counts"]
    ply = read_ply((out / "mesh.ply").read_bytes())
    assert int(ply["label"].max()) < CAT.num_classes and int(ply["label"].min()) >= 1
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["subject"] == "cat" and on_disk["class_vertex_counts"] == result["class_vertex_counts"]
    ids = np.asarray(Image.open(out / "mask.png"))
    colour = np.asarray(Image.open(out / "mask_color.png"))
    assert ids.max() < CAT.num_classes
    assert np.array_equal(colour, CAT.palette[ids])  # seg2cat palette: background white


def test_cat_sketch_job_writes_a_cat_labelled_head(weights_dir, sphere_field, tmp_path):
    src = tmp_path / "cat.png"
    Image.fromarray(cat_sketch()).save(src)
    out = tmp_path / "job"
    result = generate(src, out, GenerateOptions(seed=1, **FAST), weights_dir=weights_dir, device="cpu")
    _check_cat_job(out, result)
    # the cat landmark / head-box pass ran (backend/align_landmarks.py LANDMARK_REFRAMING["seg2cat"]; the
    # tiny random weights' first mask gives a head box)
    assert result["framing"]["method"] in ("landmarks", "head_box")
    assert all(w["code"] not in ("paper_read_as_hair", "hair_covers_picture") for w in result["warnings"])


def test_cat_label_map_job_reads_seg2cat_ids_and_palette(weights_dir, sphere_field, tmp_path):
    mask = cat_mask()
    ids_png, colour_png = tmp_path / "ids.png", tmp_path / "colour.png"
    Image.fromarray(mask).save(ids_png)
    Image.fromarray(CAT.palette[mask]).save(colour_png)
    results = []
    for i, src in enumerate((ids_png, colour_png)):
        out = tmp_path / f"job{i}"
        results.append(generate(src, out, GenerateOptions(from_mask=True, **FAST), weights_dir=weights_dir,
                                device="cpu"))
        _check_cat_job(out, results[-1])
        assert np.array_equal(np.asarray(Image.open(out / "mask.png")), mask)  # the palette map reads as the ids
    assert results[0]["vertex_count"] == results[1]["vertex_count"]
    # the same palette map is not a human map: seg2cat's white background is far from every CelebAMask-HQ colour
    with pytest.raises(PipelineError) as e:
        generate(colour_png, tmp_path / "human", GenerateOptions(from_mask=True, resolution=64),
                 weights_dir=weights_dir, device="cpu")
    assert e.value.code == "mask_colors_unknown"
    # ids beyond the cat set are refused with the set's range
    bad = mask.copy()
    bad[0, 0] = 7
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(PipelineError) as e:
        generate(tmp_path / "bad.png", tmp_path / "bad", GenerateOptions(from_mask=True, **FAST),
                 weights_dir=weights_dir, device="cpu")
    assert e.value.code == "mask_id_out_of_range" and "0-5" in str(e.value)


def test_missing_cat_weights_say_where_to_get_them(tmp_path):
    human_only = make_tiny_weights(tmp_path / "w")
    with pytest.raises(PipelineError) as e:
        load_models(human_only, "cpu", subject="cat")
    assert e.value.code == "weights_missing"
    assert "bundled weights/" in str(e.value) and "docs/models.md" in str(e.value)
    assert "mask2triplane_cat_lite" in str(e.value)
    with pytest.raises(PipelineError) as e:
        generate(np.full((300, 300), 255, np.uint8), tmp_path / "job", GenerateOptions(**FAST),
                 weights_dir=human_only, device="cpu")
    assert e.value.code == "weights_missing" and not (tmp_path / "job").exists()


def test_subject_option_is_validated_and_colours_are_refused_for_cats():
    assert GenerateOptions.from_dict({"subject": "cat"}).subject == "cat"
    assert GenerateOptions().subject == "human"
    for bad in ("dog", "", None, 1):
        with pytest.raises(PipelineError) as e:
            GenerateOptions(subject=bad).validate()
        assert e.value.code == "bad_option" and "subject" in str(e.value)
    with pytest.raises(PipelineError) as e:
        GenerateOptions.from_dict({"subject": "cat", "colors": {"hair": "#112233"}})
    assert e.value.code == "bad_option" and "cats" in str(e.value)
    GenerateOptions.from_dict({"subject": "human", "colors": {"hair": "#112233"}})  # humans keep their picks


def test_bundles_load_by_subject_with_their_label_sets(weights_dir):
    human, cat = load_models(weights_dir, "cpu"), load_models(weights_dir, "cpu", subject="cat")
    assert (human.subject, human.labels) == ("human", CELEBAMASK_HQ)
    assert (cat.subject, cat.labels) == ("cat", CAT)
    assert cat.mask2triplane.num_classes == 6 and sorted(cat.cards) == ["mask2triplane_cat_lite",
                                                                      "sketch2mask_cat_lite"]


def test_a_human_bundle_given_to_a_cat_job_loads_the_cat_networks(weights_dir, sphere_field, tmp_path):
    human = load_models(weights_dir, "cpu")
    result = generate(cat_sketch(), tmp_path / "job", GenerateOptions(**FAST), models=human)
    assert result["label_set"] == "seg2cat" and "mask2triplane_cat_lite" in result["weights"]


def test_cat_plausibility_and_framing_use_the_cat_classes():
    from backend.align import apply_to_image, frame_mask, framing_transform, refine_with_landmarks
    from backend.mask_plausibility import check_mask

    mask = cat_mask()
    assert check_mask(mask, labels=CAT).warnings == []  # the face class is the cat's face, not human skin
    assert [w["code"] for w in check_mask(np.zeros_like(mask), labels=CAT).warnings] == ["no_face"]
    assert "hair_fraction" not in check_mask(mask, labels=CAT).measures  # cats have no hair class
    framed, t = frame_mask(mask, 512, labels=CAT)
    assert t.method == "landmarks" and framed.max() < 6  # the cat eyes and mouth place it
    first = framing_transform(mask > 0, 512)
    refined = refine_with_landmarks(first, apply_to_image(mask, first, fill=0, nearest=True), labels=CAT)
    assert refined is not None and refined.method == "landmarks"


def test_cli_and_batch_take_subject_cat(weights_dir, sphere_field, tmp_path, capsys):
    from backend.cli import main

    Image.fromarray(cat_sketch()).save(tmp_path / "cat.png")
    out = tmp_path / "cli"
    assert main(["generate", str(tmp_path / "cat.png"), "--out", str(out), "--weights", str(weights_dir),
                 "--resolution", "64", "--views", "4", "--subject", "cat", "--quiet"]) == 0
    assert json.loads((out / "result.json").read_text())["label_set"] == "seg2cat"
    with pytest.raises(SystemExit) as e:
        main(["generate", str(tmp_path / "cat.png"), "--out", str(out), "--subject", "cat", "--hair-color", "#112233"])
    assert e.value.code == 2 and "bad_option" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    Image.fromarray(cat_sketch()).save(tmp_path / "in" / "a.png")
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "b"), "--weights", str(weights_dir), "--workers", "1",
                 "--resolution", "64", "--views", "4", "--subject", "cat", "--quiet"]) == 0
    assert json.loads((tmp_path / "b" / "a" / "result.json").read_text())["subject"] == "cat"


def test_bundled_cat_example_generates_with_subject_cat(weights_dir, sphere_field, tmp_path):
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "cat_front.json"
    result = generate(example, tmp_path / "job", GenerateOptions(**FAST), weights_dir=weights_dir, device="cpu")
    assert result["input"]["kind"] == "strokes" and result["subject"] == "cat"
    assert set(result["class_vertex_counts"]) <= set(CAT.names)


def _wait_job(app, job, timeout=120.0):
    import time

    t0 = time.time()
    while job.state not in ("done", "failed", "cancelled"):
        assert time.time() - t0 < timeout, f"job still {job.state}"
        time.sleep(0.05)
    return job


def test_server_caches_models_by_subject_and_fails_cat_jobs_without_cat_weights(weights_dir, sphere_field,
                                                                               tmp_path):
    import base64
    import io

    from backend.server_jobs import JobServer

    buf = io.BytesIO()
    Image.fromarray(CAT.palette[cat_mask()]).save(buf, format="PNG")
    body = {"input": {"kind": "mask_png", "data": base64.b64encode(buf.getvalue()).decode("ascii")},
            "options": dict(FAST)}
    app = JobServer(load_models(weights_dir, "cpu"), "t" * 20, tmp_path / "jobs")
    try:
        job = _wait_job(app, app.create(body))
        assert job.state == "done", job.error
        assert job.result["label_set"] == "seg2cat" and job.result["options"]["subject"] == "cat"
        assert sorted(app.models_by_subject) == ["cat", "human"]
        assert app.models_by_subject["human"] is app.models  # the start bundle stays the human one
    finally:
        app.shutdown()
    human_only = make_tiny_weights(tmp_path / "human_only")
    app = JobServer(load_models(human_only, "cpu"), "t" * 20, tmp_path / "jobs2")
    try:
        job = _wait_job(app, app.create(body))
        assert job.state == "failed" and job.error["code"] == "weights_missing"
        assert "bundled weights/" in job.error["message"]
    finally:
        app.shutdown()


def test_batch_resume_reads_results_from_before_the_subject_option_as_human(tmp_path):
    import dataclasses

    from backend.batch import finished_result
    from backend.result_record import input_sha256

    src = tmp_path / "a.png"
    Image.fromarray(cat_sketch()).save(src)
    dest = tmp_path / "out"
    dest.mkdir()
    human = dataclasses.asdict(GenerateOptions().validate())
    old = {k: (list(v) if isinstance(v, tuple) else v) for k, v in human.items() if k != "subject"}
    (dest / "result.json").write_text(json.dumps({"sketch_sha256": input_sha256(src), "options": old}))
    assert finished_result(src, dest, human)  # an old human result is finished for a human batch ...
    assert not finished_result(src, dest, dataclasses.asdict(GenerateOptions(subject="cat").validate()))  # not cat
