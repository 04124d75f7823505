"""Live preview: the state machine (blender_addon/scene/live_preview.py) with a fake clock and a fake job runner,
the PLY reader, and, under bpy 5.0.1 in a subprocess (tests/addon_bpy_live_preview.py), the Blender glue:
strokes added one by one, one preview object updated in place, stale drafts cancelled, no undo steps.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TESTS))

from blender_addon.scene.live_preview import DEBOUNCE_S, DRAFT_OPTIONS, LivePreview, read_mesh_ply  # noqa: E402
from blender_addon.tasks import BackgroundTask  # noqa: E402
from ply_files import write_ply  # noqa: E402

HAS_BPY = importlib.util.find_spec("bpy") is not None


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


class FakeJob:
    """A draft job that finishes when the test says so."""

    def __init__(self, key):
        self.key, self.cancelled, self.finished, self.error = key, False, False, None

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> None:
        self.cancelled = True

    def result(self):
        if self.error is not None:
            raise self.error
        return f"mesh of {self.key}"


class FakeRunner:
    def __init__(self):
        self.jobs: list[FakeJob] = []

    def __call__(self, key):
        self.jobs.append(FakeJob(key))
        return self.jobs[-1]


def _live():
    clock, runner = FakeClock(), FakeRunner()
    return LivePreview(start=runner, clock=clock), clock, runner


def test_a_draft_starts_only_after_the_drawing_is_still_for_the_debounce_time():
    live, clock, runner = _live()
    assert live.tick() is None and not runner.jobs  # nothing drawn yet
    for stroke in ("a", "ab", "abc"):  # a stroke every 0.3 s: each one restarts the wait
        live.observe(stroke)
        clock.advance(0.3)
        assert live.tick() is None and not runner.jobs
    clock.advance(DEBOUNCE_S - 0.3 - 0.01)
    live.tick()
    assert not runner.jobs
    clock.advance(0.02)
    live.tick()
    assert [j.key for j in runner.jobs] == ["abc"]  # one job, for the last drawing only
    live.tick()
    clock.advance(5.0)
    live.tick()
    assert len(runner.jobs) == 1  # the same drawing is never drafted twice at once


def test_a_finished_draft_of_the_current_drawing_is_applied_once_with_its_latency():
    live, clock, runner = _live()
    live.observe("abc")
    clock.advance(0.5)
    live.tick()
    clock.advance(0.7)
    runner.jobs[0].finished = True
    update = live.tick()
    assert update.key == "abc" and update.result == "mesh of abc"
    assert update.latency_s == pytest.approx(1.2) and live.last_latency_s == pytest.approx(1.2)
    assert live.tick() is None and len(runner.jobs) == 1  # applied: nothing more to do
    assert live.counts == {"started": 1, "cancelled": 0, "discarded": 0, "applied": 1, "failed": 0}


def test_a_new_stroke_cancels_the_running_draft_and_its_result_is_never_applied():
    live, clock, runner = _live()
    live.observe("a")
    clock.advance(0.5)
    live.tick()
    stale = runner.jobs[0]
    assert live.observe("ab") is True
    assert stale.cancelled and live.running is None and live.counts["cancelled"] == 1
    stale.finished = True  # the stale job still ends (cancelled or not): its result is dropped
    assert live.tick() is None and live.counts["discarded"] == 1 and not live.stale
    clock.advance(0.5)
    live.tick()
    assert [j.key for j in runner.jobs] == ["a", "ab"]
    runner.jobs[1].finished = True
    assert live.tick().result == "mesh of ab"
    assert live.observe("ab") is False  # the same drawing again is no change


def test_a_stale_job_does_not_hold_back_the_next_draft():
    live, clock, runner = _live()
    live.observe("a")
    clock.advance(0.5)
    live.tick()
    live.observe("ab")  # job "a" is cancelled but has not stopped yet
    clock.advance(0.5)
    live.tick()
    assert [j.key for j in runner.jobs] == ["a", "ab"] and live.busy()
    runner.jobs[1].finished = True
    assert live.tick().key == "ab"
    runner.jobs[0].finished = True
    live.tick()
    assert not live.busy() and live.counts["applied"] == 1 and live.counts["discarded"] == 1


def test_no_draft_while_the_final_generate_runs_and_a_failure_is_not_retried():
    live, clock, runner = _live()
    live.observe("a")
    clock.advance(1.0)
    live.tick(can_start=False)
    assert not runner.jobs
    live.tick()
    runner.jobs[0].error, runner.jobs[0].finished = RuntimeError("backend down"), True
    assert live.tick() is None and live.last_error == "backend down" and live.counts["failed"] == 1
    clock.advance(2.0)
    live.tick()
    assert len(runner.jobs) == 1  # the same drawing would fail again
    live.observe("ab")
    clock.advance(0.5)
    live.tick()
    runner.jobs[1].finished = True
    assert live.tick().key == "ab" and live.last_error == ""


def test_nothing_to_send_cancels_and_stop_cancels_everything():
    live, clock, runner = _live()
    live.observe("a")
    clock.advance(0.5)
    live.tick()
    live.observe(None)  # the input is no longer a drawing: the draft is stale
    assert runner.jobs[0].cancelled
    clock.advance(5.0)
    live.tick()
    assert len(runner.jobs) == 1
    live.observe("b")
    clock.advance(0.5)
    live.tick()
    live.stop()
    assert runner.jobs[1].cancelled and live.latest_key is None and live.running is None


def test_background_task_hands_over_result_error_and_cancel():
    job = BackgroundTask(lambda task: 42).start()
    job.join(5)
    assert job.done() and job.result() == 42
    job = BackgroundTask(lambda task: (_ for _ in ()).throw(ValueError("bad"))).start()
    job.join(5)
    with pytest.raises(ValueError, match="bad"):
        job.result()
    started = threading.Event()

    def wait(task):
        started.set()
        assert task.cancel_event.wait(5)
        return "stopped"

    job = BackgroundTask(wait).start()
    started.wait(5)
    assert not job.done()
    job.cancel()
    job.join(5)
    assert job.done() and job.result() == "stopped"


def test_read_mesh_ply_reads_the_backends_layout(tmp_path):
    from backend.export import ply_bytes

    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 3)).astype(np.float32)
    f = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]], np.int32)
    lin = rng.uniform(size=(7, 3)).astype(np.float32)
    labels = np.arange(7, dtype=np.uint8)
    (tmp_path / "mesh.ply").write_bytes(ply_bytes(v, f, lin, labels))
    out = read_mesh_ply(tmp_path / "mesh.ply")
    np.testing.assert_array_equal(out["vertices"], v)
    np.testing.assert_array_equal(out["faces"], f)
    np.testing.assert_array_equal(out["label"], labels)
    from backend.export import read_ply

    np.testing.assert_array_equal(out["rgb"], read_ply((tmp_path / "mesh.ply").read_bytes())["rgb"])
    write_ply(tmp_path / "plain.ply", v, f)  # no colours, no labels
    plain = read_mesh_ply(tmp_path / "plain.ply")
    assert plain["rgb"] is None and plain["label"] is None and plain["faces"].shape == (3, 3)
    (tmp_path / "cut.ply").write_bytes((tmp_path / "mesh.ply").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_mesh_ply(tmp_path / "cut.ply")
    (tmp_path / "text.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    with pytest.raises(ValueError, match="binary"):
        read_mesh_ply(tmp_path / "text.ply")


def test_draft_options_are_what_the_bench_measures_and_the_backend_accepts():
    from backend import bench
    from backend.options import GenerateOptions

    assert bench.DRAFT_OPTIONS == DRAFT_OPTIONS
    GenerateOptions.from_dict(dict(DRAFT_OPTIONS))  # raises bad_option when the backend refuses one


# ---------------------------------------------------------------------------------------------------------
# The Blender glue under bpy, in a subprocess (bpy and torch never share a process)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bpy_live(tmp_path_factory):
    if not HAS_BPY:
        pytest.skip("bpy is not installed")
    from test_addon import _bpy_env

    tmp = tmp_path_factory.mktemp("live_preview")
    out = tmp / "report.json"
    cmd = [sys.executable, str(TESTS / "addon_bpy_live_preview.py"), "--out", str(out)]
    r = subprocess.run(cmd, cwd=tmp, env=_bpy_env(tmp), capture_output=True, text=True, timeout=300)
    assert out.is_file(), f"rc {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert "exception" not in report, report["exception"]
    return report


def test_bpy_preview_follows_the_last_stroke_in_one_object(bpy_live):
    rep = bpy_live
    strokes = rep["strokes"]
    assert len(strokes) == 4
    # drawn one by one, 0.1 s apart: no draft starts while the artist keeps drawing ...
    assert rep["drafts_started_while_drawing"] == 0
    # ... then one draft of the last drawing, applied
    last = rep["after_last_stroke"]
    assert last["preview_objects"] == 1 and last["preview_name"] == "S3D Preview"
    assert last["preview_vertices"] == sum(strokes)  # the fake backend's mesh has one vertex per stroke point
    assert last["preview_key"] == last["drawing_key"]
    assert last["mesh_name"] == "S3D Preview" and last["s3d_meshes"] == 1
    assert last["colour_attribute"] == ["Col", "FLOAT_COLOR", "POINT"]
    assert last["first_colour"] == [10, 20, 30]
    assert last["latency_s"] < 1.5 and last["draft_options"] == {**DRAFT_OPTIONS, "formats": ["ply"]}
    assert last["active_object"] == rep["sketch_name"] and last["mode"] == rep["mode_before"]


def test_bpy_preview_is_replaced_in_place_and_stale_drafts_are_cancelled(bpy_live):
    rep = bpy_live
    edit = rep["after_edit"]
    # a stroke while the draft ran: that draft was cancelled, its result never applied
    assert edit["stale_cancelled"] is True and edit["counts"]["cancelled"] >= 1
    assert edit["counts"]["discarded"] >= 1
    assert edit["preview_vertices"] == sum(rep["strokes"]) + rep["extra_stroke_points"]
    assert edit["same_object"] and edit["old_mesh_removed"] and edit["preview_objects"] == 1
    assert edit["s3d_meshes"] == 1 and edit["mesh_name"] == "S3D Preview"


def test_bpy_preview_pushes_no_undo_step_and_toggle_off_removes_it(bpy_live):
    rep = bpy_live
    undo = rep["undo"]
    # one undo from after the preview updates goes straight back past the marker step: the preview
    # pushed no undo step of its own
    assert undo["marker_before_undo"] and not undo["marker_after_undo"], undo
    assert rep["operators_run"] == [], rep["operators_run"]
    off = rep["toggle_off"]
    assert off == {"preview_objects": 0, "s3d_meshes": 0, "timer_registered": False, "state": None}
    assert rep["timer_registered_when_on"] is True
    assert rep["timer_return_on"] == 0.1 and rep["timer_return_off"] is None  # the timer stops with the toggle
    assert rep["timer_registered_after_open"] is True  # load_post: a file saved with the toggle on
