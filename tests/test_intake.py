"""Sketch intake (every image kind and the errors), stroke rasterisation, auto-framing, mask intake."""
from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.align import (canonical_content_box, content_box, frame_mask, frame_sketch, framing_transform,
                             unframe_mask)
from backend.labels import PALETTE
from backend.mask_intake import load_mask
from backend.sketch.intake import IntakeError, load_sketch
from backend.sketch.raster import rasterize_strokes


def reference_strokes(w: int = 320, h: int = 256) -> np.ndarray:
    """A grey drawing ``(h, w)`` uint8: dark strokes (an oval face, eyes, a mouth) on white."""
    img = np.full((h, w), 255, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 5, h // 3), 0, 0, 360, 0, 3, cv2.LINE_AA)
    cv2.circle(img, (w // 2 - 25, h // 2 - 20), 6, 30, 2, cv2.LINE_AA)
    cv2.circle(img, (w // 2 + 25, h // 2 - 20), 6, 30, 2, cv2.LINE_AA)
    cv2.line(img, (w // 2 - 20, h // 2 + 40), (w // 2 + 20, h // 2 + 40), 10, 3, cv2.LINE_AA)
    return img


def ink_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a < 128, b < 128
    return float((a & b).sum() / max((a | b).sum(), 1))


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


REF = reference_strokes()


def _rgba_transparent_paper() -> Image.Image:
    a = np.zeros(REF.shape + (4,), np.uint8)  # transparent *black* paper: must become white
    a[..., 3] = 255 - REF
    return Image.fromarray(a, "RGBA")


def _palette() -> Image.Image:
    return Image.fromarray(np.stack([REF] * 3, -1)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)


def _palette_transparent() -> Image.Image:
    im = Image.frombytes("P", REF.shape[::-1], np.where(REF < 128, 1, 0).astype(np.uint8).tobytes())
    im.putpalette([0, 0, 0, 20, 20, 20] + [0, 0, 0] * 254)
    im.info["transparency"] = 0  # index 0 (black) is transparent paper
    return im


KINDS = {
    "png_grey": lambda: encode(Image.fromarray(REF, "L"), "PNG"),
    "png_rgb_coloured_ink": lambda: encode(Image.fromarray(np.stack([REF, REF // 2 + 60, REF], -1)), "PNG"),
    "jpeg_rgb": lambda: encode(Image.fromarray(np.stack([REF] * 3, -1)), "JPEG", quality=80),
    "jpeg_grey": lambda: encode(Image.fromarray(REF, "L"), "JPEG", quality=85),
    "webp": lambda: encode(Image.fromarray(np.stack([REF] * 3, -1)), "WEBP", quality=90),
    "png_rgba_transparent_paper": lambda: encode(_rgba_transparent_paper(), "PNG"),
    "png_la": lambda: encode(_rgba_transparent_paper().convert("LA"), "PNG"),
    "png_16bit": lambda: encode(Image.fromarray(REF.astype(np.uint16) * 257), "PNG"),
    "png_palette": lambda: encode(_palette(), "PNG"),
    "png_palette_transparency": lambda: encode(_palette_transparent(), "PNG"),
    "jpeg_cmyk": lambda: encode(Image.fromarray(np.stack([REF] * 3, -1)).convert("CMYK"), "JPEG", quality=90),
    "tiff_float": lambda: encode(Image.fromarray(REF.astype(np.float32) / 255.0), "TIFF"),
    "png_1bit": lambda: encode(Image.fromarray(REF).point(lambda v: 255 if v > 128 else 0).convert("1"), "PNG"),
    "png_inverted_chalkboard": lambda: encode(Image.fromarray(255 - REF, "L"), "PNG"),
    "bmp": lambda: encode(Image.fromarray(REF, "L"), "BMP"),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_image_kind_becomes_dark_strokes_on_white(kind, tmp_path):
    data = KINDS[kind]()
    path = tmp_path / f"sketch_{kind}"
    path.write_bytes(data)
    for source in (path, data):
        sk = load_sketch(source)
        assert sk.image.dtype == np.uint8 and sk.image.shape == REF.shape
        assert sk.size == (REF.shape[1], REF.shape[0])
        # paper is white (corners), strokes are where the reference has them
        assert sk.image[:10, :10].min() == 255 and sk.image[-10:, -10:].min() == 255
        assert sk.image.min() < 40
        assert ink_iou(sk.image, REF) > 0.75, kind
    assert sk.inverted == (kind == "png_inverted_chalkboard")


def test_numpy_and_pil_inputs():
    assert ink_iou(load_sketch(REF).image, REF) > 0.9
    assert ink_iou(load_sketch(REF.astype(np.float32) / 255.0).image, REF) > 0.9
    assert ink_iou(load_sketch(Image.fromarray(REF)).image, REF) > 0.9


def test_faint_pencil_is_stretched_to_black():
    faint = (255 - (255 - REF.astype(np.int32)) * 0.25).astype(np.uint8)  # ink at about 190 of 255
    sk = load_sketch(faint)
    assert sk.image.min() == 0 and ink_iou(sk.image, REF) > 0.7


@pytest.mark.parametrize("data, code", [
    (b"this is not an image", "image_unreadable"),
    (b"", "image_unreadable"),
    (encode(Image.new("L", (64, 64), 255), "PNG"), "image_blank"),
    (encode(Image.new("L", (64, 64), 0), "PNG"), "image_blank"),
    (encode(Image.new("L", (8, 8), 0), "PNG"), "image_too_small"),
    (encode(Image.new("L", (9000, 16), 255), "PNG"), "image_too_large"),
    (b'{"strokes": 3}', "strokes_missing"),
    (b'{"frame": "image", "strokes": []}', "strokes_bad_size"),
    (b'{"strokes": [{"points": [[0.1, 0.1]], "width": -1}]}', "stroke_bad_width"),
    (b'{"strokes": [}', "strokes_bad_json"),
])
def test_intake_errors_have_stable_codes(data, code):
    with pytest.raises(IntakeError) as e:
        load_sketch(data)
    assert e.value.code == code
    assert len(str(e.value)) > 20  # a sentence, not just a code


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(IntakeError) as e:
        load_sketch(tmp_path / "nope.png")
    assert e.value.code == "input_not_found"
    with pytest.raises(IntakeError) as e:
        load_sketch(3.5)
    assert e.value.code == "input_bad_type"
    with pytest.raises(IntakeError) as e:
        load_sketch({"strokes": [{"points": [[0.1, float("nan")], [0.2, 0.2]]}]})
    assert e.value.code == "stroke_not_finite"


# --- stroke rasterisation --------------------------------------------------------------------------

def test_normalized_strokes_land_where_drawn(tmp_path):
    doc = {"version": 1, "frame": "normalized",
           "strokes": [{"points": [[0.25, 0.5], [0.75, 0.5]], "width": 0.01}]}
    img = rasterize_strokes(doc, 512)
    rows, cols = np.nonzero(img < 128)
    assert abs(rows.mean() - 255.5) < 1.5
    assert abs(cols.min() - 128) <= 4 and abs(cols.max() - 384) <= 4
    assert 3 <= rows.max() - rows.min() + 1 <= 8  # 0.01 x 512 = 5 px wide
    # the same document through intake, as a dict, as JSON bytes and as a .json file
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    for source in (doc, json.dumps(doc).encode(), path):
        sk = load_sketch(source)
        assert sk.kind == "strokes" and sk.image.shape == (512, 512)
        assert ink_iou(sk.image, img) > 0.95


def test_image_frame_strokes_letterbox_and_per_point_widths():
    doc = {"frame": "image", "width": 200, "height": 100,
           "strokes": [{"points": [[x, 50] for x in range(0, 201, 20)], "widths": [2.0 + 0.8 * i for i in range(11)]}]}
    img = rasterize_strokes(doc, 512)
    rows, cols = np.nonzero(img < 128)
    # 200 x 100 letterboxed into 512: the line is at the vertical centre, spanning the full width
    assert abs(rows.mean() - 255.5) < 2 and cols.min() <= 4 and cols.max() >= 507
    left = (img[:, 20:40] < 128).sum(axis=0).mean()
    right = (img[:, 470:490] < 128).sum(axis=0).mean()
    assert right > 2.5 * left  # widths grow along the stroke


# --- framing ----------------------------------------------------------------------------------------

def test_auto_framing_maps_content_box_onto_canonical_box():
    img = np.full((600, 800), 255, np.uint8)
    cv2.rectangle(img, (600, 40), (700, 190), 0, 2)  # a small drawing in the top-right corner
    framed, t = frame_sketch(img, 512)
    canon = canonical_content_box()
    box = content_box(framed < 128)
    x0, y0, x1, y1 = box
    cw, ch = canon["width"] * 512, canon["height"] * 512
    # fits inside the canonical box, touching it in the limiting dimension, top-anchored, centred
    assert x1 - x0 <= cw + 3 and y1 - y0 <= ch + 3
    assert min(abs((x1 - x0) - cw), abs((y1 - y0) - ch)) < 4
    assert abs(y0 - (canon["center"][1] - canon["height"] / 2) * 512) < 3
    assert abs((x0 + x1) / 2 - canon["center"][0] * 512) < 3
    # the recorded transform maps the input content box onto the framed one
    m = t.as_array()
    ix0, iy0, ix1, iy1 = t.content_box
    fx0, fy0 = m @ [ix0 + 0.5, iy0 + 0.5, 1]
    assert abs(fx0 - 0.5 - x0) < 3 and abs(fy0 - 0.5 - y0) < 3
    assert t.auto_framed and t.input_size == [800, 600] and t.output_size == 512


def test_no_frame_keeps_a_canonical_square_input_unchanged():
    img = np.full((512, 512), 255, np.uint8)
    cv2.circle(img, (200, 300), 50, 0, 3)
    framed, t = frame_sketch(img, 512, auto_frame=False)
    assert np.allclose(t.as_array(), [[1, 0, 0], [0, 1, 0]])
    assert (framed == img).all()


def test_framing_of_a_large_scan_keeps_thin_strokes_and_unframes_the_mask():
    big = np.full((2048, 1536), 255, np.uint8)
    cv2.ellipse(big, (768, 1000), (400, 560), 0, 0, 360, 0, 2)  # 2 px strokes, downscaled about 4x
    framed, t = frame_sketch(big, 512)
    assert framed.min() == 0  # re-stretched to black
    mask = np.zeros((512, 512), np.uint8)
    mask[framed < 200] = 1
    back = unframe_mask(mask, t)
    assert back.shape == big.shape
    # labelled pixels of the mask come back on the input's strokes
    rows, cols = np.nonzero(back)
    assert np.mean(np.abs(np.hypot((cols - 768) / 400, (rows - 1000) / 560) - 1.0) < 0.03) > 0.9


def test_framing_needs_content():
    with pytest.raises(ValueError) as e:
        framing_transform(np.zeros((64, 64), bool), 512)
    assert e.value.code == "framing_no_content"


def test_canonical_box_falls_back_to_defaults(tmp_path):
    assert canonical_content_box(tmp_path / "absent.json")["source"].startswith("defaults")
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"center": [0.5, 0.6], "width": 0.5, "height": 0.7, "n": 10}))
    assert canonical_content_box(p)["height"] == 0.7


# --- masks ----------------------------------------------------------------------------------------

def face_ids(size: int = 256) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    c = size // 2
    cv2.ellipse(m, (c, c - size // 8), (size // 3, size // 3), 0, 0, 360, 13, -1)  # hair
    cv2.ellipse(m, (c, c), (size // 4, size // 3), 0, 0, 360, 1, -1)  # skin
    cv2.circle(m, (c - size // 10, c - size // 12), size // 30, 4, -1)
    cv2.circle(m, (c + size // 10, c - size // 12), size // 30, 5, -1)
    cv2.ellipse(m, (c, c + size // 6), (size // 12, size // 40), 0, 0, 360, 11, -1)
    return m


def test_mask_id_maps_in_every_container(tmp_path):
    ids = face_ids()
    for name, im in {"L": Image.fromarray(ids, "L"), "I16": Image.fromarray(ids.astype(np.uint16)),
                     "grey_rgb": Image.fromarray(np.stack([ids] * 3, -1))}.items():
        p = tmp_path / f"{name}.png"
        im.save(p)
        assert (load_mask(p) == ids).all(), name
    p_img = Image.frombytes("P", ids.shape[::-1], ids.tobytes())
    p_img.putpalette([v for i in range(256) for v in (i, i, i)])
    assert (load_mask(encode(p_img, "PNG")) == ids).all()


def test_colour_mask_snaps_anti_aliased_and_jpeg_colours():
    ids = face_ids()
    rgb = PALETTE[ids]
    aa = cv2.GaussianBlur(rgb, (3, 3), 0.8)  # anti-aliased edges
    got = load_mask(aa)
    assert (got == ids).mean() > 0.97
    jpg = np.asarray(Image.open(io.BytesIO(encode(Image.fromarray(rgb), "JPEG", quality=95))))
    assert (load_mask(jpg) == ids).mean() > 0.95
    p_img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    assert (load_mask(encode(p_img, "PNG")) == ids).mean() > 0.97


@pytest.mark.parametrize("make, code", [
    (lambda: np.full((64, 64), 19, np.uint8), "mask_id_out_of_range"),
    (lambda: np.full((64, 64), 255, np.uint8), "mask_id_out_of_range"),
    (lambda: np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.uint8), "mask_colors_unknown"),
    (lambda: np.zeros((64, 64), np.uint8), "mask_empty"),
])
def test_mask_errors(make, code):
    with pytest.raises(IntakeError) as e:
        load_mask(make())
    assert e.value.code == code


def test_mask_framing_round_trip():
    ids = np.zeros((300, 400), np.uint8)
    ids[50:250, 150:260] = face_ids(256)[28:228, 73:183]
    framed, t = frame_mask(ids, 512)
    assert set(np.unique(framed)) <= set(np.unique(ids))  # nearest neighbour: no new ids
    back = unframe_mask(framed, t)
    assert back.shape == ids.shape
    assert (back == ids).mean() > 0.97


def test_landmark_framing_puts_eyes_and_mouth_on_the_canonical_places():
    from backend.align import canonical_landmarks, mask_landmarks, refine_with_landmarks

    ids = np.zeros((400, 300), np.uint8)
    ids[60:380, 60:240] = 1
    ids[150:165, 100:125] = 4  # eyes centred at (x 149.5, y 157)
    ids[150:165, 175:200] = 5
    ids[240:250, 125:175] = 11  # mouth centred at (149.5, 244.5)
    lm = mask_landmarks(ids)
    assert np.allclose(lm["eye"], [149.5, 157.0]) and np.allclose(lm["mouth"], [149.5, 244.5])
    framed, t = frame_mask(ids, 512)
    assert t.method == "landmarks" and t.landmarks is not None
    canon = canonical_landmarks()
    got = mask_landmarks(framed)
    assert np.allclose(got["eye"], np.array(canon["eye_center"]) * 512 - 0.5, atol=1.5)
    assert abs((got["mouth"][1] - got["eye"][1]) - canon["eye_mouth_distance"] * 512) < 2.0
    # the same refinement from a first (content-box) pass over the framed square
    first = framing_transform(ids > 0, 512)
    refined = refine_with_landmarks(first, apply_first(ids, first))
    assert refined is not None and abs(refined.scale / t.scale - 1) < 0.01  # centroids of a resampled mask
    assert np.allclose(refined.as_array()[:, 2], t.as_array()[:, 2], atol=1.5)
    # no eyes: no landmarks, the content box stays in charge
    assert mask_landmarks(np.where(np.isin(ids, [4, 5]), 1, ids)) is None
    assert frame_mask(np.where(np.isin(ids, [4, 5]), 1, ids).astype(np.uint8), 512)[1].method == "content_box"


def apply_first(ids, t):
    from backend.align import apply_to_image

    return apply_to_image(ids, t, fill=0, nearest=True)


def test_head_box_fallback_when_eyes_are_missing():
    from backend.align import DEFAULT_CANONICAL_HEAD_BOX, mask_head_box, refine_with_landmarks

    ids = np.zeros((600, 500), np.uint8)
    ids[100:250, 150:350] = 13  # hair from row 100
    ids[180:400, 180:320] = 1  # face down to row 399 (chin edge at 400)
    ids[400:600, 200:300] = 17  # neck to the page edge
    box = mask_head_box(ids)
    assert box["top"] == 99.5 and box["chin"] == 399.5 and abs(box["center_x"] - 249.5) < 0.01
    first = framing_transform(ids > 0, 512)
    refined = refine_with_landmarks(first, apply_first(ids, first))
    assert refined is not None and refined.method == "head_box"
    framed = apply_first(ids, refined)
    got = mask_head_box(framed)
    c = DEFAULT_CANONICAL_HEAD_BOX
    assert abs(got["top"] - (c["top"] * 512 - 0.5)) < 1.5 and abs(got["chin"] - (c["chin"] * 512 - 0.5)) < 1.5
    assert abs(got["center_x"] - (c["center_x"] * 512 - 0.5)) < 1.5


def test_landmarks_that_disagree_with_the_head_box_are_not_trusted():
    from backend.align import refine_with_landmarks

    ids = np.zeros((600, 500), np.uint8)
    ids[100:250, 150:350] = 13
    ids[180:400, 180:320] = 1
    ids[240:250, 200:225] = 4
    ids[240:250, 275:300] = 5
    ids[262:268, 230:270] = 11  # a "mouth" just under the eyes: a moustache or nose mislabelled
    first = framing_transform(ids > 0, 512)
    refined = refine_with_landmarks(first, apply_first(ids, first))
    assert refined is not None and refined.method == "head_box"
