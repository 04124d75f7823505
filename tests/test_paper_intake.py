"""Drawings on paper (issue 37): the paper clean-up on synthetic scans the test builds itself, and the
mask plausibility warnings. No file from outside the repository is read."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.labels import LABEL_IDS
from backend.mask_plausibility import check_mask
from backend.sketch.intake import load_sketch
from backend.sketch.paper import clean_paper, debug_strip
from backend.sketch.raster import rasterize_strokes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HAIR, SKIN = LABEL_IDS["hair"], LABEL_IDS["skin"]


def make_scan(width: int, height: int, seed: int = 0, tilt_deg: float = 2.0, quality: int = 70,
              label: str = "No. 37  5.12.26") -> tuple[bytes, np.ndarray, np.ndarray]:
    """A SynHead-style line drawing (examples/head_front.json through the project's rasteriser) printed
    in graphite grey onto generated paper: grey tint, grain, vignette, a light gradient, a handwritten-
    looking label in the top margin, tilted on a dark scanner bed, JPEG-compressed.

    Returns:
        ``(JPEG bytes, the clean drawing in the scan's frame (H, W) uint8, the label's pixels (H, W) bool)``.
    """
    rng = np.random.default_rng(seed)
    doc = json.loads((EXAMPLES / "head_front.json").read_text())
    side = int(min(width, height * 0.85))
    drawing = rasterize_strokes(doc, size=side, default_width_px=max(1.0, side / 256))
    clean = np.full((height, width), 255, np.uint8)
    y0, x0 = height - side, (width - side) // 2  # the head at the bottom, the label in the top margin
    clean[y0:y0 + side, x0:x0 + side] = drawing
    ink = 1.0 - clean / 255.0
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    paper = 0.84 * (1.0 - 0.12 * r2) * (1.0 + 0.04 * (xx / width - 0.5))
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), max(0.6, width / 800))
    paper = paper + 0.035 * grain / max(float(grain.std()), 1e-6)
    scan = paper * (1.0 - 0.8 * ink)  # graphite: dark grey, not black
    lab = np.full((height, width), 255, np.uint8)
    cv2.putText(lab, label, (int(width * 0.08), int(height * 0.07)), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, width / 900, 0,
                max(1, round(width / 400)), cv2.LINE_AA)
    scan = scan * (1.0 - 0.7 * (1.0 - lab / 255.0))
    m = cv2.getRotationMatrix2D((width / 2, height / 2), tilt_deg, 1.0)
    scan = cv2.warpAffine(scan.astype(np.float32), m, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.22)
    truth = cv2.warpAffine(clean, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=255)
    label_px = cv2.warpAffine((lab < 200).astype(np.uint8), m, (width, height), flags=cv2.INTER_NEAREST) > 0
    buf = io.BytesIO()
    Image.fromarray(np.clip(scan * 255, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), truth, label_px


def scan_scores(image: np.ndarray, truth: np.ndarray, label_px: np.ndarray) -> dict:
    """How a normalised sketch compares with the clean drawing: ink IoU, ink precision / recall within a
    small tolerance, the white fraction of paper far from any line, the ink left on the label."""
    h, w = truth.shape
    gt, ink = truth < 128, image < 128
    k = max(1, round(min(w, h) / 300))
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    near_gt = cv2.dilate(gt.astype(np.uint8), ker, iterations=2) > 0
    near_ink = cv2.dilate(ink.astype(np.uint8), ker, iterations=2) > 0
    far = cv2.distanceTransform((~gt).astype(np.uint8), cv2.DIST_L2, 3) > 3 * k
    far &= ~cv2.dilate(label_px.astype(np.uint8), ker, iterations=3).astype(bool)
    return {"iou": float((ink & gt).sum() / max((ink | gt).sum(), 1)),
            "precision": float((ink & near_gt).sum() / max(ink.sum(), 1)),
            "recall": float((gt & near_ink).sum() / max(gt.sum(), 1)),
            "paper_white": float((image[far] == 255).mean()),
            "label_ink": float((ink & label_px).sum() / max(label_px.sum(), 1))}


@pytest.mark.parametrize("size", [(600, 800), (1000, 700), (150, 200), (150, 150)],
                         ids=["portrait", "landscape", "small-portrait", "small-square"])
def test_scan_paper_becomes_white_label_goes_drawing_stays(size):
    data, truth, label_px = make_scan(*size)
    new = scan_scores(load_sketch(data).image, truth, label_px)
    old = scan_scores(load_sketch(data, clean=False).image, truth, label_px)
    # without the clean-up the scan fails each criterion (the test can fail) ...
    assert old["paper_white"] < 0.85 and old["label_ink"] > 0.4 and old["precision"] < 0.7
    # ... with it the paper is white, the label gone, the drawing kept
    assert new["paper_white"] > 0.995, new
    assert new["label_ink"] < 0.02, new
    assert new["precision"] > 0.97 and new["recall"] > 0.95, new
    assert new["iou"] > (0.8 if min(size) >= 300 else 0.65), new


def test_large_scan_4000_px():
    data, truth, label_px = make_scan(3000, 4000, seed=1, tilt_deg=-1.5, quality=60)
    sk = load_sketch(data)
    assert sk.image.shape == (4000, 3000)  # the input's frame is kept
    s = scan_scores(sk.image, truth, label_px)
    assert s["paper_white"] > 0.995 and s["label_ink"] < 0.02 and s["iou"] > 0.85, s
    assert {"flatten", "scanner_edges", "denoise", "margin_marks"} <= set(sk.intake["steps"])


def test_intake_record_and_debug_strip():
    data, _, _ = make_scan(600, 800)
    sk = load_sketch(data, keep_stages=True)
    rec = sk.intake
    json.dumps(rec)  # result.json-ready
    assert rec["kind"] == "image" and rec["size"] == [600, 800]
    assert rec["flatten"]["applied"] and rec["flatten"]["paper_level"] < 0.9  # the grey paper was measured
    assert rec["scanner_edges"]["bed_groups"] >= 2  # tilted on the scanner bed: dark wedges along the edges
    assert rec["margin_marks"]["removed_groups"] >= 1
    names = [n for n, _ in sk.stages]
    assert names == ["input", "flatten", "scanner_edges", "denoise", "tonal", "paper_white", "margin_marks",
                     "normalised"]
    strip = debug_strip(sk.stages, tile=64)
    assert strip.dtype == np.uint8 and strip.shape == (64 + 18, 64 * len(names))


@pytest.mark.parametrize("name", ["head_front.png", "head_long_hair.png"])
def test_clean_line_drawings_are_untouched(name):
    new = load_sketch(EXAMPLES / name)
    old = load_sketch(EXAMPLES / name, clean=False)
    assert new.intake["steps"] == []
    np.testing.assert_array_equal(new.image, old.image)


def test_stroke_documents_skip_the_paper_clean_up():
    sk = load_sketch(EXAMPLES / "head_front.json")
    assert sk.kind == "strokes" and sk.intake["steps"] == []


def test_tonal_shading_is_lifted_but_dark_strokes_stay():
    g = np.full((400, 400), 0.97)
    g[100:300, 100:300] = 0.6  # a flat light-grey shaded area (a quarter of the picture)
    cv2.line(g, (50, 50), (350, 350), 0.1, 3)  # a dark stroke across it
    cv2.circle(g, (200, 120), 30, 0.15, -1)  # a solid dark mass
    r = clean_paper(g)
    assert r.info["tonal"]["applied"]
    assert r.grey[150:170, 250:280].min() > 0.95  # the flat shading became paper
    assert r.grey[200, 200] < 0.3  # the stroke is still dark
    assert r.grey[120, 200] < 0.3  # so is the middle of the dark mass


def test_dark_hair_cropped_by_the_edge_is_not_a_scanner_bed():
    g = np.full((500, 400), 0.95)
    cv2.ellipse(g, (200, 40), (150, 140), 0, 0, 360, 0.12, -1)  # solid dark hair running off the top edge
    cv2.ellipse(g, (200, 250), (100, 140), 0, 0, 360, 0.1, 3)
    r = clean_paper(g)
    assert not r.info["scanner_edges"]["applied"]
    assert r.grey[0:10, 150:250].max() < 0.3  # the hair at the edge stays dark
    bed = g.copy()
    bed[:, :12] = 0.2  # a scanner-bed strip down the left edge is still removed
    r = clean_paper(bed)
    assert r.info["scanner_edges"]["bed_groups"] == 1 and r.grey[:, :12].min() > 0.9
    assert r.grey[0:10, 150:250].max() < 0.3


def test_clean_paper_rejects_bad_shapes():
    with pytest.raises(ValueError):
        clean_paper(np.zeros((4, 4, 3)))


# ---------------------------------------------------------------------------------------------------------
# Mask plausibility
# ---------------------------------------------------------------------------------------------------------
def head_mask(h: int = 512, w: int = 512, hair_everywhere: bool = False) -> np.ndarray:
    """A head-like label map: skin oval in the middle, hair cap above it (or hair over the whole paper)."""
    m = np.full((h, w), HAIR if hair_everywhere else 0, np.uint8)
    if not hair_everywhere:
        cv2.ellipse(m, (w // 2, int(h * 0.42)), (int(w * 0.24), int(h * 0.3)), 0, 0, 360, HAIR, -1)
    cv2.ellipse(m, (w // 2, int(h * 0.5)), (int(w * 0.18), int(h * 0.25)), 0, 0, 360, SKIN, -1)
    cv2.ellipse(m, (w // 2, int(h * 0.45)), (int(w * 0.03), int(h * 0.06)), 0, 0, 360, LABEL_IDS["nose"], -1)
    return m


def test_plausible_head_mask_has_no_warning():
    c = check_mask(head_mask())
    assert c.warnings == [] and c.measures["face_regions"] == 1


def test_paper_read_as_hair_fires():
    m = head_mask(582, 414, hair_everywhere=True)
    sketch = np.full(m.shape, 255, np.uint8)
    cv2.ellipse(sketch, (207, 291), (75, 145), 0, 0, 360, 0, 2)  # only the face is drawn: the rest is blank paper
    for c in (check_mask(m), check_mask(m, sketch)):
        assert c.codes[:2] == ["paper_read_as_hair", "hair_covers_picture"], c.codes
        msg = c.warnings[0]["message"]
        assert "paper" in msg and "crop closer" in msg
    assert check_mask(m, sketch).measures["hair_over_blank_paper"] > 0.5


def test_dense_hair_drawn_to_the_edges_is_not_paper():
    m = head_mask(hair_everywhere=True)
    sketch = np.full(m.shape, 255, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(400):  # scribbled hair all over the picture
        p, q = rng.integers(0, 512, 2), rng.integers(0, 512, 2)
        cv2.line(sketch, tuple(map(int, p)), tuple(map(int, q)), 0, 2)
    assert "paper_read_as_hair" in check_mask(m).codes  # the mask alone cannot tell ...
    assert check_mask(m, sketch).codes == []  # ... the sketch shows the hair is drawn there


def test_no_face_tiny_face_off_centre_split_face():
    assert check_mask(np.zeros((256, 256), np.uint8)).codes == ["no_face"]
    tiny = np.zeros((512, 512), np.uint8)
    cv2.circle(tiny, (256, 256), 12, SKIN, -1)
    assert check_mask(tiny).codes == ["face_tiny"]
    off = np.zeros((512, 512), np.uint8)
    cv2.ellipse(off, (60, 400), (40, 70), 0, 0, 360, SKIN, -1)
    assert check_mask(off).codes == ["face_off_centre"]
    split = head_mask()
    split[:, 250:262] = HAIR  # a stripe of hair cuts the face in two
    assert "face_split" in check_mask(split).codes
    with pytest.raises(ValueError):
        check_mask(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        check_mask(np.zeros((8, 8), np.uint8), np.zeros((9, 8), np.uint8))


@pytest.fixture(scope="module")
def bundled_sketch_net():
    from backend.models.loading import load_sketch2mask
    from backend.weights import DEFAULT_WEIGHTS_DIR, WeightsError

    try:
        return load_sketch2mask(DEFAULT_WEIGHTS_DIR, "cpu")[0]
    except WeightsError as e:
        pytest.skip(f"bundled sketch weights not usable here: {e}")


@pytest.mark.parametrize("name", ["head_front.png", "head_long_hair.png", "head_front.json"])
def test_example_masks_raise_no_warning(bundled_sketch_net, name):
    from backend.align import frame_sketch, unframe_mask
    from backend.pipeline import predict_mask_with_refined_framing

    sk = load_sketch(EXAMPLES / name)
    s512, t = frame_sketch(sk.image, 512)
    _, m512, t = predict_mask_with_refined_framing(bundled_sketch_net, sk.image, s512, t)
    mask = unframe_mask(m512, t)
    c = check_mask(mask, sk.image)
    assert c.warnings == [], c.warnings
    assert c.measures["face_fraction"] > 0.05 and c.measures["hair_fraction"] < 0.3


def test_result_json_carries_intake_and_warnings(tmp_path, monkeypatch):
    import re

    import torch
    from s3d_tiny_weights import make_tiny_weights, sphere_query

    from backend.models.mask2triplane import Mask2Triplane
    from backend.pipeline import GenerateOptions, generate

    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    torch.set_num_threads(2)
    weights = make_tiny_weights(tmp_path / "weights")
    data, _, _ = make_scan(300, 400)
    result = generate(data, tmp_path / "job", GenerateOptions(seed=0, resolution=64, views=4, view_resolution=64,
                                                              color_resolution=64), weights_dir=weights, device="cpu")
    on_disk = json.loads((tmp_path / "job" / "result.json").read_text())
    assert on_disk["intake"] == result["intake"]
    assert {"flatten", "scanner_edges", "margin_marks"} <= set(on_disk["intake"]["steps"])
    # untrained weights give an implausible mask; whatever it is, the warnings are those of check_mask
    mask = np.asarray(Image.open(tmp_path / "job" / "mask.png"))
    expected = check_mask(mask, load_sketch(data).image).warnings
    assert on_disk["warnings"] == expected
    for w in on_disk["warnings"]:
        assert set(w) == {"code", "message"} and re.fullmatch(r"[a-z]+(_[a-z]+)*", w["code"]) and w["message"]


def test_debug_entry_point_and_benchmark_script(tmp_path, bundled_sketch_net, capsys):
    import sys

    from backend.sketch.paper import main as paper_main

    data, _, _ = make_scan(300, 400)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.jpg").write_bytes(data)
    assert paper_main([str(tmp_path / "in" / "scan.jpg"), str(tmp_path / "intake_debug.png")]) == 0
    assert "margin_marks" in json.loads(capsys.readouterr().out)["steps"]
    strip = np.asarray(Image.open(tmp_path / "intake_debug.png"))
    assert strip.shape[1] == 256 * 8
    assert paper_main([str(tmp_path / "missing.png")]) == 2
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import check_paper_sketches

    rc = check_paper_sketches.main([str(tmp_path / "in"), "--sheet", str(tmp_path / "sheet.png"), "--tile", "64"])
    out = capsys.readouterr().out
    assert "scan.jpg" in out and "intake steps:" in out and "masks with a warning:" in out
    assert rc in (0, 1) and np.asarray(Image.open(tmp_path / "sheet.png")).shape == (64, 2 * 4 * 64 + 8, 3)


def test_generate_debug_intake_writes_the_stage_strip(tmp_path, monkeypatch, capsys):
    import torch
    from s3d_tiny_weights import make_tiny_weights, sphere_query

    from backend.cli import main as cli_main
    from backend.models.mask2triplane import Mask2Triplane

    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    torch.set_num_threads(2)
    weights = make_tiny_weights(tmp_path / "weights")
    data, _, _ = make_scan(300, 400)
    (tmp_path / "scan.jpg").write_bytes(data)
    common = ["--weights", str(weights), "--resolution", "64", "--views", "4", "--quiet", "--device", "cpu"]
    assert cli_main(["generate", str(tmp_path / "scan.jpg"), "--out", str(tmp_path / "job"), "--debug-intake", *common]) == 0
    strip = np.asarray(Image.open(tmp_path / "job" / "intake_debug.png"))
    assert strip.shape[1] == 256 * 8 and strip.min() < 128 < strip.max()
    # a stroke document has no paper to clean: a note, no strip
    assert cli_main(["generate", str(ROOT / "examples" / "head_front.json"), "--out", str(tmp_path / "strokes"),
                     "--debug-intake", *common]) == 0
    assert not (tmp_path / "strokes" / "intake_debug.png").exists()
    assert "no paper clean-up stages" in capsys.readouterr().err
