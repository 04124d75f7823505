"""The live preview's Blender glue under the ``bpy`` module, run by tests/test_live_preview.py in a subprocess.

Usage: python tests/addon_bpy_live_preview.py --out REPORT.json

Registers the add-on from the checkout, makes a sketch object, turns "Live preview" on and adds strokes
one by one with the Grease Pencil Python API, calling the glue's :func:`tick` by hand (timers do not run
in background mode). Draft jobs are run by a fake runner that answers after 0.3 s with a mesh made of
the sent strokes' points (one vertex per point, colour 10 20 30), so the preview can be traced to the
drawing it came from. Records what it observed in REPORT.json; the assertions live in the pytest file.
Only this script touches bpy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

import blender_addon  # noqa: E402
from blender_addon.scene import live_preview_blender as glue  # noqa: E402
from blender_addon.scene.sketch_setup import add_stroke, create_sketch_object  # noqa: E402

FAKE_JOB_S = 0.3


class FakeDraft:
    """A draft job that finishes FAKE_JOB_S after it started, with a mesh of the request's stroke points."""

    def __init__(self, request):
        self.request, self.t_end, self.cancelled = request, time.monotonic() + FAKE_JOB_S, False

    def done(self) -> bool:
        return self.cancelled or time.monotonic() >= self.t_end

    def cancel(self) -> None:
        self.cancelled = True

    def result(self):
        if self.cancelled:
            raise RuntimeError("cancelled")
        pts = np.concatenate([np.asarray(s["points"], np.float32) for s in self.request.job_input["data"]["strokes"]])
        v = np.stack([pts[:, 0] * 0.4 - 0.2, np.zeros(len(pts)), 0.2 - pts[:, 1] * 0.4], 1).astype(np.float32)
        f = np.array([[0, i, i + 1] for i in range(1, len(v) - 1)], np.int32)
        return {"mesh": {"vertices": v, "faces": f, "rgb": np.tile(np.array([[10, 20, 30]], np.uint8), (len(v), 1)),
                         "label": None}}


class Recorder:
    """Records every ``bpy.ops`` call while on (the preview must run none)."""

    def __init__(self):
        self.mod = sys.modules["bpy.ops"]
        self.real = self.mod._op_call
        self.calls: list[str] = []
        self.on = False
        self.mod._op_call = self._call

    def _call(self, name, *args):
        if self.on:
            self.calls.append(name)
        return self.real(name, *args)


def stroke_points(i: int, n: int) -> np.ndarray:
    """A short stroke in the sketch object's local plane (x, y, 0): a different arc for each i."""
    t = np.linspace(0.0, 1.0, n)
    return np.stack([-0.08 + 0.04 * i + 0.03 * t, 0.05 - 0.03 * i + 0.02 * np.sin(3 * t), np.zeros(n)], 1)


def preview_facts(extra: dict | None = None) -> dict:
    obj = glue.preview_object()
    previews = [o for o in bpy.data.objects if o.get(glue.PREVIEW_PROP)]
    out = {"preview_objects": len(previews), "s3d_meshes": sum(m.name.startswith(glue.PREVIEW_NAME) for m in bpy.data.meshes)}
    if obj is not None:
        me = obj.data
        col = me.color_attributes.get("Col")
        buf = np.empty(len(me.vertices) * 4, np.float32)
        if col is not None:
            col.data.foreach_get("color_srgb", buf)
        out.update({"preview_name": obj.name, "preview_vertices": len(me.vertices), "mesh_name": me.name,
                    "preview_key": obj.get("s3d_preview_key"), "mesh_uid": me.session_uid,
                    "object_uid": obj.session_uid,
                    "colour_attribute": [col.name, col.data_type, col.domain] if col else None,
                    "first_colour": [int(round(x * 255)) for x in buf[:3]] if col else None})
    out.update(extra or {})
    return out


def tick_until(pred, limit_s: float = 10.0, every_s: float = 0.05) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        glue.tick(bpy.context)
        if pred():
            return True
        time.sleep(every_s)
    return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
    report: dict = {}
    drafts: list[FakeDraft] = []

    def runner(request):
        drafts.append(FakeDraft(request))
        return drafts[-1]

    try:
        blender_addon.register()
        ctx = bpy.context
        sketch = create_sketch_object(ctx)
        report["sketch_name"] = sketch.name
        ctx.scene.s3d.gp_object = sketch
        try:
            bpy.ops.object.mode_set(mode="PAINT_GREASE_PENCIL")
        except RuntimeError as e:  # headless builds may refuse the paint mode: the test compares what it is
            report["mode_error"] = str(e)
        report["mode_before"] = bpy.context.mode
        glue.set_runner(runner)
        ctx.scene.s3d.live_preview = True
        report["timer_registered_when_on"] = bpy.app.timers.is_registered(glue.timer)
        recorder = Recorder()
        recorder.on = True

        drawing = sketch.data.layers["Lines"].current_frame().drawing
        sizes = [12, 9, 15, 7]
        for i, n in enumerate(sizes):  # an artist drawing: a stroke every 0.1 s
            add_stroke(drawing, stroke_points(i, n), 0.002)
            for _ in range(2):
                glue.tick(bpy.context)
                time.sleep(0.05)
        report["strokes"] = sizes
        report["drafts_started_while_drawing"] = len(drafts)
        applied = tick_until(lambda: glue.state().counts["applied"] >= 1)
        live = glue.state()
        report["after_last_stroke"] = preview_facts({
            "applied": applied, "drawing_key": glue.drawing_key(bpy.context), "latency_s": live.last_latency_s,
            "draft_options": {k: drafts[-1].request.options[k] for k in ("resolution", "views", "color_resolution",
                                                                          "view_resolution", "draft", "formats")},
            "active_object": bpy.context.active_object.name, "mode": bpy.context.mode})
        first = report["after_last_stroke"]

        # a stroke, then another one while its draft runs: the first draft is stale
        add_stroke(drawing, stroke_points(4, 6), 0.002)
        started = tick_until(lambda: glue.state().running is not None)
        stale = drafts[-1]
        add_stroke(drawing, stroke_points(5, 5), 0.002)
        glue.tick(bpy.context)
        stale_cancelled = stale.cancelled
        tick_until(lambda: glue.state().counts["applied"] >= 2)
        tick_until(lambda: not glue.state().busy(), limit_s=2.0)
        report["extra_stroke_points"] = 6 + 5
        edit = preview_facts({"started": started, "stale_cancelled": stale_cancelled,
                              "counts": dict(glue.state().counts)})
        edit["same_object"] = edit.get("object_uid") == first.get("object_uid")
        edit["old_mesh_removed"] = first.get("mesh_uid") not in {m.session_uid for m in bpy.data.meshes}
        report["after_edit"] = edit
        recorder.on = False

        # undo: a marker step, then a preview update, then one undo
        bpy.ops.ed.undo_push(message="base")
        marker = bpy.data.objects.new("S3D Undo Marker", None)
        bpy.context.scene.collection.objects.link(marker)
        bpy.ops.ed.undo_push(message="marker")
        recorder.on = True
        add_stroke(bpy.data.objects[report["sketch_name"]].data.layers["Lines"].current_frame().drawing,
                   stroke_points(6, 8), 0.002)
        updated = tick_until(lambda: glue.state().counts["applied"] >= 3)
        recorder.on = False
        before = "S3D Undo Marker" in bpy.data.objects
        bpy.ops.ed.undo()
        report["undo"] = {"preview_updated": updated, "marker_before_undo": before,
                          "marker_after_undo": "S3D Undo Marker" in bpy.data.objects}
        report["operators_run"] = recorder.calls

        glue.tick(bpy.context)  # the glue copes with data freed by undo
        report["timer_return_on"] = glue.timer()  # the timer function itself (timers never fire headless)
        # a file saved with the toggle on follows its drawing again when opened
        saved = str(Path(args.out).with_name("live.blend"))
        bpy.ops.wm.save_as_mainfile(filepath=saved, copy=True)
        glue.stop()
        bpy.ops.wm.open_mainfile(filepath=saved)
        report["timer_registered_after_open"] = bpy.app.timers.is_registered(glue.timer)
        bpy.context.scene.s3d.live_preview = False
        report["toggle_off"] = {"preview_objects": sum(1 for o in bpy.data.objects if o.get(glue.PREVIEW_PROP)),
                                "s3d_meshes": sum(m.name.startswith(glue.PREVIEW_NAME) for m in bpy.data.meshes),
                                "timer_registered": bpy.app.timers.is_registered(glue.timer),
                                "state": glue.state()}
        report["timer_return_off"] = glue.timer()
        glue.set_runner(None)
        blender_addon.unregister()
    except Exception:
        report["exception"] = traceback.format_exc()
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
