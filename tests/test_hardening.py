"""Hardening (issue 8): property tests over the image, stroke and mask decoders, a bounded fuzz run of the
HTTP API on loopback, a load test of concurrent clients, and output-path safety.

Every decoder case must either return a valid normalised result or raise ``IntakeError`` with a stable
``code``; every HTTP answer must be JSON (an error with a stable code, or a valid answer) and never a 500
for a client mistake. Tiny random weights only (tests/s3d_tiny_weights.py).
"""
from __future__ import annotations

import base64
import errno
import http.client
import io
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import backend.export
import backend.input_limits
import backend.mesh
import backend.pipeline
from backend.labels import NUM_CLASSES, PALETTE
from backend.mask_intake import load_mask
from backend.models.mask2triplane import Mask2Triplane
from backend.input_limits import MAX_DECODE_PIXELS, MAX_STROKE_WIDTH_PX, load_sketch_checked
from backend.pipeline import GenerateOptions, PipelineError, generate, load_models
from backend.server import JobServer, make_server
from backend.sketch.intake import MAX_SIDE_PX, MIN_INK_FRACTION, MIN_SIDE_PX, IntakeError, load_sketch
from backend.sketch.raster import MAX_POINTS
from s3d_tiny_weights import make_tiny_weights, sphere_query

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hardening-token-0123456789"
FAST = {"resolution": 64, "views": 4, "view_resolution": 64, "color_resolution": 64}
STABLE_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
IMAGE_CODES = {"image_unreadable", "image_too_large", "image_too_small", "image_blank", "input_bad_type",
               "image_multi_frame"}
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
STROKES = {"version": 1, "frame": "normalized", "strokes": [
    {"points": [[0.5 + 0.25 * np.cos(a), 0.55 + 0.33 * np.sin(a)] for a in np.linspace(0, 6.3, 40)], "width": 0.006},
    {"points": [[0.4, 0.45], [0.46, 0.45]], "width": 0.006}, {"points": [[0.54, 0.45], [0.6, 0.45]], "width": 0.006},
    {"points": [[0.45, 0.7], [0.55, 0.7]], "width": 0.006}]}


# --------------------------------------------------------------------------- image decoder

def _content(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """``(h, w)`` uint8 grey content: white paper with strokes, noise, all white or all black."""
    if kind == "white":
        return np.full((h, w), 255, np.uint8)
    if kind == "black":
        return np.zeros((h, w), np.uint8)
    if kind == "noise":
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    img = np.full((h, w), 255, np.uint8)
    img[h // 3: h // 3 + max(1, h // 20), :] = 0
    img[:, w // 2: w // 2 + max(1, w // 20)] = 0
    return img


def _encode(grey: np.ndarray, mode: str, rng: np.random.Generator) -> bytes:
    """Encode grey content as an image file of the given Pillow mode."""
    buf = io.BytesIO()
    if mode == "L":
        Image.fromarray(grey).save(buf, "PNG")
    elif mode == "1":
        Image.fromarray(grey).convert("1").save(buf, "PNG")
    elif mode == "LA":
        alpha = rng.integers(0, 256, grey.shape, dtype=np.uint8)
        Image.fromarray(np.stack([grey, alpha], -1), "LA").save(buf, "PNG")
    elif mode in ("RGB", "RGBA", "P", "CMYK"):
        rgb = np.stack([grey, np.roll(grey, 1, 0), grey], -1)
        im = Image.fromarray(rgb, "RGB")
        if mode == "RGBA":
            im.putalpha(Image.fromarray(rng.integers(0, 256, grey.shape, dtype=np.uint8)))
            im.save(buf, "PNG")
        elif mode == "P":
            im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buf, "PNG", transparency=0)
        elif mode == "CMYK":
            im.convert("CMYK").save(buf, "TIFF")
        else:
            im.save(buf, "JPEG" if rng.random() < 0.5 else "PNG")
    elif mode == "I;16":
        Image.fromarray(grey.astype("<u2") * 257).save(buf, "PNG")
    elif mode == "I":
        Image.fromarray(grey.astype(np.int32) * 200).save(buf, "TIFF")
    elif mode == "F":
        Image.fromarray(grey.astype(np.float32) / 255.0).save(buf, "TIFF")
    else:
        raise AssertionError(mode)
    return buf.getvalue()


def _check_sketch(source, w: int | None = None, h: int | None = None):
    try:
        sk = load_sketch_checked(source)
    except IntakeError as e:
        assert STABLE_CODE.match(e.code) and str(e), e.code
        return e.code
    img = sk.image
    assert img.dtype == np.uint8 and img.ndim == 2
    assert min(img.shape) >= MIN_SIDE_PX and max(img.shape) <= MAX_SIDE_PX
    assert (img < 128).mean() >= MIN_INK_FRACTION  # a result is never blank
    if w is not None:
        assert sk.size == (w, h)
    return None


side = st.one_of(st.integers(1, 96), st.sampled_from([MIN_SIDE_PX - 1, MIN_SIDE_PX, MAX_SIDE_PX + 1]))


@PROPS
@example(mode="L", w=MAX_SIDE_PX + 1, h=40, kind="strokes", seed=0, cut=None)  # the limits, tried every run
@example(mode="RGB", w=MIN_SIDE_PX - 1, h=40, kind="strokes", seed=0, cut=None)
@example(mode="P", w=64, h=48, kind="white", seed=0, cut=None)
@given(mode=st.sampled_from(["L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "1", "F"]),
       w=side, h=st.integers(1, 64), kind=st.sampled_from(["strokes", "white", "black", "noise"]),
       seed=st.integers(0, 2 ** 32 - 1), cut=st.one_of(st.none(), st.integers(0, 400)))
def test_image_decoder_returns_a_sketch_or_a_coded_error(mode, w, h, kind, seed, cut):
    rng = np.random.default_rng(seed)
    data = _encode(_content(kind, w, h, rng), mode, rng)
    if cut is not None:  # a truncated file
        data = data[:cut]
    code = _check_sketch(data, *((w, h) if cut is None else (None, None)))
    assert code is None or code in IMAGE_CODES, code
    if cut is None and w > MAX_SIDE_PX:
        assert code == "image_too_large"
    elif cut is None and min(w, h) < MIN_SIDE_PX:
        assert code == "image_too_small"
    if cut is None and kind == "white" and min(w, h) >= MIN_SIDE_PX and w <= MAX_SIDE_PX:
        assert code == "image_blank"


@PROPS
@example(data=b"\x00\x00\x00\x0dIHDR", prefix=b"\x89PNG\r\n\x1a\n")  # Image.open: OSError, not "unidentified"
@example(data=b"\x00\x00\x00\x00WEBPVP8 ", prefix=b"RIFF")
@given(data=st.binary(max_size=3000), prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                                                              b"II*\x00", b"RIFF"]))
def test_random_bytes_never_escape_the_image_decoder(data, prefix):
    code = _check_sketch(prefix + data)
    if not (prefix + data).lstrip()[:1] == b"{":
        assert code in IMAGE_CODES, code


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width x height`` but whose data holds one tiny row (a bomb's shape)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (MAX_SIDE_PX + 1, 20), (20, 2 ** 31 - 1), (8000, 8000)])
def test_decompression_bombs_are_refused_before_decoding(w, h):
    for loader in (load_sketch, load_mask):
        with pytest.raises(IntakeError) as e:
            loader(_png_declaring(w, h))
        expected = {"image_too_large"} if max(w, h) > MAX_SIDE_PX else {"image_unreadable"}  # truncated data
        assert e.value.code in expected, (w, h, e.value.code)


# --------------------------------------------------------------------------- stroke decoder

number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-10 ** 20, 10 ** 20),
                   st.floats(0, 1))
junk = st.recursive(st.one_of(st.none(), st.booleans(), number, st.text(max_size=5)),
                    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
                    max_leaves=12)
point = st.one_of(st.lists(number, min_size=2, max_size=2), st.lists(number, max_size=3), junk)
# widths over the whole range: thin, at the limit, far beyond it (64 units used to crash OpenCV), huge
width = st.one_of(st.floats(0, 0.2), st.floats(0, 1000), st.floats(0, 1e300), st.integers(0, 10 ** 12), number)
stroke = st.one_of(
    st.fixed_dictionaries({"points": st.lists(point, max_size=30)},
                          optional={"width": st.one_of(width, width, junk),
                                    "widths": st.one_of(st.lists(width, min_size=2, max_size=2), st.lists(number), junk),
                                    "pressure": junk}),
    st.fixed_dictionaries({"points": st.just([[0.2, 0.2], [0.6, 0.7]]), "width": width}),
    junk)
stroke_doc = st.one_of(
    st.fixed_dictionaries({"strokes": st.lists(stroke, max_size=6)},
                          optional={"version": junk, "frame": st.one_of(st.sampled_from(["normalized", "image"]), junk),
                                    "width": st.one_of(number, junk), "height": st.one_of(number, junk)}),
    junk)


def _check_strokes(doc, as_bytes: bool):
    if as_bytes:
        source = json.dumps(doc).encode()
    else:
        source = doc
    try:
        sk = load_sketch_checked(source)  # the intake the pipeline and the server use
    except IntakeError as e:
        assert STABLE_CODE.match(e.code) and str(e)
        assert e.code.startswith(("stroke", "image_", "input_bad_type", "input_not_found")), e.code
        return e.code
    assert sk.kind == "strokes" and sk.image.dtype == np.uint8 and sk.image.shape == (512, 512)
    assert (sk.image < 128).any()
    return None


@PROPS
@example(doc={"strokes": [{"points": [[0.2, 0.2], [0.6, 0.7]], "width": 100}]}, as_bytes=False)  # the case
@given(doc=stroke_doc, as_bytes=st.booleans())
def test_stroke_decoder_returns_a_sketch_or_a_coded_error(doc, as_bytes):
    _check_strokes(doc, as_bytes)


@pytest.mark.parametrize("bad,code", [
    ({"strokes": [{"points": [[0.1, float("nan")], [0.2, 0.2]]}]}, "stroke_not_finite"),
    ({"strokes": [{"points": [[0.1, float("inf")], [0.2, 0.2]]}]}, "stroke_not_finite"),
    ({"strokes": [{"points": [[0.1, 0.1], [0.9, 0.9]], "width": -0.01}]}, "stroke_bad_width"),
    ({"strokes": [{"points": [[0.1, 0.1], [0.9, 0.9]], "widths": [0.01, -1]}]}, "stroke_bad_width"),
    ({"strokes": [{"points": "0.1,0.2"}]}, "stroke_bad_points"),
    ({"strokes": [{"points": [[0.1, "a"]]}]}, "stroke_bad_points"),
    ({"strokes": "all of them"}, "strokes_missing"),
    ({"strokes": [[[0.1, 0.1]]]}, "stroke_bad"),
    ({"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "width": 100}]}, "stroke_bad_width"),  # the case
    ({"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "width": 64}]}, "stroke_bad_width"),
    ({"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "width": 1e300}]}, "stroke_bad_width"),
    ({"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "widths": [1e9, 0.01]}]}, "stroke_bad_width"),
    ({"frame": "image", "width": 100, "height": 100,
      "strokes": [{"points": [[1, 1], [50, 50]], "width": 13}]}, "stroke_bad_width"),  # 13 px of 100 = 67 px
    ({"strokes": [{"points": [[0.1, 1e300], [0.5, 0.5]]}]}, "stroke_out_of_range"),
    ({"strokes": [{"points": [[-11, 0.5], [0.5, 0.5]]}]}, "stroke_out_of_range"),
])
def test_named_stroke_mistakes_get_their_codes(bad, code):
    assert _check_strokes(bad, as_bytes=False) == code
    assert _check_strokes(bad, as_bytes=True) == code  # Python's JSON reads NaN / Infinity too


def test_millions_of_points_are_refused():
    pts = np.random.default_rng(0).random((MAX_POINTS + 1, 2)).tolist()
    assert _check_strokes({"strokes": [{"points": pts}]}, as_bytes=False) == "strokes_too_many_points"


def test_deeply_nested_stroke_json_is_a_coded_error():
    deep = b"{\"strokes\": " + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(IntakeError) as e:
        load_sketch(deep)
    assert STABLE_CODE.match(e.value.code)


# --------------------------------------------------------------------------- mask decoder

@PROPS
@given(w=st.integers(1, 64), h=st.integers(1, 64), top=st.integers(0, 300), seed=st.integers(0, 2 ** 32 - 1),
       fmt=st.sampled_from(["L", "I;16", "RGB-grey"]))
def test_id_maps_with_any_ids_are_read_or_refused_with_a_code(w, h, top, seed, fmt):
    ids = np.random.default_rng(seed).integers(0, top + 1, (h, w))
    buf = io.BytesIO()
    if fmt == "L":
        Image.fromarray(np.minimum(ids, 255).astype(np.uint8)).save(buf, "PNG")
        ids = np.minimum(ids, 255)
    elif fmt == "I;16":
        Image.fromarray(ids.astype("<u2")).save(buf, "PNG")
    else:
        g = np.minimum(ids, 255).astype(np.uint8)
        ids = g
        Image.fromarray(np.stack([g, g, g], -1)).save(buf, "PNG")
    try:
        out = load_mask(buf.getvalue())
    except IntakeError as e:
        assert e.code in IMAGE_CODES | {"mask_id_out_of_range", "mask_empty", "mask_colors_unknown"}, e.code
        if ids.max() >= NUM_CLASSES and min(w, h) >= MIN_SIDE_PX:
            assert e.code == "mask_id_out_of_range"
        return
    assert ids.max() < NUM_CLASSES and min(w, h) >= MIN_SIDE_PX
    assert out.dtype == np.uint8 and out.shape == (h, w) and (out == ids).all()


@PROPS
@example(a=1, b=13, blur=0, size=48, as_palette=False, noise=0, seed=0)  # always tried: a clean two-region map
@example(a=0, b=4, blur=0, size=40, as_palette=True, noise=8, seed=1)
@given(a=st.integers(0, NUM_CLASSES - 1), b=st.integers(1, NUM_CLASSES - 1), blur=st.integers(0, 6),
       size=st.integers(8, 80), as_palette=st.booleans(), noise=st.integers(0, 40), seed=st.integers(0, 1000))
def test_antialiased_palette_maps_snap_to_the_label_set(a, b, blur, size, as_palette, noise, seed):
    """Two palette regions with a soft (anti-aliased) edge and colour noise, saved as RGB or a ``P`` image."""
    ids = np.full((size, size), a, np.uint8)
    ids[:, size // 2:] = b
    rgb = PALETTE[ids].astype(np.float64)
    if blur:  # a linear ramp across the boundary, `blur` pixels wide either side
        x = np.arange(size)
        t = np.clip((x - (size // 2 - blur)) / (2 * blur), 0, 1)[None, :, None]
        rgb = PALETTE[a] * (1 - t) + PALETTE[b] * t
        rgb = np.broadcast_to(rgb, (size, size, 3))
    rgb = rgb + np.random.default_rng(seed).normal(0, noise / 3.0, rgb.shape)
    im = Image.fromarray(np.clip(np.round(rgb), 0, 255).astype(np.uint8), "RGB")
    if as_palette:
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    try:
        out = load_mask(buf.getvalue())
    except IntakeError as e:
        assert e.code in {"image_too_small", "mask_empty", "mask_colors_unknown"}, e.code
        if size < MIN_SIDE_PX:
            assert e.code == "image_too_small"
        # two pure palette regions with mild noise are a valid map: refusing them is a failure too
        assert size < MIN_SIDE_PX or blur > 0 or noise > 10, (e.code, a, b, noise)
        return
    assert out.dtype == np.uint8 and out.shape == (size, size) and out.max() < NUM_CLASSES
    if noise <= 10:  # far from the edge the pure colours keep their ids
        margin = blur + 2
        assert (out[:, :max(0, size // 2 - margin)] == a).all() and (out[:, size // 2 + margin:] == b).all()


# --------------------------------------------------------------------------- HTTP API on loopback

@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def models(tiny_weights):
    torch.set_num_threads(2)
    mp = pytest.MonkeyPatch()
    mp.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query))
    yield load_models(tiny_weights, "cpu")
    mp.undo()


def _start(models, jobs_dir, max_queue):
    app = JobServer(models, TOKEN, jobs_dir, max_queue=max_queue)
    httpd = make_server(app, "127.0.0.1", 0)
    httpd.RequestHandlerClass.timeout = 2.0  # stalled bodies time out fast in tests
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return app, httpd


def _stop(app, httpd):
    httpd.shutdown()
    httpd.server_close()
    app.shutdown()


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    app, httpd = _start(models, tmp_path_factory.mktemp("jobs"), max_queue=2)
    yield app, httpd.server_address[1]
    _stop(app, httpd)


def call(port, method, path, body=None, token=TOKEN, raw=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, (json.loads(payload) if ctype.startswith("application/json") and payload else payload)


def wait(port, job_id, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        code, st_ = call(port, "GET", f"/v1/jobs/{job_id}")
        assert code == 200, st_
        if st_["state"] in ("done", "failed", "cancelled"):
            return st_
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is stuck in {st_['state']}")


def _assert_json_answer(code, body, context):
    assert code != 500 and code < 500 or code == 503, (code, body, context)
    assert isinstance(body, dict), (code, body, context)
    if code >= 400:
        assert STABLE_CODE.match(body["error"]["code"]) and body["error"]["message"], (body, context)


def _fuzz_request(rng: random.Random):
    """One random request: (method, path, headers, raw body, token)."""
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "POST", "GET", "BREW", "PROPFIND"])
    path = "/v1/jobs" if rng.random() < 0.4 else rng.choice(["/v1/health", "/v1/jobs", "/v1/jobs/abc", "/v1/jobs/abc/cancel", "/v1/jobs/abc/files/x",
                       "/", "/v1", "/v1/", "/v1/jobs//", "/v1/health?x=1", "/%00", "/v1/jobs/%2e%2e/files/%2e%2e",
                       "/v1/" + "a" * 3000, "/v1/jobs/%C3%A9", "//v1//health"])
    if path == "/v1/jobs" and rng.random() < 0.8:
        method = "POST"
    token = rng.choice([TOKEN, TOKEN, TOKEN, None, "", "x" * 500, TOKEN + "\u00e9", " " + TOKEN])
    inputs = [{"kind": "strokes", "data": STROKES}, {"kind": "strokes", "data": "x"}, {"kind": "sketch_png", "data": 5},
              {"kind": "mask_png", "data": base64.b64encode(b"\x89PNG junk").decode()}, {"kind": None}, [], "input"]
    options = [FAST, dict(FAST, resolution=7), dict(FAST, seed=-1), dict(FAST, seed=1.5), dict(FAST, formats="ply"),
               dict(FAST, views=True), dict(FAST, nope=1), "fast", [1, 2], ["ab"], None, {"seed": float("nan")}]
    body_kind = rng.choice(["job", "job", "junkjson", "bytes", "empty", "deep", "wrongtype"])
    if body_kind == "job":
        obj = {"input": rng.choice(inputs), "options": rng.choice(options)}
        if rng.random() < 0.2:
            obj["extra"] = 1
        if rng.random() < 0.2:
            del obj["input"]
        raw = json.dumps(obj).encode()
    elif body_kind == "junkjson":
        raw = rng.choice([b"{", b"[1,2", b"nul", b"\"", b"{\"input\": }", b"\xff\xfe", b"NaN", b"1e999999"])
    elif body_kind == "bytes":
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    elif body_kind == "deep":
        raw = b"[" * 50_000 + b"]" * 50_000
    elif body_kind == "wrongtype":
        raw = rng.choice([b"[]", b"1", b"\"str\"", b"null", b"true", b"{\"input\": []}"])
    else:
        raw = b""
    headers = {}
    if rng.random() < 0.7:
        headers["Content-Type"] = rng.choice(["application/json", "text/plain", "\u00ff", ""])
    if rng.random() < 0.15:
        headers["Content-Length"] = rng.choice(["abc", "-5", str(10 ** 12), "1e3", ""])
    if rng.random() < 0.1:
        headers["X-Junk"] = "y" * rng.randint(0, 5000)
    return method, path, headers, raw, token


def test_fuzzed_requests_get_json_answers_and_the_server_lives_on(server):
    app, port = server
    rng = random.Random(8)
    seen: dict[int, int] = {}
    codes: set[str] = set()
    for i in range(250):
        method, path, headers, raw, token = _fuzz_request(rng)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        h = dict(headers)
        if token is not None:
            h["Authorization"] = f"Bearer {token}".encode("utf-8").decode("latin-1")
        body = raw if method in ("POST", "PUT", "PATCH") or rng.random() < 0.2 else None
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v.encode("latin-1", "replace"))
            if body is not None and "Content-Length" not in h:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        seen[resp.status] = seen.get(resp.status, 0) + 1
        if resp.status >= 400:
            codes.add(json.loads(payload)["error"]["code"])
        ctx = (i, method, path, h.get("Content-Length"), raw[:40])
        assert resp.getheader("Content-Type", "").startswith("application/json"), (resp.status, payload[:100], ctx)
        _assert_json_answer(resp.status, json.loads(payload), ctx)
        if resp.status == 202:  # a valid job slipped through: let it finish, so the queue stays small
            wait(port, json.loads(payload)["job_id"])
    assert seen.get(401, 0) > 10 and seen.get(400, 0) > 10, seen  # the fuzz reached the handlers
    assert {"bad_json", "bad_request", "bad_option", "unauthorized", "method_not_allowed"} <= codes, codes
    print("fuzz statuses", dict(sorted(seen.items())), "codes", sorted(codes))
    code, health = call(port, "GET", "/v1/health")
    assert code == 200 and health["status"] == "ok"
    assert app.worker.is_alive()


def test_malformed_http_and_stalled_bodies_get_json_errors(server):
    _, port = server
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    for raw_request, want_status, want_code in [
            (b"GARBAGE\r\n\r\n", None, "bad_request"),
            (b"GET /v1/health HTTP/9.9\r\n\r\n", None, "http_version_not_supported"),
            (b"BREW /v1/health HTTP/1.1\r\n" + host + b"\r\n", 405, "method_not_allowed"),
            (b"GET /v1/health HTTP/1.1\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n", 431, "headers_too_large")]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw_request)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        if want_status is None:  # a request line the stdlib cannot parse is answered HTTP/0.9-style: body alone
            assert answer.startswith(b"{"), answer[:80]
            payload = answer
        else:
            head, _, payload = answer.partition(b"\r\n\r\n")
            assert int(head.split()[1]) == want_status and b"application/json" in head, (raw_request[:30], head)
        assert json.loads(payload)["error"]["code"] == want_code, (raw_request[:30], payload[:200])
    # a client that promises a body and stalls gets 408 after the time-out, and frees the thread
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Length: 100\r\n\r\n{".encode())
        answer = b""
        while chunk := s.recv(65536):  # head and body may arrive in separate segments; the server closes
            answer += chunk
    assert b" 408 " in answer.split(b"\r\n")[0] and b"request_timeout" in answer
    assert call(port, "GET", "/v1/health")[0] == 200


def test_nested_options_and_deep_json_are_client_errors(server):
    _, port = server
    for raw, code in [(b"[" * 100_000 + b"]" * 100_000, "bad_json"),
                      (json.dumps({"input": {"kind": "strokes", "data": STROKES}, "options": ["ab"]}).encode(),
                       "bad_option"),
                      (json.dumps({"input": {"kind": "strokes", "data": STROKES}, "options": "fast"}).encode(),
                       "bad_option")]:
        status, err = call(port, "POST", "/v1/jobs", raw=raw)
        assert status == 400 and err["error"]["code"] == code, (raw[:30], err)


def test_concurrent_clients_every_job_completes_or_is_refused(models, tmp_path):
    """8 clients x 3 jobs against one server with a queue of 2: each job is done or 429, none lost or stuck."""
    app, httpd = _start(models, tmp_path / "jobs", max_queue=2)
    port = httpd.server_address[1]
    clients, per_client = 8, 3
    outcomes: list[tuple[str, str | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            for j in range(per_client):
                job = {"input": {"kind": "strokes", "data": STROKES, "name": f"c{k}j{j}"},
                       "options": dict(FAST, seed=k * 10 + j)}
                code, body = call(port, "POST", "/v1/jobs", job)
                if code == 429:
                    assert body["error"]["code"] == "queue_full"
                    with lock:
                        outcomes.append(("refused", None))
                    continue
                assert code == 202, body
                final = wait(port, body["job_id"], timeout=300)
                with lock:
                    outcomes.append((final["state"], body["job_id"]))
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors
        assert len(outcomes) == clients * per_client  # none lost
        states = [s for s, _ in outcomes]
        print(f"load: {clients} clients x {per_client} jobs, queue 2: done {states.count('done')}, "
              f"refused {states.count('refused')}, lost {clients * per_client - len(outcomes)}")
        assert set(states) <= {"done", "refused"}, states
        assert states.count("done") >= 1 and states.count("refused") >= 1  # both paths were exercised
        done_ids = [jid for s, jid in outcomes if s == "done"]
        assert len(set(done_ids)) == len(done_ids)
        for jid in done_ids:
            assert (tmp_path / "jobs" / jid / "result.json").is_file()
        assert app.queue.qsize() == 0 and app.worker.is_alive()
    finally:
        _stop(app, httpd)


# --------------------------------------------------------------------------- output path safety

def test_file_names_escaping_the_job_folder_are_refused(server, tmp_path):
    app, port = server
    code, body = call(port, "POST", "/v1/jobs", {"input": {"kind": "strokes", "data": STROKES},
                                                 "options": FAST})
    assert code == 202
    job_id = body["job_id"]
    assert wait(port, job_id)["state"] == "done"
    secret = app.jobs_dir / "secret.txt"  # a file next to the job folder
    secret.write_text("not yours")
    for rel in ["../secret.txt", "..%2Fsecret.txt", "%2e%2e/secret.txt", "%2e%2e%2fsecret.txt", "/etc/passwd",
                "%2Fetc%2Fpasswd", "views/../../secret.txt", "views%2F..%2F..%2Fsecret.txt", "..\\secret.txt",
                "mesh.ply%00.png", "./mesh.ply", f"../{job_id}/mesh.ply", "~/.ssh/id_rsa"]:
        code, err = call(port, "GET", f"/v1/jobs/{job_id}/files/{rel}")
        assert code == 404 and err["error"]["code"] in ("file_not_found", "not_found"), (rel, code, err)
    assert call(port, "GET", f"/v1/jobs/{job_id}/files/mesh.ply")[0] == 200
    for bad_id in ["..", "%2e%2e", "../" + job_id]:
        code, err = call(port, "GET", f"/v1/jobs/{bad_id}/files/mesh.ply")
        assert code == 404, (bad_id, err)


def test_generate_into_an_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """Two cases: the parent of --out is a regular file (mkdir fails), and --out's parent is an existing folder
    that refuses writes (only the write check catches that; simulated with EACCES, since root may write
    anywhere). Both are refused before the models load (the weights folder does not exist, so a later check
    would say weights_missing), and nothing is created."""
    from backend.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "out"
    r = subprocess.run([sys.executable, "-m", "backend.cli", "generate", str(ROOT / "examples" / "head_front.json"),
                        "--out", str(out), "--weights", str(tmp_path / "no_weights")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "output_not_writable" in r.stderr and str(out) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and blocker.read_text() == "x"

    locked = tmp_path / "locked"
    locked.mkdir()
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(real):
        def call(path, *a, **kw):
            if str(path).startswith(str(locked)):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *a, **kw)
        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    capsys.readouterr()
    rc = main(["generate", str(ROOT / "examples" / "head_front.json"), "--out", str(locked / "out"),
               "--weights", str(tmp_path / "no_weights"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "[output_not_writable]" in err and str(locked / "out") in err, err
    monkeypatch.undo()
    assert list(locked.iterdir()) == []


def _job_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_failing_jobs_leave_no_partial_files(models, tmp_path, monkeypatch):
    opts = GenerateOptions(**FAST, formats=("ply", "glb"))
    # a full disk while the preview views are written (after the meshes and masks)
    calls = {"n": 0}
    real_write = backend.export.atomic_write_bytes

    def full_disk(path, data):
        calls["n"] += 1
        if "views" in str(path) and calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(backend.export, "atomic_write_bytes", full_disk)
    keep = tmp_path / "full" / "notes.txt"  # the user's own file in the folder stays
    keep.parent.mkdir()
    keep.write_text("mine")
    with pytest.raises(PipelineError) as e:
        generate(STROKES, tmp_path / "full", opts, models=models)
    assert e.value.code == "disk_full" and "space" in str(e.value)
    assert _job_files(tmp_path / "full") == ["notes.txt"] and keep.read_text() == "mine"
    monkeypatch.undo()

    # out of memory at the grid stage: a clear code suggesting a lower resolution; nothing written
    def no_memory(*a, **kw):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(backend.mesh, "density_grid", no_memory)
    with pytest.raises(PipelineError) as e:
        generate(STROKES, tmp_path / "oom", GenerateOptions(**dict(FAST, resolution=128)), models=models)
    assert e.value.code == "out_of_memory" and "--resolution 64" in str(e.value)
    assert _job_files(tmp_path / "oom") == []
    monkeypatch.undo()

    # a failure after the meshes were written (preview rendering): the written files are taken back
    def broken_previews(*a, **kw):
        raise MemoryError()

    monkeypatch.setattr("backend.previews.render_previews", broken_previews)
    with pytest.raises(PipelineError) as e:
        generate(STROKES, tmp_path / "late", opts, models=models)
    assert e.value.code == "out_of_memory"
    assert _job_files(tmp_path / "late") == []
    monkeypatch.undo()
    # and the same call without the fault writes the complete set, result.json included
    result = generate(STROKES, tmp_path / "late", opts, models=models)
    assert "result.json" in _job_files(tmp_path / "late") and set(result["files"]) == set(_job_files(tmp_path / "late"))


def test_a_cancelled_queued_job_that_is_forgotten_does_not_stop_the_worker(server, monkeypatch):
    import backend.server_jobs as srv_jobs

    app, port = server
    entered, release = threading.Event(), threading.Event()
    original = backend.mesh.density_grid

    def gated(*a, **kw):
        entered.set()
        assert release.wait(60)
        return original(*a, **kw)

    monkeypatch.setattr(backend.mesh, "density_grid", gated)
    job = {"input": {"kind": "strokes", "data": STROKES}, "options": FAST}
    _, running = call(port, "POST", "/v1/jobs", job)
    assert entered.wait(60)
    _, queued = call(port, "POST", "/v1/jobs", job)
    assert call(port, "POST", f"/v1/jobs/{queued['job_id']}/cancel")[1]["state"] == "cancelled"
    monkeypatch.setattr(srv_jobs, "MAX_FINISHED_JOBS", 0)  # the job table's own setting
    code, last = call(port, "POST", "/v1/jobs", job)  # prunes the cancelled job while its id is still queued
    assert code == 202 and call(port, "GET", f"/v1/jobs/{queued['job_id']}")[0] == 404
    release.set()
    assert wait(port, running["job_id"])["state"] == "done"
    assert wait(port, last["job_id"])["state"] == "done" and app.worker.is_alive()


# --------------------------------------------------------------------------- issue 42: nothing lost, nothing mixed

def _all_entries(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def test_two_jobs_into_one_folder_never_mix(models, tmp_path, monkeypatch):
    """A second job for a folder that a live job holds is refused (output_busy), never mixed; staggered
    jobs replace the previous job's set whole (no stale mesh.glb next to a new result.json); the user's
    own file stays."""
    dest = tmp_path / "out"
    entered, release = threading.Event(), threading.Event()
    original = backend.mesh.density_grid

    def gated(*a, **kw):
        if not entered.is_set():  # only the first job waits
            entered.set()
            assert release.wait(60)
        return original(*a, **kw)

    monkeypatch.setattr(backend.mesh, "density_grid", gated)
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(r=generate(STROKES, dest, GenerateOptions(
        **FAST, seed=0, formats=("ply", "glb")), models=models)))
    t.start()
    try:
        assert entered.wait(60)
        assert not dest.exists()  # nothing appears before the job is complete
        with pytest.raises(PipelineError) as e:
            generate(STROKES, dest, GenerateOptions(**FAST, seed=1), models=models)
        assert e.value.code == "output_busy" and str(dest) in str(e.value)
    finally:
        release.set()
        t.join(120)
    monkeypatch.undo()
    assert json.loads((dest / "result.json").read_text())["seed"] == 0
    assert sorted(first["r"]["files"]) == _job_files(dest)
    (dest / "notes.txt").write_text("mine")
    second = generate(STROKES, dest, GenerateOptions(**FAST, seed=1, formats=("ply",)), models=models)
    assert json.loads((dest / "result.json").read_text())["seed"] == 1
    assert _job_files(dest) == sorted(second["files"] + ["notes.txt"]) and "mesh.glb" not in _job_files(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder or lock file left


def test_failed_or_refused_jobs_leave_no_folder(models, tmp_path, monkeypatch):
    """A refused input, a refused option and a job failing mid-way leave no --out folder (nor its parents)."""
    wide = {"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "width": 100}]}
    for source, opts, code in [(wide, GenerateOptions(**FAST), "stroke_bad_width"),
                               (STROKES, GenerateOptions(**FAST, max_faces=1), "bad_option"),
                               (b"not an image at all", GenerateOptions(**FAST), "image_unreadable")]:
        with pytest.raises(PipelineError) as e:
            generate(source, tmp_path / "new" / "out", opts, models=models)
        assert e.value.code == code
        assert _all_entries(tmp_path) == [], (code, _all_entries(tmp_path))

    def fails(*a, **kw):
        raise backend.mesh.MeshError("empty_surface", "forced by the test")

    monkeypatch.setattr(backend.mesh, "density_grid", fails)
    with pytest.raises(PipelineError):
        generate(STROKES, tmp_path / "new" / "out", GenerateOptions(**FAST), models=models)
    assert _all_entries(tmp_path) == []


@pytest.mark.parametrize("opts", [{"max_faces": 1}, {"max_faces": True}, {"max_faces": -5}, {"max_faces": 10 ** 12},
                                  {"resolution": 64.0}, {"resolution": True}, {"views": True}, {"views": 4.0},
                                  {"seed": True}, {"seed": 2 ** 63}, {"smooth_iterations": True},
                                  {"smooth_iterations": 51}, {"view_resolution": 4096}, {"color_resolution": False},
                                  {"no_frame": "yes"}, {"formats": ["ply", 1]}, {"formats": [["ply"]]}])
def test_numeric_options_are_range_checked(opts):
    with pytest.raises(PipelineError) as e:
        GenerateOptions.from_dict(dict(FAST, **opts))
    assert e.value.code == "bad_option" and str(e.value)


def test_cli_max_faces_1_is_a_coded_error_and_leaves_no_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "backend.cli", "generate", str(ROOT / "examples" / "head_front.json"),
                        "--out", str(tmp_path / "o"), "--max-faces", "1"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "[bad_option]" in r.stderr and "max_faces" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_stroke_widths_at_the_limit_draw_and_beyond_it_are_refused():
    for frame in ({}, {"frame": "image", "width": 1024, "height": 1024}):
        unit = 1.0 if not frame else 1024.0
        limit = MAX_STROKE_WIDTH_PX / 512 * unit
        doc = dict(frame, strokes=[{"points": [[0.2 * unit, 0.2 * unit], [0.7 * unit, 0.8 * unit]], "width": limit}])
        assert (load_sketch_checked(doc).image < 128).mean() > 0.05
        doc["strokes"][0]["width"] = limit * 1.01
        with pytest.raises(IntakeError) as e:
            load_sketch_checked(doc)
        assert e.value.code == "stroke_bad_width"


def _png(w: int, h: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 255).save(buf, "PNG")
    return buf.getvalue()


def test_image_limits_are_checked_from_the_header():
    import resource

    big = _png(8192, 8192)  # about 85 KB, 67 megapixels
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    for loader in (load_sketch_checked, backend.input_limits.load_mask_checked):
        with pytest.raises(IntakeError) as e:
            loader(big)
        assert e.value.code == "image_too_large" and "megapixels" in str(e.value)
    assert time.perf_counter() - t0 < 1.0  # never decoded
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100_000  # KiB: no 64 MB decode
    # not an image: a plain sentence, no Python object repr
    with pytest.raises(IntakeError) as e:
        load_sketch_checked(b"hello, this is text and not a PNG")
    assert e.value.code == "image_unreadable" and "not an image" in str(e.value)
    assert "BytesIO" not in str(e.value) and "0x" not in str(e.value)
    # an animated GIF is refused, not silently reduced to its first frame
    frames = [Image.fromarray(np.where(np.arange(64)[:, None] % 16 < k, 0, 255).astype(np.uint8).repeat(64, 1))
              for k in (2, 8)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(IntakeError) as e:
        load_sketch_checked(buf.getvalue())
    assert e.value.code == "image_multi_frame"
    # a JPEG sketch over the pixel cap is decoded at a reduced scale instead
    a = np.full((4800, 4000), 255, np.uint8)
    a[2000:2100, 500:3500] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    assert 4800 * 4000 > MAX_DECODE_PIXELS
    sk = load_sketch_checked(buf.getvalue())
    assert sk.size == (1000, 1200)  # decoded at 1/4 scale: never at full size
    # a PNG at the cap is decoded, then reduced before the grey conversion
    a = np.full((4096, 4000, 3), 255, np.uint8)
    a[2000:2040, 500:3500] = 0
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    sk = load_sketch_checked(buf.getvalue())
    assert sk.size == (2000, 2048) and (sk.image < 128).any()


def test_http_stroke_width_and_max_faces_are_400_not_500(server):
    _, port = server
    wide = {"strokes": [{"points": [[0.1, 0.1], [0.5, 0.5]], "width": 100}]}
    code, body = call(port, "POST", "/v1/jobs", {"input": {"kind": "strokes", "data": wide}, "options": FAST})
    assert code == 400 and body["error"]["code"] == "stroke_bad_width", body
    code, body = call(port, "POST", "/v1/jobs", {"input": {"kind": "strokes", "data": STROKES},
                                                 "options": dict(FAST, max_faces=True)})
    assert code == 400 and body["error"]["code"] == "bad_option", body
    code, body = call(port, "POST", "/v1/jobs", {"input": {"kind": "sketch_png",
                                                           "data": base64.b64encode(_png(8192, 8192)).decode()}})
    assert code == 400 and body["error"]["code"] == "image_too_large", body


def test_decodes_in_flight_are_bounded(server, monkeypatch):
    import backend.input_limits as limits
    import backend.server as srv

    _, port = server
    lock, active, peak = threading.Lock(), [0], [0]

    def slow(source):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.3)
        with lock:
            active[0] -= 1
        raise IntakeError("image_blank", "the test's decoder")  # refused: nothing is queued

    monkeypatch.setattr(limits, "load_sketch_checked", slow)
    body = {"input": {"kind": "sketch_png", "data": base64.b64encode(b"x" * 100).decode()}, "options": FAST}
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(call(port, "POST", "/v1/jobs", body)[0]))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert codes == [400] * 6 and 1 <= peak[0] <= srv.MAX_DECODES_IN_FLIGHT, (codes, peak)


def test_host_header_must_be_the_bound_address(server):
    _, port = server
    for host in (f"evil.example:{port}", "127.0.0.1:1", f"127.0.0.1.nip.io:{port}"):
        code, body = call(port, "GET", "/v1/health", headers={"Host": host})
        assert code == 421 and body["error"]["code"] == "host_not_allowed", (host, body)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert call(port, "GET", "/v1/health", headers={"Host": host})[0] == 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # no Host at all
        s.sendall(f"GET /v1/health HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert b" 421 " in answer.split(b"\r\n")[0] and b"host_not_allowed" in answer


def test_connections_beyond_the_cap_get_503_and_are_closed(models, tmp_path, monkeypatch):
    import backend.server as srv

    monkeypatch.setattr(srv._CappedServer, "max_connections", 4)
    app, httpd = _start(models, tmp_path / "jobs", max_queue=2)
    port = httpd.server_address[1]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    try:
        time.sleep(0.3)  # the server has accepted them
        code, body = call(port, "GET", "/v1/health")
        assert code == 503 and body["error"]["code"] == "too_many_connections", body
    finally:
        for s in idle:
            s.close()
    t0 = time.time()
    while time.time() - t0 < 10:  # the idle connections' threads end and free their slots
        if call(port, "GET", "/v1/health")[0] == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the server did not serve again after the idle connections closed")
    _stop(app, httpd)


@pytest.mark.parametrize("stage", ["load_models", "intake", "sketch_to_mask", "planes", "density_grid", "mesh",
                                   "vertex_colors", "export"])
def test_kill_9_mid_job_then_restart_leaves_no_half_folder(models, tiny_weights, tmp_path, stage):
    """``kill -9`` of a server while a job is in each stage (at its start; export: in its middle, the meshes
    written, the views not yet),
    then a new server on the same jobs folder: the finished job answers done with its files, the killed one
    failed (``interrupted``), and no half-written folder is left in the server's own jobs folder."""
    import signal

    jobs = tmp_path / "jobs"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "crash_server_helper.py"), str(tiny_weights),
                             str(jobs), stage], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    crash_token = "crash-token-0123456789"
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY "), line
        port = int(line.split()[1])
        job = {"input": {"kind": "strokes", "data": STROKES}, "options": FAST}
        _, first = call(port, "POST", "/v1/jobs", job, token=crash_token)
        t0 = time.time()
        while call(port, "GET", f"/v1/jobs/{first['job_id']}", token=crash_token)[1]["state"] != "done":
            assert time.time() - t0 < 120
            time.sleep(0.05)
        _, second = call(port, "POST", "/v1/jobs", job, token=crash_token)
        assert proc.stdout.readline().strip() == "BLOCKED"
        assert json.loads((jobs / "jobs.json").read_text())["jobs"][1]["state"] == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = _all_entries(jobs)
    assert not (jobs / second["job_id"]).exists()  # the killed job's files are only in its temporary folder
    if stage == "export":
        assert any(".s3d-tmp-" in e and e.endswith("mesh.ply") for e in before), before
    app, httpd = _start(models, jobs, max_queue=2)
    try:
        port = httpd.server_address[1]
        st1 = call(port, "GET", f"/v1/jobs/{first['job_id']}")[1]
        assert st1["state"] == "done" and "mesh.ply" in st1["files"] and st1["result"]["seed"] == 0
        assert call(port, "GET", f"/v1/jobs/{first['job_id']}/files/mesh.ply")[0] == 200
        st2 = call(port, "GET", f"/v1/jobs/{second['job_id']}")[1]
        assert st2["state"] == "failed" and st2["error"]["code"] == "interrupted", st2
        left = sorted(p.name for p in jobs.iterdir())
        assert left == sorted([first["job_id"], "jobs.json"]), left
    finally:
        _stop(app, httpd)
