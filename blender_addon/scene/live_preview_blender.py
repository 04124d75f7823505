"""Live preview in Blender: the thin glue around :class:`~.live_preview.LivePreview` (main thread only).

With the panel's "Live preview" toggle on, a ``bpy.app.timers`` function (:func:`timer`, every 0.1 s)
reads the drawing's strokes in bulk and hashes them (:func:`drawing_key`), hands the key to the
:class:`~.live_preview.LivePreview` state machine, starts the draft jobs it asks for
(:func:`start_draft`: the panel's settings with :data:`~.live_preview.DRAFT_OPTIONS`, run by
``job_runner.run_job`` in a worker thread that cancels the backend job when the drawing changes) and
applies finished drafts (:func:`apply_preview`): ONE object named "S3D Preview" whose mesh data is
swapped in place, the old mesh removed.

No undo step is pushed for the preview: it is made from a timer, never by an operator, and the mesh is
built with Blender's mesh API (``foreach_set``), not with the PLY import operator, which would also
change the selection and the active object of the artist who is drawing. Nothing holds Blender data
across ticks (undo and File > Open free it): objects are looked up again every time.

Timers do not run in background mode: tests call :func:`tick` by hand.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import bpy
import numpy as np

from .. import generation
from ..generation import GenerateSettings, InputError, build_request
from ..tasks import BackgroundTask
from ..transport.job_runner import JobRequest, run_job
from ..ui.preferences import backend_config
from .gp_capture import is_grease_pencil, read_strokes
from .importer import COLOR_ATTRIBUTE, vertex_colour_material
from .live_preview import DRAFT_OPTIONS, LivePreview, read_mesh_ply

PREVIEW_NAME = "S3D Preview"
#: custom property that marks the preview object (found by it, whatever the user renamed it to)
PREVIEW_PROP = "s3d_preview"
TICK_S = 0.1
PREVIEW_OFFSET_M = (0.45, 0.0, 0.0)  # beside the sketch: one tri-plane box (0.40 m) plus a gap


class FailedJob:
    """A job handle for a draft that could not even start (nothing to send): done, its result raises."""

    def __init__(self, error: Exception):
        self.error = error

    def done(self) -> bool:
        """Always True."""
        return True

    def cancel(self) -> None:
        """Nothing to cancel."""

    def result(self):
        """Raises the error."""
        raise self.error


def backend_runner(config):
    """The default draft runner: ``runner(request) -> BackgroundTask`` that runs the job on the backend
    (``run_job``, cancelled through the backend's cancel endpoint), reads ``mesh.ply`` into arrays in the
    worker thread and always removes the job's folder, so that draft folders never pile up."""
    def run(request: JobRequest) -> BackgroundTask:
        def work(task: BackgroundTask) -> dict:
            try:
                res = run_job(config, request, cancel_event=task.cancel_event, poll_interval_s=0.05)
                return {"mesh": read_mesh_ply(Path(request.out_dir) / "mesh.ply"), "job_id": res.job_id,
                        "result": res.result}
            finally:
                shutil.rmtree(request.out_dir, ignore_errors=True)
        return BackgroundTask(work, name="s3d-live-preview").start()
    return run


class _Live:
    state: LivePreview | None = None
    #: ``runner(request) -> job handle``; None: :func:`backend_runner` with the preferences' backend
    runner = None
    requests: list[JobRequest] = []  # every draft request started (the tests read it)


def set_runner(runner) -> None:
    """Use ``runner(request) -> job handle`` for draft jobs (tests); None restores the backend runner."""
    _Live.runner = runner


def state() -> LivePreview | None:
    """The live preview's state machine while the toggle is on, else None."""
    return _Live.state


def drawing_key(context) -> str | None:
    """A hash of what the draft depends on: the Grease Pencil strokes (world space, read in bulk) and
    the panel settings that shape the head; None when the input is not a Grease Pencil drawing with strokes."""
    s = context.scene.s3d
    if s.source != "GREASE_PENCIL":
        return None
    settings = GenerateSettings.from_scene(context)
    obj = settings.gp_object
    if not is_grease_pencil(obj):
        return None
    positions, radii, offsets = read_strokes(obj)
    if len(positions) == 0:
        return None
    h = hashlib.sha1()
    for a in (positions, radii, offsets):
        h.update(np.ascontiguousarray(a).tobytes())
    cam = context.scene.camera if settings.projection == "CAMERA" else None
    h.update(repr((obj.name, settings.projection, settings.seed, settings.no_frame, settings.symmetric,
                   sorted((settings.colors or {}).items()),
                   [list(r) for r in cam.matrix_world] if cam is not None else None)).encode("utf-8"))
    return h.hexdigest()


def start_draft(context, key: str):
    """Start a draft job of the current drawing (the panel's settings with the draft options)."""
    settings = GenerateSettings.from_scene(context)
    settings.max_faces, settings.quad_remesh, settings.texture_size = 0, False, 0
    try:
        req = build_request(context, settings, name=PREVIEW_NAME)
    except (InputError, ValueError) as e:
        return FailedJob(e)
    req.options.update(DRAFT_OPTIONS)
    req.options["formats"] = ["ply"]
    req.out_dir = tempfile.mkdtemp(prefix="s3d-preview-")
    req.tag["key"] = key
    _Live.requests.append(req)
    runner = _Live.runner or backend_runner(backend_config(context))
    return runner(req)


def preview_object():
    """The preview object in this file, or None."""
    obj = bpy.data.objects.get(PREVIEW_NAME)
    if obj is not None and obj.get(PREVIEW_PROP):
        return obj
    return next((o for o in bpy.data.objects if o.get(PREVIEW_PROP)), None)


def preview_mesh(name: str, arrays: dict):
    """A new mesh data-block from ``read_mesh_ply`` arrays: triangles, colour attribute ``Col`` (sRGB
    bytes, as the importer makes it), the shared vertex-colour material, smooth shading."""
    v = np.asarray(arrays["vertices"], np.float32).reshape(-1, 3)
    f = np.asarray(arrays["faces"], np.int32).reshape(-1, 3)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.ravel())
    me.loops.add(f.size)
    me.loops.foreach_set("vertex_index", f.ravel())
    me.polygons.add(len(f))
    me.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    me.update()
    rgb = arrays.get("rgb")
    if rgb is not None:
        col = me.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
        rgba = np.ones((len(v), 4), np.float32)
        rgba[:, :3] = np.asarray(rgb, np.float32) / 255.0
        col.data.foreach_set("color_srgb", rgba.ravel())
        me.color_attributes.active_color = col
        me.color_attributes.render_color_index = me.color_attributes.active_color_index
    me.materials.append(vertex_colour_material())
    if len(me.polygons):
        me.shade_smooth()
    return me


def apply_preview(context, arrays: dict, key: str, sketch=None):
    """Put a draft mesh into the one preview object: its mesh data is swapped and the old mesh removed;
    the object is created (beside ``sketch``) only when there is none. Returns the object."""
    me = preview_mesh(PREVIEW_NAME, arrays)
    obj = preview_object()
    if obj is None:
        obj = bpy.data.objects.new(PREVIEW_NAME, me)
        collections = list(sketch.users_collection) if sketch is not None else []
        (collections[0] if collections else context.scene.collection).objects.link(obj)
        base = sketch.matrix_world.translation if sketch is not None else context.scene.cursor.location
        obj.location = tuple(float(b) + o for b, o in zip(base, PREVIEW_OFFSET_M))
        obj[PREVIEW_PROP] = True
    else:
        old, obj.data = obj.data, me
        if old is not None and old.users == 0:
            bpy.data.meshes.remove(old)
    me.name = PREVIEW_NAME
    obj["s3d_preview_key"] = key
    return obj


def remove_preview() -> None:
    """Delete the preview object and its mesh."""
    obj = preview_object()
    if obj is None:
        return
    me = obj.data
    bpy.data.objects.remove(obj)
    if me is not None and me.users == 0:
        bpy.data.meshes.remove(me)


def _status_text(live: LivePreview) -> str:
    if live.last_error:
        return f"Live preview failed: {live.last_error}"
    if live.running is not None:
        return "Live preview: drafting"
    if live.latest_key is not None and live.latest_key != live.applied_key:
        return "Live preview: waiting for the drawing to settle"
    if live.applied_key and live.last_latency_s is not None:
        return f"Live preview: updated {live.last_latency_s:.1f} s after the last change"
    return "Live preview: draw to start"


def tick(context) -> LivePreview | None:
    """One step of the live preview: observe the drawing, start / cancel / apply drafts. Returns the
    state (None when the toggle is off, after stopping)."""
    s = getattr(context.scene, "s3d", None)
    if s is None or not s.live_preview:
        stop()
        return None
    live = _Live.state
    if live is None:
        live = _Live.state = LivePreview(start=lambda key: start_draft(bpy.context, key))
    try:
        key = drawing_key(context)
    except (ValueError, ReferenceError):  # the object went away between lookups
        key = None
    live.observe(key)
    update = live.tick(can_start=not generation.is_running())
    if update is not None:
        sketch = GenerateSettings.from_scene(context).gp_object
        apply_preview(context, update.result["mesh"], update.key, sketch if is_grease_pencil(sketch) else None)
    status = getattr(context.window_manager, "s3d_status", None)
    if status is not None:
        status.preview_stage = _status_text(live)
    return live


def timer():
    """The ``bpy.app.timers`` function: :func:`tick` in the first window's context; stops with the toggle."""
    wm = bpy.context.window_manager
    window = wm.windows[0] if len(wm.windows) else None
    try:
        with bpy.context.temp_override(window=window):
            live = tick(bpy.context)
            for area in (window.screen.areas if window is not None else []):
                if area.type == "VIEW_3D":
                    area.tag_redraw()
    except Exception as e:  # never let the timer die silently with the toggle on
        status = getattr(wm, "s3d_status", None)
        if status is not None:
            status.preview_stage = f"Live preview failed: {e}"
        return TICK_S
    return None if live is None else TICK_S


def start() -> None:
    """Start following the drawing (the toggle was switched on): register the timer."""
    if not bpy.app.timers.is_registered(timer):
        bpy.app.timers.register(timer, first_interval=TICK_S, persistent=True)


def stop() -> None:
    """Stop following the drawing: cancel draft jobs, forget the state and remove the timer."""
    if _Live.state is not None:
        _Live.state.stop()
        _Live.state = None
    if bpy.app.timers.is_registered(timer):
        bpy.app.timers.unregister(timer)


def toggle_changed(settings, context) -> None:
    """Update callback of ``scene.s3d.live_preview``: on starts the timer; off stops it and removes the preview."""
    if settings.live_preview:
        start()
    else:
        stop()
        remove_preview()


@bpy.app.handlers.persistent
def _on_load(_dummy) -> None:
    stop()
    scene = bpy.context.scene
    if scene is not None and getattr(scene, "s3d", None) is not None and scene.s3d.live_preview:
        start()


def register() -> None:
    if _on_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load)


def unregister() -> None:
    stop()
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
