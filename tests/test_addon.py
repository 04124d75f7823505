"""The Blender add-on: pure-Python units (stroke projection, PNG, labels, HTTP client and
backend lifecycle) and, under bpy 5.0.1 in subprocesses, the installed extension end to end against a
real backend process (tests/addon_bpy_scenario.py) and the headless batch entry point.

The backend runs with tiny random-initialised weights (tests/s3d_tiny_weights.py) whose density field
gets an analytic head-sized ellipsoid added (``sphere_query``), through a shim executable used as the
add-on's "backend Python" (it runs the real ``backend.cli serve``).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TESTS))

from blender_addon.scene import label_set, stroke_projection  # noqa: E402
from blender_addon.transport import png_io  # noqa: E402
from ply_files import write_ply  # noqa: E402

HAS_SERVER = (ROOT / "backend" / "server.py").is_file()


# ---------------------------------------------------------------------------------------------------------
# Stroke projection, labels, PNG
# ---------------------------------------------------------------------------------------------------------
def test_constants_match_the_backend():
    from backend.coords import BOX_SIZE_M
    from backend.labels import LABEL_NAMES, PALETTE

    assert stroke_projection.BOX_SIZE_M == BOX_SIZE_M
    assert label_set.LABEL_NAMES == LABEL_NAMES
    np.testing.assert_array_equal(label_set.PALETTE, PALETTE)


def test_cat_label_set_matches_the_backend_and_snaps_cat_colours():
    from backend.labels import CAT, CELEBAMASK_HQ

    assert label_set.names_for("cat") == CAT.names and label_set.names_for("human") == CELEBAMASK_HQ.names
    np.testing.assert_array_equal(label_set.palette_for("cat"), CAT.palette)
    assert label_set.names_for_label_set("seg2cat") == CAT.names
    assert label_set.names_for_label_set(None) == CELEBAMASK_HQ.names  # results from before the subject option
    ids = np.random.default_rng(1).integers(0, 6, (20, 30)).astype(np.uint8)
    np.testing.assert_array_equal(label_set.colour_to_ids(CAT.palette[ids], "cat"), ids)
    assert not np.array_equal(label_set.colour_to_ids(CAT.palette[ids]), ids)  # the human palette reads it wrong


def test_cat_guide_has_a_face_inside_the_content_box():
    from blender_addon.scene import sketch_guide

    box = sketch_guide.DEFAULT_CONTENT_BOX
    strokes = sketch_guide.cat_guide_strokes(box)
    cx, cz, ax, az = sketch_guide.content_box_metres(box)
    frame = sketch_guide.guide_strokes(box)
    np.testing.assert_array_equal(strokes[0][0], frame[0][0])  # the box square and content box stay
    np.testing.assert_array_equal(strokes[1][0], frame[1][0])
    face = np.concatenate([p for p, _ in strokes[2:-1]])
    assert len(strokes) == 19  # outline, 2 ears, 2 eyes, nose, 4 mouth segments, 6 whiskers + frame (3)
    assert face[:, 1].max() <= cz + az + 1e-9 and face[:, 1].min() >= cz - az - 1e-9  # within the box height
    ears = [p for p, _ in strokes[3:5]]
    assert all(len(e) == 3 and e[:, 1].max() > cz + 0.9 * az for e in ears)  # triangles up to the box top
    assert np.allclose(ears[0][:, 0], -ears[1][:, 0] + 2 * cx)  # mirror-symmetric


def test_front_projection_maps_the_box_square_onto_the_image():
    h = stroke_projection.BOX_SIZE_M / 2
    pos = np.array([[-h, 0.3, h], [h, -0.1, -h], [0.0, 0.0, 0.0]])  # y (depth) is ignored
    doc = stroke_projection.project_front(pos, np.full(3, 0.002), np.array([0, 2, 3]))
    assert doc["frame"] == "normalized" and len(doc["strokes"]) == 2
    np.testing.assert_allclose(doc["strokes"][0]["points"], [[0, 0], [1, 1]], atol=1e-9)  # top-left, bottom-right
    np.testing.assert_allclose(doc["strokes"][1]["points"], [[0.5, 0.5]], atol=1e-9)
    assert doc["strokes"][0]["width"] == pytest.approx(0.004 / stroke_projection.BOX_SIZE_M)


def test_front_projection_agrees_with_the_backend_rasteriser_and_frame():
    from backend.coords import box_xz_to_pixel, metres_to_box
    from backend.sketch.raster import rasterize_strokes

    p = np.array([[0.05, 0.0, 0.08], [0.05, 0.0, 0.081]])  # a dot at x = 5 cm, z = 8 cm
    doc = stroke_projection.project_front(p, np.full(2, 0.003), np.array([0, 2]))
    img = rasterize_strokes(doc, size=512)
    q = metres_to_box(p[0])
    col, row = box_xz_to_pixel(q[0], q[2], 512)
    ys, xs = np.nonzero(img < 128)
    assert len(xs) > 0
    assert abs(xs.mean() - col) < 1.5 and abs(ys.mean() - (row - 0.5 * 0.001 / 0.4 * 512)) < 1.5


def test_front_projection_fits_drawings_larger_than_the_box():
    t = np.linspace(0, 2 * np.pi, 50)
    pos = np.stack([2.0 * np.cos(t), np.zeros_like(t), 1.0 * np.sin(t) + 5.0], 1)  # 4 m wide, far off-centre
    doc = stroke_projection.project_front(pos, np.full(50, 0.01), np.array([0, 50]))
    pts = np.array(doc["strokes"][0]["points"])
    assert pts.min() >= 0.0 and pts.max() <= 1.0
    assert pts[:, 0].max() - pts[:, 0].min() == pytest.approx(1 / 1.2, rel=1e-3)  # margin of 10 % each side
    np.testing.assert_allclose(pts.mean(0), [0.5, 0.5], atol=0.02)


def test_front_projection_errors():
    with pytest.raises(stroke_projection.ProjectionError, match="no points"):
        stroke_projection.project_front(np.zeros((0, 3)), np.zeros(0), np.array([0]))
    with pytest.raises(stroke_projection.ProjectionError, match="offsets"):
        stroke_projection.project_front(np.zeros((3, 3)), np.zeros(3), np.array([0, 2]))
    with pytest.raises(stroke_projection.ProjectionError, match="NaN"):
        stroke_projection.project_front(np.full((2, 3), np.nan), np.zeros(2), np.array([0, 2]))


def _look_along_plus_y(cam_pos):
    """world->camera for a camera at cam_pos looking along +Y with +Z up (Blender's front camera)."""
    # camera axes in world: x_cam = +X, y_cam = +Z, z_cam = -Y (camera looks along its -Z = +Y)
    r = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # rows: camera axes in world coordinates
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = -r @ np.asarray(cam_pos, float)
    return m


def test_orthographic_camera_projection_equals_the_front_view():
    rng = np.random.default_rng(3)
    pos = rng.uniform(-0.15, 0.15, size=(30, 3))
    rad = rng.uniform(0.001, 0.003, size=30)
    offs = np.array([0, 10, 30])
    front = stroke_projection.project_front(pos, rad, offs)
    cam = stroke_projection.project_camera(pos, rad, offs, _look_along_plus_y([0, -2, 0]), orthographic=True,
                                           ortho_scale=0.4, resolution=(512, 512))
    assert cam["frame"] == "image" and cam["width"] == 512
    for a, b in zip(front["strokes"], cam["strokes"]):
        np.testing.assert_allclose(np.array(b["points"]) / 512, a["points"], atol=1e-5)
        np.testing.assert_allclose(np.array(b.get("widths", [b["width"]])) / 512, a.get("widths", [a["width"]]), atol=1e-5)


def test_perspective_camera_projection_pinhole():
    fov = math.radians(40)
    d = 1.0
    edge = d * math.tan(fov / 2)  # a point at this x is on the image's right edge (larger side = width)
    pos = np.array([[0.0, 0.0, 0.0], [edge, 0.0, 0.0], [0.0, 0.0, edge * 0.5]])
    doc = stroke_projection.project_camera(pos, np.full(3, 0.01), np.array([0, 1, 2, 3]), _look_along_plus_y([0, -d, 0]),
                                           orthographic=False, fov_rad=fov, resolution=(640, 480))
    pts = [s["points"][0] for s in doc["strokes"]]
    np.testing.assert_allclose(pts[0], [320, 240], atol=1e-6)
    np.testing.assert_allclose(pts[1], [640, 240], atol=1e-6)
    np.testing.assert_allclose(pts[2], [320, 240 - 160], atol=1e-6)
    with pytest.raises(stroke_projection.ProjectionError, match="behind"):
        stroke_projection.project_camera(np.array([[0, -3.0, 0]]), np.array([0.01]), np.array([0, 1]),
                                         _look_along_plus_y([0, -d, 0]), orthographic=False)


def test_png_encoder_decodes_with_pillow():
    from PIL import Image

    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (17, 23)).astype(np.uint8)
    rgb = rng.integers(0, 256, (9, 5, 3)).astype(np.uint8)
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(png_io.encode_png(grey)))), grey)
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(png_io.encode_png(rgb)))), rgb)
    with pytest.raises(ValueError, match="uint8"):
        png_io.encode_png(grey.astype(np.float32))


def test_colour_mask_snaps_painted_colours_to_classes():
    ids = np.arange(19, dtype=np.uint8).reshape(1, 19).repeat(3, 0)
    rgb = label_set.PALETTE[ids].astype(np.int32)
    rgb[1] += 9  # a soft brush edge: slightly off the palette
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(label_set.colour_to_ids(rgb), ids)
    np.testing.assert_array_equal(label_set.colour_to_ids(rgb.astype(np.float32) / 255), ids)


def test_backend_requirements_exclude_torch():
    from blender_addon.transport.backend_env import backend_requirements, setup_commands

    reqs = backend_requirements(ROOT)
    assert reqs and not any(r.lower().startswith("torch") for r in reqs)
    steps = setup_commands("/tmp/env", ROOT, python="/usr/bin/python3")
    assert steps[0][1][:3] == ["/usr/bin/python3", "-m", "venv"]
    assert any("torch==2.13.0" in argv for _, argv in steps)


def _fake_python(path: Path, version: str) -> str:
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return str(path)


def test_env_setup_finds_a_python_311_or_uses_uv(tmp_path, monkeypatch):
    from blender_addon.transport import backend_env

    py313 = _fake_python(tmp_path / "python3.13", "3 13")  # Blender 5.1+'s own Python
    py311 = _fake_python(tmp_path / "python3.11", "3 11")
    assert backend_env.python_version(py311) == (3, 11) and backend_env.python_version(str(tmp_path / "nope")) is None
    assert backend_env.base_python([py313, py311]) == py311
    assert backend_env.base_python([py313]) is None
    monkeypatch.setattr(backend_env, "base_python", lambda candidates=None: None)
    steps = backend_env.setup_commands(tmp_path / "env", ROOT, uv="/opt/uv")
    assert steps[0][1] == ["/opt/uv", "venv", "--seed", "--python", "3.11", str(tmp_path / "env")]
    assert steps[1][1][0] == str(backend_env.env_python(tmp_path / "env"))
    monkeypatch.setattr(backend_env, "find_uv", lambda: None)
    with pytest.raises(backend_env.NoBasePythonError, match="Python 3.11.*uv"):
        backend_env.setup_commands(tmp_path / "env", ROOT)


def test_env_setup_waits_for_online_access():
    from types import SimpleNamespace

    from blender_addon.transport.backend_env import online_access_problem

    assert online_access_problem(SimpleNamespace(online_access=True)) is None
    msg = online_access_problem(SimpleNamespace(online_access=False, online_access_override=False))
    assert "Preferences > System > Network" in msg and "Allow Online Access" in msg
    assert "--offline-mode" in online_access_problem(SimpleNamespace(online_access=False, online_access_override=True))


def _blender_ext_cli() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("bpy")  # locates the bpy package without importing it
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def test_extension_zip_passes_blenders_validator_with_an_accepted_licence(tmp_path):
    """Blender's own validator (``blender --command extension validate`` runs this same script), plus what
    extensions.blender.org adds: a GPL licence and a LICENSE file."""
    import tomllib
    import zipfile

    import build_addon

    zip_path = build_addon.build(tmp_path / "dist", weights_dir=None)
    man = tomllib.loads(zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode())
    assert man["license"] == ["SPDX:GPL-3.0-or-later"]
    assert zipfile.ZipFile(zip_path).read("LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert "GNU GENERAL PUBLIC LICENSE" in (ROOT / "LICENSE").read_text()[:200]
    # the documented schema (docs.blender.org/manual/en/latest/advanced/extensions/getting_started.html)
    assert man["schema_version"] == "1.0.0" and man["type"] == "add-on" and man["id"].isidentifier()
    assert len(man["tagline"]) <= 64 and man["tagline"][-1] not in ".!?,;:"
    assert man["name"] and man["maintainer"] and man["version"].count(".") == 2
    assert tuple(int(x) for x in man["blender_version_min"].split(".")) >= (4, 2, 0)
    assert set(man["permissions"]) <= {"files", "network", "clipboard", "camera", "microphone"}
    assert all(0 < len(reason) <= 64 and reason[-1] not in ".!?" for reason in man["permissions"].values())
    cli = _blender_ext_cli()
    if cli is None:
        pytest.skip("bpy (with Blender's extension tooling) is not installed")
    tags = cli.parents[3] / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    r = subprocess.run([sys.executable, str(cli), "validate", "--valid-tags", str(tags), str(zip_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Success" in r.stdout, r.stdout + r.stderr


def test_task_slot_hands_typed_events_to_the_main_thread_in_order():
    """One helper for every background operation: events in order, one terminal event, then ``on_end``;
    a cancel ends a job ``Cancelled``; an error in ``on_event`` cancels the task and ends it ``internal_error``."""
    import threading

    from blender_addon.tasks import Cancelled, Failed, Finished, PartResult, Progress, TaskSlot, failure
    from blender_addon.transport.http_client import BackendError
    from blender_addon.transport.job_runner import JobCancelled

    seen, ends = [], []
    slot = TaskSlot("s3d-test", seen.append, ends.append)

    def work(task):
        task.emit(Progress("mesh", 0.5, "Making the mesh"))
        task.emit(PartResult(0, "head"))
        return ["head"]

    slot.start(work, follow=False)
    assert slot.busy() and slot.wait(5) and not slot.busy()
    assert seen == [Progress("mesh", 0.5, "Making the mesh"), PartResult(0, "head"), Finished(["head"])]
    assert ends == [Finished(["head"])]

    seen.clear(), ends.clear()
    go = threading.Event()

    def cancellable(task):
        go.set()
        task.cancel_event.wait(5)
        raise JobCancelled("job j1 cancelled")

    slot.start(cancellable, follow=False)
    with pytest.raises(RuntimeError, match="already running"):
        slot.start(work, follow=False)
    go.wait(5)
    slot.cancel()
    assert slot.wait(5) and isinstance(ends[0], Cancelled) and isinstance(ends[0].error, JobCancelled)

    ends.clear()
    slot.on_event = lambda ev: 1 / 0
    task = slot.start(work, follow=False)
    assert slot.wait(5) and task.cancelled()
    assert isinstance(ends[0], Failed) and ends[0].code == "internal_error" and "division" in ends[0].message

    assert failure(BackendError("backend_timeout", "too slow")).code == "backend_timeout"
    err = ValueError("")
    assert failure(err) == Failed("valueerror", "ValueError", err)


def test_jobs_work_reports_overall_progress_and_each_finished_job(monkeypatch):
    from blender_addon.tasks import BackgroundTask, Failed, Finished, PartResult, Progress
    from blender_addon.transport import job_runner

    def fake_run_job(config, req, cancel_event=None, on_progress=None, **kw):
        on_progress("mesh", 0.5)
        if req.name == "bad":
            raise job_runner.BackendError("job_failed", "the mask was empty")
        return req.name

    monkeypatch.setattr(job_runner, "run_job", fake_run_job)
    reqs = [job_runner.JobRequest(job_input={}, options={}, out_dir="/tmp/x", name=n) for n in ("a", "b")]
    task = BackgroundTask(job_runner.jobs_work(None, reqs)).start()
    task.join(5)
    evs = task.drain()
    assert evs == [Progress("mesh", 0.25, "Making the mesh (1/2)"), PartResult(0, "a"),
                   Progress("mesh", 0.75, "Making the mesh (2/2)"), PartResult(1, "b"), Finished(["a", "b"])]
    reqs[1].name = "bad"
    task = BackgroundTask(job_runner.jobs_work(None, reqs)).start()
    task.join(5)
    evs = task.drain()
    assert evs[1] == PartResult(0, "a") and isinstance(evs[-1], Failed)
    assert evs[-1].code == "job_failed" and evs[-1].message == "the mask was empty"
    with pytest.raises(job_runner.BackendError):
        task.result()


def test_stage_names_are_shown_in_words():
    from backend.pipeline import STAGES
    from blender_addon.transport.job_runner import STAGE_LABELS, stage_label

    assert stage_label("density_grid") == "Building the surface"
    assert all(name in STAGE_LABELS for name, _ in STAGES)  # every backend stage has words
    assert all("_" not in stage_label(name) for name, _ in STAGES)
    assert stage_label("some_new_stage") == "Some new stage"


def test_job_folders_keep_the_newest_and_those_in_use(tmp_path):
    from blender_addon.transport.job_folders import job_folders, prune_job_folders

    names = [f"S3D_Sketch_head_seed{i}_2026120{i}-101500-00000{i}" for i in range(1, 7)]
    for n in names:
        (tmp_path / n).mkdir()
        (tmp_path / n / "mesh.ply").write_bytes(b"x")
    (tmp_path / "my_notes").mkdir()  # not a job folder: never touched
    (tmp_path / "render_seed1_final.png").write_bytes(b"x")
    assert [p.name for p in job_folders(tmp_path)] == names[::-1]
    in_use = {str(tmp_path / names[0])}  # the oldest, but its head is still in the file
    removed = prune_job_folders(tmp_path, keep=3, in_use=in_use)
    assert sorted(p.name for p in removed) == names[1:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[0], *names[3:], "my_notes", "render_seed1_final.png"])
    assert prune_job_folders(tmp_path, keep=0) == [] and prune_job_folders(tmp_path / "missing", keep=1) == []


# ---------------------------------------------------------------------------------------------------------
# HTTP client and backend lifecycle (no bpy)
# ---------------------------------------------------------------------------------------------------------
def test_start_failure_is_reported_with_the_backend_output(tmp_path):
    from blender_addon.transport.backend_process import BackendConfig, BackendProcess
    from blender_addon.transport.http_client import BackendError

    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ImportError: no module named torch' >&2\nexit 3\n")
    fake.chmod(0o755)
    proc = BackendProcess(BackendConfig(backend_python=str(fake), backend_root=str(ROOT), startup_timeout_s=20))
    with pytest.raises(BackendError) as e:
        proc.client()
    assert e.value.code == "backend_start_failed"
    assert "exit code 3" in str(e.value) and "no module named torch" in str(e.value)
    with pytest.raises(BackendError) as e:
        BackendProcess(BackendConfig(backend_python=str(tmp_path / "missing"))).client()
    assert e.value.code == "backend_python_missing" and "preferences" in str(e.value)


def test_unreachable_backend_is_a_clear_error():
    import socket

    from blender_addon.transport.http_client import BackendClient, BackendError

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(BackendError) as e:
        BackendClient(f"http://127.0.0.1:{port}", "t", timeout_s=2).health()
    assert e.value.code == "backend_unreachable" and "restart" in str(e.value)


def test_guide_content_box_matches_the_backend_framing():
    from backend.align import canonical_content_box as backend_box

    from blender_addon.scene import sketch_guide

    ref = backend_box()
    ours = sketch_guide.canonical_content_box()
    assert ours["center"] == pytest.approx(ref["center"]) and ours["width"] == pytest.approx(ref["width"])
    assert ours["height"] == pytest.approx(ref["height"])
    from backend.align import DEFAULT_CANONICAL_CONTENT_BOX

    assert sketch_guide.DEFAULT_CONTENT_BOX["center"] == DEFAULT_CANONICAL_CONTENT_BOX["center"]
    assert sketch_guide.DEFAULT_CONTENT_BOX["width"] == DEFAULT_CANONICAL_CONTENT_BOX["width"]
    # the guide's content rectangle projects back onto the normalised box
    rect = sketch_guide.guide_strokes(ref)[1][0]
    doc = stroke_projection.project_front(np.c_[rect[:, 0], np.zeros(4), rect[:, 1]], np.full(4, 0.001), np.array([0, 4]))
    pts = np.array(doc["strokes"][0]["points"])
    assert pts[:, 0].max() - pts[:, 0].min() == pytest.approx(ref["width"])
    assert pts[:, 1].mean() == pytest.approx(ref["center"][1])


# ---------------------------------------------------------------------------------------------------------
# End to end under bpy 5.0.1 (subprocesses) against a real backend process
# ---------------------------------------------------------------------------------------------------------
SHIM_MAIN = '''
import os, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from s3d_tiny_weights import sphere_query
from backend.models.mask2triplane import Mask2Triplane
Mask2Triplane.query = sphere_query(Mask2Triplane.query)
from backend.cli import main
assert sys.argv[1:3] == ["-m", "backend.cli"], sys.argv
sys.exit(main(sys.argv[3:]))
'''


def _bpy_env(tmp: Path) -> dict:
    env = dict(os.environ)
    for key, sub in (("BLENDER_USER_CONFIG", "config"), ("BLENDER_USER_SCRIPTS", "scripts"),
                     ("BLENDER_USER_EXTENSIONS", "extensions"), ("BLENDER_USER_DATAFILES", "datafiles")):
        env[key] = str(tmp / "blender" / sub)
    env.pop("S3D_BACKEND_PYTHON", None)
    env.setdefault("XDG_CACHE_HOME", str(ROOT / ".cache" / "xdg"))
    env.setdefault("MESA_SHADER_CACHE_DIR", str(ROOT / ".cache" / "mesa"))
    return env


@pytest.fixture(scope="module")
def backend_setup(tmp_path_factory):
    """Tiny weights, a backend 'Python' shim running the real server, a dead one, and the built zip."""
    if not HAS_SERVER:
        pytest.skip("backend/server.py is not there yet")
    from s3d_tiny_weights import make_tiny_weights

    tmp = tmp_path_factory.mktemp("addon")
    weights = make_tiny_weights(tmp / "weights")
    (tmp / "shim_main.py").write_text(SHIM_MAIN.format(tests=str(TESTS)))
    shim = tmp / "backend_python"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp / 'shim_main.py'} \"$@\"\n")
    shim.chmod(0o755)
    dead = tmp / "dead_python"
    dead.write_text("#!/bin/sh\necho 'Traceback: ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    dead.chmod(0o755)
    sys.path.insert(0, str(ROOT))
    import build_addon

    zip_path = build_addon.build(tmp / "dist", weights_dir=None)
    return {"tmp": tmp, "weights": weights, "shim": shim, "dead": dead, "zip": zip_path}


RECORDED_WARNING = "the paper background was read as hair: crop closer or raise the contrast"


def _recorded_job(folder: Path) -> dict:
    """A job folder written from numpy (docs/contracts.md section 6): a sphere with three classes."""
    import trimesh
    from PIL import Image

    folder.mkdir(parents=True)
    s = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    v = np.asarray(s.vertices, np.float32)
    labels = np.where(v[:, 2] > 0.05, 13, np.where(v[:, 1] < -0.07, 2, 1)).astype(np.uint8)
    colours = np.random.default_rng(5).integers(0, 256, (len(v), 3)).astype(np.uint8)
    write_ply(folder / "mesh.ply", v, s.faces, colours, labels)
    mask = np.ones((64, 64), np.uint8)
    mask[:16] = 13
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(label_set.PALETTE[mask]).save(folder / "mask_color.png")
    (folder / "result.json").write_text(json.dumps({"seed": 11, "device": "cpu",
                                                    "weights": {"m": {"sha256": "0" * 64}},
                                                    "warnings": [{"code": "paper_read_as_hair", "message": RECORDED_WARNING},
                                                                 {"code": "face_tiny", "message": "the face is tiny"},
                                                                 {"code": "bad"}, "not a dict"]}))
    return {"labels": labels, "colours": colours}


@pytest.fixture(scope="module")
def scenario(backend_setup):
    tmp = backend_setup["tmp"]
    work = tmp / "scenario"
    work.mkdir()
    recorded = _recorded_job(tmp / "recorded_job")
    cmd = [sys.executable, str(TESTS / "addon_bpy_scenario.py"), "--zip", str(backend_setup["zip"]), "--workdir", str(work),
           "--backend-python", str(backend_setup["shim"]), "--weights", str(backend_setup["weights"]),
           "--dead-python", str(backend_setup["dead"]), "--recorded-job", str(tmp / "recorded_job")]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=tmp, env=_bpy_env(tmp), capture_output=True, text=True, timeout=300)
    report_path = work / "report.json"
    assert report_path.is_file(), f"scenario wrote no report (rc {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads(report_path.read_text())
    assert "exception" not in report, report["exception"] + "\n" + r.stderr[-3000:]
    report["_wall_s"] = time.monotonic() - t0
    arrays = dict(np.load(work / "arrays.npz"))
    return {"report": report, "arrays": arrays, "recorded": recorded, "work": work}


HAS_BPY = __import__("importlib.util").util.find_spec("bpy") is not None


@pytest.fixture(scope="module")
def mesh_checks(tmp_path_factory):
    """tests/addon_bpy_mesh_checks.py on a recorded job folder and a broken PLY (no backend needed)."""
    if not HAS_BPY:
        pytest.skip("bpy is not installed")
    tmp = tmp_path_factory.mktemp("mesh_checks")
    recorded = _recorded_job(tmp / "job")
    (tmp / "bad").mkdir()
    (tmp / "bad" / "mesh.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nend_header\n")
    cmd = [sys.executable, str(TESTS / "addon_bpy_mesh_checks.py"), "--job", str(tmp / "job"),
           "--bad-ply", str(tmp / "bad" / "mesh.ply"), "--out", str(tmp / "report.json")]
    r = subprocess.run(cmd, cwd=tmp, env=_bpy_env(tmp), capture_output=True, text=True, timeout=300)
    assert (tmp / "report.json").is_file(), f"rc {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads((tmp / "report.json").read_text())
    assert "exception" not in report, report["exception"]
    return {"report": report, "arrays": dict(np.load(tmp / "report.npz")), "recorded": recorded}


@pytest.fixture(scope="module")
def cat_checks(tmp_path_factory):
    """tests/addon_bpy_cat.py on a recorded cat job folder (no backend needed)."""
    if not HAS_BPY:
        pytest.skip("bpy is not installed")
    import trimesh

    tmp = tmp_path_factory.mktemp("cat_checks")
    job = tmp / "job"
    job.mkdir()
    s = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    v = np.asarray(s.vertices, np.float32)
    labels = np.where(v[:, 2] > 0.06, 2, np.where(v[:, 1] < -0.07, 4, 1)).astype(np.uint8)  # ear, eyes, face
    write_ply(job / "mesh.ply", v, s.faces, np.full((len(v), 3), 128, np.uint8), labels)
    (job / "result.json").write_text(json.dumps({"seed": 2, "subject": "cat", "label_set": "seg2cat"}))
    cmd = [sys.executable, str(TESTS / "addon_bpy_cat.py"), "--job", str(job), "--out", str(tmp / "report.json")]
    r = subprocess.run(cmd, cwd=tmp, env=_bpy_env(tmp), capture_output=True, text=True, timeout=300)
    assert (tmp / "report.json").is_file(), f"rc {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads((tmp / "report.json").read_text())
    assert "exception" not in report, report["exception"]
    return report, labels


def test_subject_cat_in_real_blender_guide_request_mask_and_vertex_groups(cat_checks):
    rep, labels = cat_checks
    assert rep["subject_items"] == ["HUMAN", "CAT"] and rep["subject_default"] == "HUMAN"
    assert rep["cat_guide_strokes"] == rep["expected_cat_strokes"] == 19
    assert rep["human_guide_strokes"] == rep["expected_human_strokes"] == 4
    cat, human = rep["options"]["CAT"], rep["options"]["HUMAN"]
    assert cat["subject"] == "cat" and "colors" not in cat  # colour picks are human-only
    assert "subject" not in human and human["colors"] == {"hair": "#593824"}  # human requests unchanged
    assert rep["mask_classes"]["CAT"] == ["face", "ear", "mouth", "eyes", "whiskers"]
    assert rep["mask_classes"]["HUMAN"][:2] == ["skin", "nose"]
    assert rep["cat_mask_read"] == [1, 0]  # the cat palette reads the painted cat mask, the human one does not
    assert rep["vertex_groups"] == ["ear", "eyes", "face"]
    assert rep["label_set"] == "seg2cat" and rep["subject"] == "cat"
    assert rep["labels_back"] == labels.tolist()


def test_blenders_ply_importer_keeps_colours_and_labels(mesh_checks):
    rep, arr, rec = mesh_checks["report"], mesh_checks["arrays"], mesh_checks["recorded"]
    head = rep["head"]
    assert ["Col", "FLOAT_COLOR", "POINT"] in head["color_attributes"]
    np.testing.assert_array_equal(arr["head_col"], rec["colours"])  # the PLY's sRGB bytes, exactly
    np.testing.assert_array_equal(arr["head_label"], rec["labels"])
    assert "label" not in head["attributes"] and "s3d_label" in head["attributes"]
    assert sorted(head["vertex_groups"]) == ["hair", "nose", "skin"] and head["face_sizes"] == [3]
    # the importer's temporary object is gone; only the head and its mesh are left
    assert rep["objects_after_import"] == ["Recorded head"] and rep["meshes_after_import"] == ["Recorded head"]
    assert rep["bad_ply_error"] and "mesh.ply" in rep["bad_ply_error"]
    assert rep["objects_after_bad"] == ["Recorded head"]


def test_baked_texture_has_a_uv_map_an_image_node_and_keeps_the_colour_attribute(mesh_checks):
    rep, arr, rec = mesh_checks["report"], mesh_checks["arrays"], mesh_checks["recorded"]
    t = rep["texture"]
    assert t["uv_layers"] == ["UVMap"] and t["image_nodes"] == ["Recorded head texture"]
    assert t["base_colour_from"] == [["TEX_IMAGE", "Color"]] and t["image_size"] == [1024, 1024]
    assert ["Col", "FLOAT_COLOR", "POINT"] in t["color_attributes"]  # the vertex colours stay
    assert t["packed"] and t["file_exists"] and t["engine_restored"] and t["shared_material_untouched"]
    # the texture where each corner's UV falls is that vertex's colour (sRGB bytes; a texel from the corner)
    diff = np.abs(arr["texture_at_loops"].astype(int) - rec["colours"][arr["texture_loop_vertex"]].astype(int))
    assert np.median(diff) <= 4, np.median(diff)  # measured: median 1, 90th percentile 7


def test_zip_installs_as_an_extension_and_enables(scenario):
    rep = scenario["report"]
    assert rep["install_result"] == ["FINISHED"] and rep["enabled"]
    assert "/extensions/user_default/s3d_sketch_to_head/" in rep["module_file"]
    assert rep["torch_imported"] is False
    assert rep["generate_poll_without_input"] is False and rep["generate_poll_with_drawing"] is True
    assert rep["sketch"]["type"] == "GREASEPENCIL" and rep["sketch"]["guide_locked"]


def test_grease_pencil_capture_projects_the_drawn_strokes(scenario):
    rep, arr = scenario["report"], scenario["arrays"]
    doc = rep["captured"]
    strokes = [arr[f"stroke{i}"] for i in range(5)]
    assert doc["frame"] == "normalized" and len(doc["strokes"]) == len(strokes)
    for got, xz in zip(doc["strokes"], strokes):  # independent front projection: u = (x + 0.2)/0.4, v = (0.2 - z)/0.4
        np.testing.assert_allclose(np.array(got["points"]), np.c_[(xz[:, 0] + 0.2) / 0.4, (0.2 - xz[:, 1]) / 0.4], atol=2e-6)
        assert got["width"] == pytest.approx(2 * 0.0015 / 0.4, rel=1e-4)
    cam = rep["captured_camera"]  # an orthographic camera framing the box from the front: same picture
    assert cam["frame"] == "image" and (cam["width"], cam["height"]) == (512, 512)
    for a, b in zip(doc["strokes"], cam["strokes"]):
        np.testing.assert_allclose(np.array(b["points"]) / 512, a["points"], atol=1e-5)


def test_generate_imports_the_backend_mesh(scenario, backend_setup):
    import trimesh

    rep, arr = scenario["report"], scenario["arrays"]
    head = rep["head"]
    assert rep["generate_result"] == ["FINISHED"]
    assert head["type"] == "MESH" and head["name"].startswith("S3D Sketch")
    assert head["location"] == pytest.approx([0.5, 0.0, 0.0])  # at the 3D cursor
    folder = Path(head["props"]["s3d_job_folder"])
    result = json.loads((folder / "result.json").read_text())
    ref = trimesh.load(folder / "mesh.ply", process=False)
    assert head["vertices"] == len(ref.vertices) == result["vertex_count"] and head["faces"] == result["face_count"]
    np.testing.assert_allclose(arr["head_co"], ref.vertices, atol=1e-6)  # metres, head frame
    assert ["Col", "FLOAT_COLOR", "POINT"] in head["color_attributes"]  # as Blender's PLY importer makes it
    np.testing.assert_array_equal(arr["head_col"], np.asarray(ref.visual.vertex_colors)[:, :3])  # exact sRGB bytes
    # one vertex group per class present, named like result.json's per-class counts
    assert sorted(head["vertex_groups"]) == sorted(k for k, n in result["class_vertex_counts"].items() if n and k != "background")
    counts = np.bincount(arr["head_group"][arr["head_group"] >= 0], minlength=len(head["vertex_groups"]))
    for i, name in enumerate(head["vertex_groups"]):
        assert counts[i] == result["class_vertex_counts"][name]
    assert ("ATTRIBUTE", "Color", "BSDF_PRINCIPLED", "Base Color") in [tuple(l) for l in head["links"]]
    assert head["attribute_node_names"] == ["Col"]
    props = head["props"]
    assert props["s3d_seed"] == 3 and props["s3d_sketch_sha256"] == rep["capture_hash"]
    expected = {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(backend_setup["weights"]).glob("*.safetensors")}
    assert props["s3d_weights_sha256"] == expected
    assert head["mask_image"]["exists"] and head["mask_image"]["packed"]
    assert rep["status_device"] == "cpu" and rep["check_backend"] == ["FINISHED"]
    # the backend's mask warnings (untrained tiny weights: an implausible mask) reach the panel status
    messages = [w["message"] for w in result["warnings"]]
    assert rep["head_warnings_prop"] == rep["status_warning"] == "\n".join(messages)


def test_undo_restores_the_scene(scenario):
    rep = scenario["report"]
    assert len(rep["after_generate"]) == len(rep["before_generate"]) + 1
    assert rep["after_undo"] == rep["before_generate"] and rep["meshes_after_undo_equal"]


def test_backend_restarts_after_a_crash(scenario):
    rep = scenario["report"]
    assert rep["generate_after_crash"] == ["FINISHED"] and rep["restarts"] == 1
    assert rep["backend_pid_after_restart"] != rep["backend_pid"]


def test_regenerate_from_edited_mask_and_variations(scenario):
    rep = scenario["report"]
    assert rep["painted_ids_top"] == 13 and rep["regenerate_poll"] and rep["regenerate_result"] == ["FINISHED"]
    regen = rep["regenerate"]
    assert regen["same_object"] and regen["mesh_replaced"] and regen["location_kept"] and regen["seed"] == 3
    sent = json.loads((Path(regen["job_folder"]) / "result.json").read_text())
    assert sent["input"]["kind"] == "mask"  # result.json names the intake: image, strokes or mask
    var = rep["variations"]
    assert rep["variations_result"] == ["FINISHED"] and sorted(v["seed"] for v in var) == [3, 4]
    xs = sorted(v["x"] for v in var)
    assert xs[1] - xs[0] == pytest.approx(0.45)


def test_dead_backend_gives_a_clear_report_and_no_scene_change(scenario):
    rep = scenario["report"]
    assert rep["dead_error"] is not None and "exited during start-up" in rep["dead_error"]
    assert "No module named torch" in rep["dead_error"]
    assert rep["dead_scene_unchanged"]
    assert "exited during start-up" in rep["dead_status_error"]


def test_recorded_job_gets_one_vertex_group_per_class(scenario):
    rep, arr, rec = scenario["report"], scenario["arrays"], scenario["recorded"]
    info = rep["recorded"]
    assert sorted(info["vertex_groups"]) == ["hair", "nose", "skin"]
    assert info["vertices_in_several_groups"] == 0
    names = np.array(info["vertex_groups"])[arr["rec_group"]]
    expected = np.array(label_set.LABEL_NAMES)[rec["labels"]]
    np.testing.assert_array_equal(names, expected)
    np.testing.assert_array_equal(arr["rec_col"], rec["colours"])
    assert info["props"]["s3d_seed"] == 11
    warned = rep["recorded_warnings"]  # result.json's warnings on the object; malformed entries skipped
    assert warned["prop"] == f"{RECORDED_WARNING}\nthe face is tiny\nbad"
    assert warned["import_warnings"] == [RECORDED_WARNING, "the face is tiny", "bad"]


def test_disabling_the_addon_stops_the_backend(scenario):
    rep = scenario["report"]
    assert rep["backend_alive_after_disable"] is False and rep["operators_after_disable"] is False


def test_batch_entry_point_on_a_folder_of_two_sketches(scenario, backend_setup):
    import cv2

    tmp = backend_setup["tmp"]
    in_dir = scenario["work"] / "batch_in"  # holds drawn_face.blend (a Grease Pencil object) from the scenario
    img = np.full((512, 512), 255, np.uint8)
    cv2.ellipse(img, (256, 270), (120, 170), 0, 0, 360, 0, 3)
    cv2.circle(img, (210, 240), 12, 0, 2)
    cv2.circle(img, (302, 240), 12, 0, 2)
    cv2.line(img, (220, 350), (292, 350), 0, 3)
    cv2.imwrite(str(in_dir / "paper_face.jpg"), img)  # not a PNG: goes through Blender's image loader
    out = tmp / "batch_out"
    # the `blender -b -P blender_addon/batch.py -- IN OUT` form, with the bpy module as Blender
    cmd = [sys.executable, str(ROOT / "blender_addon" / "batch.py"), "--", str(in_dir), str(out),
           "--backend-python", str(backend_setup["shim"]), "--weights-dir", str(backend_setup["weights"]),
           "--resolution", "64", "--views", "4", "--seed", "5"]
    r = subprocess.run(cmd, cwd=tmp, env=_bpy_env(tmp), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "batch_summary.json").read_text())
    assert sorted(c["name"] for c in summary["converted"]) == ["drawn_face", "paper_face"] and not summary["failed"]
    for name in ("drawn_face", "paper_face"):
        assert (out / f"{name}.blend").is_file() and (out / name / "mesh.ply").is_file()
        assert json.loads((out / name / "result.json").read_text())["seed"] == 5
    kinds = {c["name"]: json.loads((out / c["name"] / "result.json").read_text())["input"]["kind"] for c in summary["converted"]}
    assert kinds == {"drawn_face": "strokes", "paper_face": "image"}
    for c in summary["converted"]:  # the backend's mask warnings are in the summary and printed
        expected = [w["message"] for w in json.loads((out / c["name"] / "result.json").read_text())["warnings"]]
        assert c["warnings"] == expected
        assert all(f"s3d-batch: warning for {c['name']}: {m}" in r.stdout for m in expected)
    # the JPEG reached the backend upright and unscaled: its ink box is the drawn ellipse's (y 100..440)
    box = json.loads((out / "paper_face" / "result.json").read_text())["framing"]["content_box"]
    np.testing.assert_allclose(box, [136, 100, 376, 440], atol=4)
    # the .blend holds the imported head with its colour attribute
    check = ("import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
             "m = [o for o in bpy.data.objects if o.type == 'MESH']; "
             "print('HEADS', len(m), [a.name for a in m[0].data.color_attributes], len(m[0].vertex_groups) > 0)")
    r2 = subprocess.run([sys.executable, "-c", check, str(out / "paper_face.blend")], env=_bpy_env(tmp),
                        capture_output=True, text=True, timeout=120)
    assert "HEADS 1 ['Col'] True" in r2.stdout, r2.stdout[-2000:] + r2.stderr[-2000:]
    # the `python -m blender_addon.batch` form parses the same arguments
    r3 = subprocess.run([sys.executable, "-m", "blender_addon.batch", "--help"], cwd=ROOT, env=_bpy_env(tmp),
                        capture_output=True, text=True, timeout=120)
    assert r3.returncode == 0 and "IN_DIR" in r3.stdout.upper()
    # --one-scene: every head in one scene.blend, side by side, and the summary points at it
    out1 = tmp / "batch_one_scene"
    r4 = subprocess.run(cmd[:4] + [str(out1)] + cmd[5:] + ["--one-scene"], cwd=tmp, env=_bpy_env(tmp),
                        capture_output=True, text=True, timeout=240)
    assert r4.returncode == 0, r4.stdout[-3000:] + r4.stderr[-3000:]
    summary1 = json.loads((out1 / "batch_summary.json").read_text())
    assert {c["blend"] for c in summary1["converted"]} == {str(out1 / "scene.blend")} and len(summary1["converted"]) == 2
    r5 = subprocess.run([sys.executable, "-c", check, str(out1 / "scene.blend")], env=_bpy_env(tmp),
                        capture_output=True, text=True, timeout=120)
    assert "HEADS 2 ['Col'] True" in r5.stdout, r5.stdout[-2000:] + r5.stderr[-2000:]


def test_async_path_imports_from_the_timer_and_cancels(scenario):
    rep = scenario["report"]
    assert rep["async_timer_registered"] and rep["async_running_during"] and rep["generate_poll_while_running"] is False
    a = rep["async"]
    assert a["finished"] and len(a["new_objects"]) == 1 and a["seed"] == 9 and not a["running_after"], a
    assert a["progress"] == pytest.approx(1.0) and a["error"] == "" and len(a["stages"]) >= 2
    assert all("_" not in st for st in a["stages"]), a["stages"]  # words, not density_grid
    c = rep["async_cancel"]
    assert c["finished"] and c["error"] == "Cancelled" and c["unchanged"]
    assert "/extensions/" in rep["env_dir"] and rep["env_dir"].endswith("backend-env")


def test_live_preview_cancels_the_stale_draft_on_the_backend_and_fills_one_object(scenario):
    live = scenario["report"]["live_preview"]
    assert live["first_started"] and live["first_cancel_asked"], live
    assert live["first_outcome"].startswith("JobCancelled"), live
    assert live["first_backend_state"] == "cancelled", live  # through POST /v1/jobs/<id>/cancel
    assert live["applied"] and live["preview_objects"] == ["S3D Preview"] and live["preview_vertices"] > 100, live
    assert live["preview_key_is_drawing"] and live["colour_attribute"] and not live["error"], live
    assert live["counts"]["cancelled"] == 1 and live["counts"]["applied"] == 1, live
    assert live["draft_folders_left"] == [] and live["after_off"] == [], live


def test_env_setup_thread_reports_progress_lines_and_failures(tmp_path):
    from blender_addon.tasks import BackgroundTask, Failed, Finished, OutputLine, Progress
    from blender_addon.transport.backend_env import EnvSetup, env_python

    def run(steps):
        setup = EnvSetup(tmp_path / "env", ROOT, python=sys.executable)
        setup.steps = steps
        task = BackgroundTask(setup.run, name="s3d-env-setup").start()
        task.join(60)
        return task.drain()

    ok = run([("one", [sys.executable, "-c", "print('hello from pip')"]), ("two", [sys.executable, "-c", "pass"])])
    assert [type(e) for e in ok] == [Progress, OutputLine, Progress, Finished]
    assert ok[1].line == "hello from pip" and ok[2].fraction == pytest.approx(0.5)
    assert ok[0].message == "one" and ok[-1].result == str(env_python(tmp_path / "env"))
    bad = run([("broken", [sys.executable, "-c", "import sys; print('ERROR: no matching distribution'); sys.exit(4)"])])
    assert isinstance(bad[-1], Failed) and "exit code 4" in bad[-1].message and "no matching distribution" in bad[-1].message


def test_symmetric_option_gives_a_head_that_is_its_own_mirror_image(scenario):
    rep = scenario["report"]
    assert rep["symmetric_result"] == ["FINISHED"] and rep["symmetric_option"] is True
    assert rep["symmetric_max_mm"] < 0.5, rep["symmetric_max_mm"]


def test_picked_colours_go_into_the_job_options_as_hex(scenario):
    assert scenario["report"]["picked_colours"] == {"hair": "#ff0080"}


def test_target_faces_reaches_the_count_and_quad_remesh_keeps_colours_and_groups(scenario):
    from backend.pipeline import MAX_FACES, MIN_FACES

    rep = scenario["report"]
    assert rep["min_max_faces"] == [MIN_FACES, MAX_FACES]
    assert rep["target_result"] == ["FINISHED"]
    assert abs(rep["target"]["faces"] - 20000) <= 1000, rep["target"]  # 20,000 +- 5 %
    assert rep["target_too_small_poll"] is False
    q = rep["quad"]
    assert rep["quad_result"] == ["FINISHED"] and q["face_sizes"] == [4], q  # every polygon a quad
    assert ["Col", "FLOAT_COLOR", "POINT"] in q["color_attributes"] and q["vertex_groups"] and q["label_attribute"]
    assert "QuadriFlow" not in (q["warnings"] or "") and "texture" not in (q["warnings"] or "")
    # with "Bake texture" on too: the quad head has a UV map and its own textured material
    assert q["uv_layers"] == ["UVMap"] and q["image_nodes"] and q["texture_file"]
    col = scenario["arrays"]["quad_col"]
    assert len(col) and col.std() > 0  # the colours came over, not a flat default


def test_new_sketch_changes_only_what_it_must_and_says_so(scenario):
    rep = scenario["report"]
    assert rep["drawing_plane_after"] == ["AXIS_Y", "ORIGIN"]  # strokes land on the front plane
    assert rep["drawing_plane_changes"] == ["scene drawing plane View -> Front (X-Z)"]
    assert rep["drawing_plane_changes_again"] == []


def test_old_job_folders_are_pruned_but_not_those_of_heads_in_the_file(scenario):
    p = scenario["report"]["prune"]
    assert p["removed"] == [f"old_head_seed{i}_2020010{i + 1}-000000-000000" for i in (1, 2)]  # seed0's head exists
    assert p["in_use"] and p["in_use_exist"]
    assert not set(p["removed"]) & {Path(f).name for f in p["in_use"]}


def test_panel_and_preferences_draw_valid_ui(scenario):
    # every prop, operator, icon and keyword the panel and the preferences use exists in Blender's RNA
    rep = scenario["report"]
    assert {"prop", "operator", "label", "progress", "template_ID"} <= set(rep["draw_calls"])
    assert all("does not exist" in p for p in rep["backend_python_problems"])
    assert rep["backend_python_problem_ok"] is None


def test_stop_interrupts_a_start_in_progress(tmp_path):
    import threading

    from blender_addon.transport.backend_process import BackendConfig, BackendProcess
    from blender_addon.transport.http_client import BackendError

    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\nexec sleep 60\n")  # never prints S3D_READY
    slow.chmod(0o755)
    proc = BackendProcess(BackendConfig(backend_python=str(slow), backend_root=str(ROOT), startup_timeout_s=60))
    errors = []

    def start():
        try:
            proc.client()
        except BackendError as e:
            errors.append(e)

    t = threading.Thread(target=start)
    t.start()
    deadline = time.monotonic() + 10
    while proc.pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = proc.pid
    t0 = time.monotonic()
    proc.stop()
    t.join(10)
    assert time.monotonic() - t0 < 5 and not t.is_alive()
    assert errors and errors[0].code == "backend_stopped"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_build_addon_refuses_a_subfolder_without_init(tmp_path):
    import build_addon

    (tmp_path / "blender_manifest.toml").write_text("")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "ui").mkdir()
    (tmp_path / "ui" / "panel.py").write_text("")
    with pytest.raises(SystemExit, match="ui/__init__.py"):
        build_addon.addon_files(tmp_path)
    (tmp_path / "ui" / "__init__.py").write_text("")
    assert [n for n, _ in build_addon.addon_files(tmp_path)] == ["__init__.py", "blender_manifest.toml", "ui/__init__.py",
                                                                 "ui/panel.py"]


def test_build_addon_bundles_addon_backend_and_lite_weights_only(tmp_path):
    import zipfile

    import build_addon

    w = tmp_path / "weights"
    w.mkdir()
    for name, profile in (("sketch2mask_lite", "lite"), ("mask2triplane_paper", "paper")):
        (w / f"{name}.json").write_text(json.dumps({"profile": profile, "sha256": "0"}))
        (w / f"{name}.safetensors").write_bytes(b"weights")
    zip_path = build_addon.build(tmp_path / "dist", w)
    assert zip_path.name == f"s3d_sketch_to_head-{build_addon.manifest()['version']}.zip"
    names = zipfile.ZipFile(zip_path).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "backend/cli.py" in names
    for sub in ("tasks.py", "generation.py", "batch.py", "ui/__init__.py", "ui/operators.py", "scene/__init__.py",
                "scene/importer.py", "scene/live_preview_blender.py", "transport/__init__.py", "transport/job_runner.py"):
        assert sub in names, sub  # the add-on's subpackages are packaged, each with its __init__.py
    assert "backend/server.py" in names or not HAS_SERVER
    assert "weights/sketch2mask_lite.safetensors" in names and "weights/sketch2mask_lite.json" in names
    assert not any("mask2triplane_paper" in n for n in names)  # only 'lite' weights are bundled
    assert "backend/sketch/paper.py" in names  # the backend's paper clean-up module is source, not weights
    assert not any("__pycache__" in n or n.endswith(".pyc") or "torch/" in n for n in names)
    reqs = zipfile.ZipFile(zip_path).read("backend_requirements.txt").decode()
    assert "numpy" in reqs and "torch" not in reqs.replace("# the backend's requirements besides torch==2.13.0", "")
    assert zipfile.ZipFile(zip_path).read("blender_manifest.toml") == (ROOT / "blender_addon" / "blender_manifest.toml").read_bytes()
    again = build_addon.build(tmp_path / "dist2", w)
    assert again.read_bytes() == zip_path.read_bytes()  # reproducible


def test_remote_backend_opt_in_starts_nothing(backend_setup):
    from blender_addon.transport.backend_process import BackendConfig, BackendProcess

    local = BackendProcess(BackendConfig(backend_python=str(backend_setup["shim"]), backend_root=str(ROOT),
                                         weights_dir=str(backend_setup["weights"]), startup_timeout_s=120))
    try:
        client = local.client()
        remote = BackendProcess(BackendConfig(remote_url=client.base_url, remote_token=client.token))
        assert remote.client().health()["status"] == "ok"
        assert remote.pid is None and remote.is_running()
        wrong = BackendProcess(BackendConfig(remote_url=client.base_url, remote_token="not-the-token"))
        from blender_addon.transport.http_client import BackendError

        with pytest.raises(BackendError) as e:
            wrong.client()
        assert e.value.status == 401
    finally:
        local.stop()
    assert not local.is_running()


def test_loopback_client_ignores_proxy_settings(monkeypatch):
    from urllib.request import ProxyHandler

    from blender_addon.transport.http_client import BackendClient

    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    local = BackendClient("http://127.0.0.1:1", "t")
    remote = BackendClient("http://example.invalid:8765", "t")
    assert not any(isinstance(h, ProxyHandler) and h.proxies for h in local._opener.handlers)
    assert any(isinstance(h, ProxyHandler) and h.proxies for h in remote._opener.handlers)


def test_failed_download_leaves_no_partial_result(tmp_path, monkeypatch):
    """A connection lost while fetching a job's files must not leave some of them in the output folder."""
    from blender_addon.transport import job_runner
    from blender_addon.transport.backend_process import BackendConfig
    from blender_addon.transport.http_client import BackendError

    class FlakyClient:
        def submit(self, job_input, options):
            return "job1"

        def status(self, job_id, **kw):
            return {"state": "done", "stage": "done", "progress": 1.0,
                    "files": ["mesh.ply", "views/front.png", "result.json"], "result": {"seed": 0}}

        def file(self, job_id, rel, **kw):
            if rel == "views/front.png":
                raise BackendError("backend_unreachable", "connection lost")
            return b"data of " + rel.encode()

    class FakeBackend:
        def client(self):
            return FlakyClient()

    monkeypatch.setattr(job_runner, "backend_for", lambda config: FakeBackend())
    out = tmp_path / "job"
    req = job_runner.JobRequest(job_input={"kind": "strokes", "data": {}}, options={}, out_dir=str(out), name="head")
    with pytest.raises(BackendError):
        job_runner.run_job(BackendConfig(backend_python=sys.executable), req, poll_interval_s=0.0)
    assert list(out.rglob("*")) == []
    # and a download that succeeds puts every file in place
    monkeypatch.setattr(FlakyClient, "file", lambda self, job_id, rel, **kw: b"data of " + rel.encode())
    res = job_runner.run_job(BackendConfig(backend_python=sys.executable), req, poll_interval_s=0.0)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["mesh.ply", "result.json", "views/front.png"]
    assert (out / "views" / "front.png").read_bytes() == b"data of views/front.png"
    assert res.files == ["mesh.ply", "views/front.png", "result.json"]
