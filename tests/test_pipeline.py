"""The generate pipeline on CPU with tiny random-initialised weights (no bundled weights needed).

The untrained field has no surface, so the full-pipeline tests add an analytic ellipsoid to the
occupancy (tests/s3d_tiny_weights.py) while keeping the networks' own colours and classes.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.export import read_ply
from backend.coords import metres_to_box
from backend.mesh import density_grid, extract_mesh, marching_cubes
from backend.models.mask2triplane import Mask2Triplane
from backend.pipeline import GenerateOptions, JobCancelled, PipelineError, generate, load_models
from backend.vertex_colors import blend_vertex_colors, render_views, standard_views, vertex_normals
from s3d_tiny_weights import make_tiny_weights, sphere_query

RADII = (0.55, 0.6, 0.7)  # box units: 0.11 x 0.12 x 0.14 m half extents
FAST = dict(resolution=64, views=4, view_resolution=96, color_resolution=64)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def sphere_field(monkeypatch):
    monkeypatch.setattr(Mask2Triplane, "query", sphere_query(Mask2Triplane.query, RADII))


@pytest.fixture(scope="module")
def sketch_png(tmp_path_factory):
    import cv2

    img = np.full((480, 400), 255, np.uint8)
    cv2.ellipse(img, (200, 250), (110, 150), 0, 0, 360, 0, 3)
    cv2.line(img, (160, 220), (190, 220), 0, 2)
    cv2.line(img, (210, 220), (240, 220), 0, 2)
    cv2.line(img, (180, 320), (220, 320), 0, 2)
    path = tmp_path_factory.mktemp("in") / "face.png"
    Image.fromarray(img).save(path)
    return path


def test_full_generate_writes_every_output_and_a_clean_mesh(weights_dir, sphere_field, sketch_png, tmp_path):
    stages = []
    out = tmp_path / "job"
    result = generate(sketch_png, out, GenerateOptions(seed=3, formats=("ply", "glb", "obj")),
                      weights_dir=weights_dir, device="cpu", progress=lambda s, f: stages.append((s, f)))
    # files
    for f in ["mesh.ply", "mesh.glb", "mesh.obj", "mask.png", "mask_color.png", "result.json", "sketch_framed.png"]:
        assert (out / f).is_file(), f
    views = sorted(p.name for p in (out / "views").glob("*.png"))
    assert len(views) == 6 and "front.png" in views and "below_chin.png" in views
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["files"] == result["files"] and "mesh.glb" in on_disk["files"]
    # mask.png is in the input's pixel frame, mask_color.png is its palette image
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (480, 400) and mask.max() <= 18
    assert np.asarray(Image.open(out / "mask_color.png")).shape == (480, 400, 3)
    # progress: every stage reported, fractions monotone in [0, 1], ending at 1
    fr = [f for _, f in stages]
    assert fr == sorted(fr) and fr[-1] == 1.0 and fr[0] >= 0.0
    assert {"sketch_to_mask", "planes", "density_grid", "mesh", "vertex_colors", "export"} <= {s for s, _ in stages}
    # result.json content
    assert result["seed"] == 3 and result["device"] == "cpu"
    import hashlib

    assert result["sketch_sha256"] == hashlib.sha256(sketch_png.read_bytes()).hexdigest()
    assert set(result["weights"]) == {"mask2triplane_lite", "sketch2mask_lite"}
    assert all(len(w["sha256"]) == 64 for w in result["weights"].values())
    assert result["framing"]["auto_framed"] and result["framing"]["input_size"] == [400, 480]
    assert {"density_grid", "mesh", "vertex_colors", "total"} <= set(result["timings_s"])
    assert sum(result["class_vertex_counts"].values()) == result["vertex_count"]
    # coarse to fine evaluates a small part of the dense grid
    assert sum(result["mesh"]["grid_points_evaluated"]) < 0.3 * result["mesh"]["grid_points_dense"]

    # the mesh: one watertight component, outward normals, metres, the ellipsoid's size
    import trimesh

    ply = read_ply((out / "mesh.ply").read_bytes())
    assert len(ply["vertices"]) == result["vertex_count"] and len(ply["faces"]) == result["face_count"]
    tm = trimesh.Trimesh(ply["vertices"], ply["faces"], process=False)
    assert tm.is_watertight and tm.volume > 0
    size = ply["vertices"].max(0) - ply["vertices"].min(0)
    assert np.allclose(size, 2 * 0.2 * np.array(RADII), atol=0.006), size
    assert np.allclose(result["bbox_m"]["size"], size, atol=1e-4)
    assert ply["rgb"].std() > 0  # coloured, not a flat fallback
    labels = ply["label"]
    assert labels.min() >= 1 and labels.max() <= 18  # surface vertices are never background
    # GLB: a valid glTF 2.0 binary with float colours for every vertex
    glb = (out / "mesh.glb").read_bytes()
    magic, version, length = struct.unpack("<4sII", glb[:12])
    assert magic == b"glTF" and version == 2 and length == len(glb)
    jlen = struct.unpack("<I", glb[12:16])[0]
    gltf = json.loads(glb[20:20 + jlen])
    acc = gltf["accessors"]
    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    assert acc[attrs["COLOR_0"]]["componentType"] == 5126 and acc[attrs["COLOR_0"]]["count"] == result["vertex_count"]
    loaded = trimesh.load(out / "mesh.glb", force="mesh")
    assert len(loaded.faces) == result["face_count"]
    # OBJ carries the same vertices with colours
    obj_v = [ln for ln in (out / "mesh.obj").read_text().splitlines() if ln.startswith("v ")]
    assert len(obj_v) == result["vertex_count"] and len(obj_v[0].split()) == 7


@pytest.mark.parametrize("mirror_average", [False, True])
def test_vertex_colours_and_classes_come_from_the_field(weights_dir, sphere_field, tmp_path, mirror_average):
    """PLY colours match the field's colour near the surface; labels match the semantic argmax; also for a
    generator whose card asks for mirror averaging (planes are a mirror pair, the field their mean)."""
    import shutil

    from backend.pipeline import FieldQuery
    from backend.colorspace import linear_to_srgb

    if mirror_average:
        weights_dir = Path(shutil.copytree(weights_dir, tmp_path / "weights_mirror"))
        card_path = weights_dir / "mask2triplane_lite.json"
        card_path.write_text(json.dumps(dict(json.loads(card_path.read_text()), inference={"mirror_average": True})))

    ids = np.zeros((256, 256), np.uint8)
    ids[40:220, 70:190] = 1
    ids[40:90, 60:200] = 13
    result = generate(ids, tmp_path, GenerateOptions(seed=5, from_mask=True, no_frame=True, **FAST),
                      weights_dir=weights_dir, device="cpu")
    ply = read_ply((tmp_path / "mesh.ply").read_bytes())
    bundle = load_models(weights_dir, "cpu", need_sketch=False)
    m2t = bundle.mask2triplane
    framed = np.asarray(Image.fromarray(ids).resize((512, 512), Image.NEAREST))
    planes = m2t.planes_from_mask(torch.from_numpy(framed.astype(np.int64))[None], m2t.sample_z(5))
    assert m2t.mirror_average is mirror_average and planes.dim() == (6 if mirror_average else 5)
    q = FieldQuery(m2t, planes, "cpu")(metres_to_box(ply["vertices"]).astype(np.float32), semantic=True)
    expected = np.round(linear_to_srgb(q["rgb"]) * 255)
    assert np.abs(ply["rgb"].astype(float) - expected).mean() < 6.0  # of 255
    assert (ply["label"] == q["semantic"][:, 1:].argmax(1) + 1).mean() > 0.9  # up to border smoothing
    assert result["vertex_colors"]["vertices_seen"] > 0.99


def test_same_seed_same_mesh_other_seed_other_colours(weights_dir, sphere_field, sketch_png, tmp_path):
    a = generate(sketch_png, tmp_path / "a", GenerateOptions(seed=7, **FAST), weights_dir=weights_dir, device="cpu")
    b = generate(sketch_png, tmp_path / "b", GenerateOptions(seed=7, **FAST), weights_dir=weights_dir, device="cpu")
    c = generate(sketch_png, tmp_path / "c", GenerateOptions(seed=8, **FAST), weights_dir=weights_dir, device="cpu")
    pa, pb, pc = ((tmp_path / d / "mesh.ply").read_bytes() for d in "abc")
    assert pa == pb
    assert a["vertex_count"] == b["vertex_count"]
    assert read_ply(pa)["rgb"].tolist() != read_ply(pc)["rgb"].tolist()
    assert c["seed"] == 8


def test_untrained_field_reports_empty_surface(weights_dir, tmp_path):
    bundle = load_models(weights_dir, "cpu")
    with torch.no_grad():
        bundle.mask2triplane.decoder.out.bias[0] = -40.0  # occupancy logit far below 0 everywhere
    with pytest.raises(PipelineError) as e:
        generate(np.pad(np.zeros((64, 64), np.uint8), 100, constant_values=255), tmp_path, GenerateOptions(**FAST),
                 models=bundle)
    assert e.value.code == "empty_surface"
    assert not (tmp_path / "result.json").exists()


def test_cancel_between_stages_and_bad_inputs(weights_dir, sphere_field, sketch_png, tmp_path):
    seen = []

    def cancel():
        return "planes" in seen

    with pytest.raises(JobCancelled) as e:
        generate(sketch_png, tmp_path / "x", GenerateOptions(**FAST), weights_dir=weights_dir, device="cpu",
                 progress=lambda s, f: seen.append(s), cancel=cancel)
    assert e.value.code == "cancelled" and "density_grid" not in seen
    with pytest.raises(PipelineError) as e:
        generate(b"not an image", tmp_path / "y", GenerateOptions(**FAST), weights_dir=weights_dir)
    assert e.value.code == "image_unreadable"
    with pytest.raises(PipelineError) as e:
        generate(sketch_png, tmp_path / "z", GenerateOptions(resolution=100), weights_dir=weights_dir)
    assert e.value.code == "bad_option"
    with pytest.raises(PipelineError) as e:
        generate(sketch_png, tmp_path / "w", GenerateOptions(**FAST), weights_dir=tmp_path / "none")
    assert e.value.code == "weights_missing" and "mask2triplane_lite" in str(e.value)


# --- the mesh and colour stages on analytic fields --------------------------------------------------

def _blob(p):
    p = np.asarray(p, np.float64)
    main = 1.0 - np.linalg.norm(p / [0.5, 0.6, 0.7], axis=1)
    ear = 1.0 - np.linalg.norm((p - [0.55, 0.0, 0.0]) / [0.08, 0.15, 0.2], axis=1)  # a thin feature
    floater = 1.0 - np.linalg.norm((p - [-0.8, 0.8, 0.8]) / 0.06, axis=1)
    return (30.0 * np.maximum(np.maximum(main, ear), floater)).astype(np.float32)


def test_coarse_to_fine_grid_matches_the_dense_grid():
    fine = density_grid(_blob, 64, 0.0, levels=3)
    dense = density_grid(_blob, 64, 0.0, levels=1)
    v1, f1 = marching_cubes(fine)
    v2, f2 = marching_cubes(dense)
    assert len(f1) == len(f2) and np.allclose(v1, v2, atol=1e-6)
    assert sum(fine.evaluated) < 0.5 * dense.evaluated[0]


def test_extract_mesh_drops_floaters_and_decimates():
    grid = density_grid(_blob, 128, 0.0)
    mesh = extract_mesh(grid, smooth_iterations=3, max_faces=20_000)
    assert mesh.stats["components"] >= 2 and mesh.stats["kept_face_fraction"] > 0.95
    assert len(mesh.faces) <= 20_500
    assert mesh.vertices[:, 0].min() > -0.2 * 0.55  # the floater at x = -0.8 is gone
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.volume > 0


def test_view_blend_recovers_a_known_colour_pattern():
    def field(p):
        p = np.asarray(p, np.float64)
        rgb = np.stack([(p[:, 1] < 0), np.clip(p[:, 2] + 0.5, 0, 1), (p[:, 0] > 0)], 1).astype(np.float32)
        return {"sigma": np.maximum(_blob(p), 0.0) * 3, "rgb": rgb}

    grid = density_grid(lambda p: field(p)["sigma"], 96, 30.0 * 3 * 0.05)
    mesh = extract_mesh(grid, smooth_iterations=0, max_faces=None)
    vb = metres_to_box(mesh.vertices)
    renders = render_views(vb, mesh.faces, field, standard_views(6), 160)
    colours, seen = blend_vertex_colors(vb, vertex_normals(vb, mesh.faces), renders, np.zeros((len(vb), 3)))
    truth = field(vb)["rgb"]
    err = np.abs(colours - truth).mean(1)
    assert np.median(err) < 0.02 and (seen > 0).mean() > 0.99


def test_batch_records_failures_and_resumes(weights_dir, sphere_field, sketch_png, tmp_path, capsys):
    from backend.cli import main

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "face.png").write_bytes(sketch_png.read_bytes())
    (src / "sub" / "strokes.json").write_text(json.dumps(
        {"strokes": [{"points": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8], [0.3, 0.3]], "width": 0.01}]}))
    (src / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    argv = ["batch", str(src), str(out), "--workers", "1", "--weights", str(weights_dir), "--resolution", "64",
            "--views", "4", "--quiet"]
    assert main(argv) == 1  # one failure -> exit code 1, the others done
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["done"]) == 2 and len(summary["failed"]) == 1
    assert summary["failed"][0]["code"] == "image_unreadable" and summary["failed"][0]["input"].endswith("broken.png")
    assert (out / "face" / "mesh.ply").is_file() and (out / "sub" / "strokes" / "result.json").is_file()
    assert main(argv) == 1  # resumes: the two finished inputs are skipped, the broken one is retried
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["skipped_existing"]) == 2 and summary["done"] == [] and len(summary["failed"]) == 1


def test_cli_generate_prints_where_the_files_are_and_stage_times(weights_dir, sphere_field, sketch_png, tmp_path,
                                                                 capsys):
    from backend.cli import main

    out = tmp_path / "demo"
    assert main(["generate", str(sketch_png), "--out", str(out), "--weights", str(weights_dir), "--resolution", "64",
                 "--views", "4", "--format", "ply,glb", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert str(out / "mesh.ply") in text and str(out / "mesh.glb") in text and str(out / "views") in text
    assert "density_grid" in text and "total" in text
    with pytest.raises(SystemExit) as e:
        main(["generate", str(sketch_png), "--out", str(out), "--format", "stl", "--quiet"])
    assert e.value.code == 2 and "bad_option" in capsys.readouterr().err


def test_bilinear_sampling_is_exact_on_a_ramp_for_many_points():
    from backend.vertex_colors import sample_bilinear

    h, w = 40, 50
    ramp = (np.arange(w)[None, :] * 2.0 + np.arange(h)[:, None] * 3.0)[..., None].astype(np.float32)
    rng = np.random.default_rng(0)
    cols, rows = rng.uniform(0, w - 1, 50_000), rng.uniform(0, h - 1, 50_000)  # more than OpenCV's 32767 limit
    got = sample_bilinear(ramp, cols, rows)[:, 0]
    assert np.allclose(got, cols * 2.0 + rows * 3.0, atol=1e-3)
    assert sample_bilinear(ramp, np.array([-5.0]), np.array([-5.0]))[0, 0] == 0.0  # outside is zero


def test_taubin_smoothing_removes_noise_without_shrinking():
    from backend.mesh import taubin_smooth

    grid = density_grid(lambda p: (30 * (0.6 - np.linalg.norm(p, axis=1))).astype(np.float32), 64, 0.0)
    v, f = marching_cubes(grid)
    noisy = v * (1 + np.random.default_rng(0).normal(0, 0.01, (len(v), 1)))
    smooth = taubin_smooth(noisy, f, 10)
    r0, r1 = np.linalg.norm(noisy, axis=1), np.linalg.norm(smooth, axis=1)
    assert r1.std() < 0.5 * r0.std()
    assert abs(r1.mean() - 0.6) < 0.01 * 0.6  # plain Laplacian smoothing would shrink it visibly


def test_vertex_classes_remove_speckles_and_never_pick_background():
    from backend.mesh import vertex_classes

    grid = density_grid(lambda p: (30 * (0.6 - np.linalg.norm(p, axis=1))).astype(np.float32), 32, 0.0)
    v, f = marching_cubes(grid)
    logits = np.zeros((len(v), 19))
    logits[:, 0] = 5.0  # background would win a plain argmax
    logits[:, 1] = 1.0  # skin
    logits[v[:, 2] > 0.3, 13] = 3.0  # hair on top
    speck = np.nonzero(v[:, 2] < -0.3)[0][0]
    logits[speck, 4] = 3.0  # one stray "eye" vertex
    ids = vertex_classes(logits, f)
    assert ids.min() >= 1
    assert (ids[v[:, 2] > 0.35] == 13).all() and (ids[v[:, 2] < 0.2] == 1).all()
    assert ids[speck] == 1


class _FaceMaskNet:
    """A stand-in SketchToMask: always the same face label map (skin ellipse, hair cap, eyes, lips), with
    the face smaller and lower than the canonical framing puts it, and a record of its calls."""

    def __init__(self):
        from backend.labels import LABEL_IDS

        yy, xx = np.mgrid[0:512, 0:512]
        m = np.zeros((512, 512), np.int64)
        m[((xx - 256) / 90.0) ** 2 + ((yy - 330) / 120.0) ** 2 <= 1] = LABEL_IDS["skin"]
        m[(((xx - 256) / 100.0) ** 2 + ((yy - 300) / 140.0) ** 2 <= 1) & (yy < 250)] = LABEL_IDS["hair"]
        for name, cx in (("l_eye", 226), ("r_eye", 286)):
            m[310:320, cx - 10:cx + 10] = LABEL_IDS[name]
        m[390:398, 236:276] = LABEL_IDS["u_lip"]
        m[398:406, 236:276] = LABEL_IDS["l_lip"]
        self.mask, self.calls = torch.from_numpy(m), []

    def predict_ids(self, x, mirror_average=None):
        self.calls.append(mirror_average)
        return self.mask[None].clone()


def test_eval_real_sketch_checks_see_the_mask_generate_makes(tmp_path):
    """s3d-eval's real-sketch checks and `s3d generate` share the sketch -> mask step, second framing pass
    included (until session 13 the checks used the first pass only, a mask no user sees)."""
    from backend.align import frame_sketch
    from backend.pipeline import predict_mask_with_refined_framing
    from training.eval_cli import predict_real_sketches

    img = np.full((600, 480), 255, np.uint8)
    cv2 = pytest.importorskip("cv2")
    cv2.ellipse(img, (240, 300), (150, 200), 0, 0, 360, 0, 3)
    Image.fromarray(img).save(tmp_path / "drawing.png")

    net = _FaceMaskNet()
    first, t = frame_sketch(img, 512)
    sketch, mask, refined = predict_mask_with_refined_framing(net, img, first, t, "cpu", True)
    assert net.calls == [True, True] and refined.method in ("landmarks", "head_box")
    assert refined.scale != pytest.approx(t.scale) and sketch.shape == mask.shape == (512, 512)

    net.calls.clear()
    (name, framed, ids), = predict_real_sketches(net, tmp_path, mirror_average=False)
    assert name == "drawing.png" and net.calls == [False, False]  # first pass, then the reframed one
    assert np.array_equal(ids, mask) and framed.dtype == np.float32
    assert np.allclose(framed, sketch.astype(np.float32) / 255.0)

    net.calls.clear()  # no automatic framing (--no-frame): nothing to refine, one pass
    first, t = frame_sketch(img, 512, auto_frame=False)
    predict_mask_with_refined_framing(net, img, first, t)
    assert net.calls == [None]


def test_symmetric_option_gives_a_mirror_symmetric_head_with_left_right_labels_kept(weights_dir, monkeypatch,
                                                                                   sketch_png, tmp_path):
    """A field with a bump on one side: without the option the mesh is not its own mirror image; with it,
    it is (exactly, through the smoothing), and a vertex's class is its twin's class with left and right
    swapped."""
    import torch.nn.functional as F
    from scipy.spatial import cKDTree

    from backend.labels import MIRROR_IDS
    from backend.symmetry import mirror_distance

    spherical = sphere_query(Mask2Triplane.query, RADII)

    def lopsided(self, planes, xyz):
        out = dict(spherical(self, planes, xyz))
        bump = torch.exp(-((xyz - xyz.new_tensor([0.45, -0.2, 0.2])) ** 2).sum(-1, keepdim=True) / 0.01)
        out["occupancy_logit"] = out["occupancy_logit"] + 10.0 * bump
        out["sigma"] = self.decoder.density_scale * F.softplus(out["occupancy_logit"])
        return out

    monkeypatch.setattr(Mask2Triplane, "query", lopsided)
    meshes = {}
    for sym in (False, True):
        generate(sketch_png, tmp_path / str(sym), GenerateOptions(seed=3, symmetric=sym, **FAST), weights_dir=weights_dir,
                 device="cpu")
        meshes[sym] = read_ply((tmp_path / str(sym) / "mesh.ply").read_bytes())
    assert mirror_distance(meshes[False]["vertices"], meshes[False]["faces"]).max() > 0.01  # metres: the bump
    sym = meshes[True]
    assert mirror_distance(sym["vertices"], sym["faces"]).max() < 1e-6  # exact (the target: within 0.5 mm)
    twins = cKDTree(sym["vertices"]).query(sym["vertices"] * np.array([-1.0, 1.0, 1.0]))[1]
    assert (np.asarray(MIRROR_IDS)[sym["label"]] == sym["label"][twins]).mean() > 0.98
    assert json.loads((tmp_path / "True" / "result.json").read_text())["options"]["symmetric"] is True
    with pytest.raises(PipelineError, match="symmetric"):
        GenerateOptions(symmetric="yes").validate()


def test_colour_picks_replace_the_group_mean_and_keep_the_shading():
    from backend.colour_picks import apply_picks, parse_picks
    from backend.labels import LABEL_IDS

    rng = np.random.default_rng(0)
    labels = np.repeat([LABEL_IDS["hair"], LABEL_IDS["skin"], LABEL_IDS["u_lip"]], 50)
    colours = rng.uniform(0.05, 0.4, size=(150, 3)).astype(np.float32)
    picks = parse_picks({"hair": "#336699"})
    out = apply_picks(colours, labels, picks)
    hair = labels == LABEL_IDS["hair"]
    np.testing.assert_array_equal(out[~hair], colours[~hair])  # other groups untouched
    luma = np.array([0.2126, 0.7152, 0.0722])
    lum_in, lum_out = colours[hair] @ luma, out[hair] @ luma
    assert np.corrcoef(lum_in, lum_out)[0, 1] > 0.999  # the shading stays
    # every hair vertex now has the picked hue, and the group's mean is the pick
    chroma = out[hair] / out[hair].sum(1, keepdims=True)
    np.testing.assert_allclose(chroma, np.broadcast_to(picks["hair"] / picks["hair"].sum(), chroma.shape), atol=1e-5)
    np.testing.assert_allclose(out[hair].mean(0), picks["hair"], rtol=1e-4)
    for bad in ({"beard": "#000000"}, {"hair": "red"}, {"hair": "#12345"}, ["#000000"]):
        with pytest.raises(ValueError):
            parse_picks(bad)


def test_colour_picks_reach_the_mesh_and_bad_picks_are_refused(weights_dir, monkeypatch, sketch_png, tmp_path):
    from backend.colorspace import srgb_to_linear
    from backend.colour_picks import PICK_GROUPS
    from backend.labels import LABEL_IDS

    spherical = sphere_query(Mask2Triplane.query, RADII)

    def skin_and_hair(self, planes, xyz):  # the untrained network's classes, replaced by skin below, hair above
        out = dict(spherical(self, planes, xyz))
        sem = torch.full_like(out["semantic"], -10.0)
        top = xyz[..., 2] > 0.3
        sem[..., LABEL_IDS["skin"]] = torch.where(top, -10.0, 10.0)
        sem[..., LABEL_IDS["hair"]] = torch.where(top, 10.0, -10.0)
        out["semantic"] = sem
        return out

    monkeypatch.setattr(Mask2Triplane, "query", skin_and_hair)
    plain = generate(sketch_png, tmp_path / "plain", GenerateOptions(seed=1, **FAST), weights_dir=weights_dir, device="cpu")
    a = read_ply((tmp_path / "plain" / "mesh.ply").read_bytes())
    counts = {g: int(np.isin(a["label"], [LABEL_IDS[n] for n in names]).sum()) for g, names in PICK_GROUPS.items()}
    group = max(counts, key=counts.get)
    assert counts[group] >= 20
    picked = generate(sketch_png, tmp_path / "picked", GenerateOptions(seed=1, colors={group: "#20c040"}, **FAST),
                      weights_dir=weights_dir, device="cpu")
    b = read_ply((tmp_path / "picked" / "mesh.ply").read_bytes())
    sel = np.isin(b["label"], [LABEL_IDS[n] for n in PICK_GROUPS[group]])
    assert np.array_equal(a["label"], b["label"]) and np.array_equal(a["rgb"][~sel], b["rgb"][~sel])
    pick = srgb_to_linear(np.array([0x20, 0xC0, 0x40]) / 255.0)
    before, after = (srgb_to_linear(m["rgb"][sel] / 255.0).mean(0) for m in (a, b))
    assert np.abs(after - pick).max() < 0.03 < np.abs(before - pick).max()
    assert picked["options"]["colors"] == {group: "#20c040"} and plain["options"]["colors"] is None
    with pytest.raises(PipelineError) as e:
        generate(sketch_png, tmp_path / "bad", GenerateOptions(colors={"skin": "green"}, **FAST), weights_dir=weights_dir)
    assert e.value.code == "bad_option" and not (tmp_path / "bad").exists()


def test_generate_with_texture_writes_the_texture_and_its_uvs(weights_dir, sphere_field, sketch_png, tmp_path):
    out = tmp_path / "job"
    result = generate(sketch_png, out, GenerateOptions(seed=3, formats=("ply", "obj"), texture=256),
                      weights_dir=weights_dir, device="cpu")
    assert result["texture"]["file"] == "texture.png" and "texture.png" in result["files"]
    assert Image.open(out / "texture.png").size == (256, 256)
    obj = (out / "mesh.obj").read_text()
    assert "\nvt " in obj and "mtllib" in obj and "map_Kd texture.png" in (out / "mesh.mtl").read_text()
    assert "uv" in read_ply((out / "mesh.ply").read_bytes())


def test_draft_predicts_the_mask_without_the_mirror_average(weights_dir, sphere_field, sketch_png, tmp_path,
                                                            monkeypatch):
    from backend.models.sketch2mask import SketchToMask

    seen = []
    original = SketchToMask.predict_ids

    def spy(self, x, mirror_average=None):
        seen.append(mirror_average)
        return original(self, x, mirror_average)

    monkeypatch.setattr(SketchToMask, "predict_ids", spy)
    opts = dict(seed=3, resolution=64, views=4, color_resolution=48, view_resolution=32)
    generate(sketch_png, tmp_path / "full", GenerateOptions(**opts), weights_dir=weights_dir, device="cpu")
    assert seen and all(m is None for m in seen)  # the card decides
    seen.clear()
    result = generate(sketch_png, tmp_path / "draft", GenerateOptions(**opts, draft=True), weights_dir=weights_dir,
                      device="cpu")
    assert seen and all(m is False for m in seen) and result["options"]["draft"] is True
