"""Generate: the add-on's logic as plain functions (operators and the batch entry point call these).

* :func:`build_request` turns the panel settings (a Grease Pencil object, a sketch image file or a mask
  image) into a :class:`~.transport.job_runner.JobRequest` (docs/contracts.md section 5).
* :func:`run_sync` runs jobs on the calling thread and imports the results: the path for
  ``bpy.app.background`` (``blender -b``, tests, batch), where timers never fire.
* :func:`start_async` runs them in a background task (``transport.job_runner.jobs_work`` in
  :data:`JOBS`, a ``tasks.TaskSlot``) whose ``bpy.app.timers`` function, on the main thread, hands
  its events to :func:`_on_job_event` (the progress shown in the panel) and, at the end, to
  :func:`_on_job_end` (imports the finished heads). Blender data is touched only on the main thread.

Imports that change the scene end with one undo step ("S3D: import head"); a job that fails changes
nothing. Main thread only (except the task's work, in transport.job_runner).
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from .scene.gp_capture import capture, is_grease_pencil, stroke_hash
from .scene.importer import import_job_folder
from .scene.label_set import colour_to_ids, names_for
from .scene.mesh_ops import QuadRemeshError, TextureBakeError, bake_texture, quad_remesh
from .tasks import Cancelled, Failed, Finished, PartResult, Progress, TaskSlot
from .transport.backend_process import backend_for
from .transport.http_client import BackendError
from .transport.job_folders import prune_job_folders
from .transport.job_runner import JobRequest, JobResult, jobs_work, run_job
from .transport.png_io import encode_png, is_png
from .ui.preferences import backend_config, get_preferences, job_root

VARIATION_SPACING_M = 0.45  # side by side: one tri-plane box (0.40 m) plus a gap
#: the backend's decimation budget range (backend/pipeline.py MIN_FACES, MAX_FACES)
MIN_FACES, MAX_FACES = 1_000, 5_000_000

class InputError(ValueError):
    """The panel's input cannot be sent (nothing drawn, no file, ...); the message says what to do."""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "sketch"


def image_to_grey_png(img) -> bytes:
    """A Blender image -> PNG bytes of its grey values (row 0 = top)."""
    w, h = img.size
    if w == 0 or h == 0:
        raise InputError(f"the image {img.name!r} has no pixels (is the file missing?)")
    px = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(px)
    rgba = px.reshape(h, w, 4)[::-1]
    grey = rgba[..., :3].mean(-1) * rgba[..., 3] + (1.0 - rgba[..., 3])  # transparent -> white paper
    return encode_png(np.clip(np.round(grey * 255.0), 0, 255).astype(np.uint8))


def image_file_png_bytes(path: str) -> bytes:
    """A sketch image file -> PNG bytes (PNG files as they are; other formats through Blender's loader)."""
    p = Path(bpy.path.abspath(path))
    if not p.is_file():
        raise InputError(f"the sketch image {str(p)!r} does not exist; pick an image file")
    data = p.read_bytes()
    if is_png(data):
        return data
    img = bpy.data.images.load(str(p), check_existing=False)
    try:
        return image_to_grey_png(img)
    finally:
        bpy.data.images.remove(img)


def mask_ids_from_image(img, subject: str = "human") -> np.ndarray:
    """A mask image (colour-coded in ``subject``'s palette: CelebAMask-HQ for humans, seg2cat for cats, or
    grey label ids) -> ``(H, W)`` uint8 ids.

    Painted colours snap to the nearest palette colour, so soft brush edges are fine.
    """
    num_classes = len(names_for(subject))
    w, h = img.size
    if w == 0 or h == 0:
        raise InputError(f"the mask image {img.name!r} has no pixels")
    px = np.empty(w * h * 4, dtype=np.float32)
    img.pixels.foreach_get(px)
    rgb = px.reshape(h, w, 4)[::-1, :, :3]
    grey = np.ptp(rgb, axis=-1).max() < 1e-6
    if img.get("s3d_kind") == "ids" or (grey and float(rgb.max()) <= (num_classes - 1) / 255.0 + 1e-6):
        return np.clip(np.round(rgb[..., 0] * 255.0), 0, num_classes - 1).astype(np.uint8)
    return colour_to_ids(rgb, subject)


@dataclass
class GenerateSettings:
    """The panel's inputs as plain values (from ``scene.s3d`` or from the batch command line)."""

    source: str = "GREASE_PENCIL"  # or "IMAGE" or "MASK"
    gp_object: object = None
    projection: str = "FRONT"
    image_path: str = ""
    mask_image: object = None
    seed: int = 0
    resolution: int = 128
    views: int = 6
    no_frame: bool = False
    symmetric: bool = False
    colors: dict | None = None  # {"hair" | "skin" | "eyes" | "lips": "#rrggbb"}: colours the artist picked
    formats: list[str] = field(default_factory=lambda: ["ply"])
    max_faces: int = 0  # 0: the backend's default budget
    quad_remesh: bool = False
    texture_size: int = 0  # 0: no texture; else bake the colours into a texture of this many px a side
    subject: str = "human"  # or "cat": the backend's cat networks (job option subject)

    @classmethod
    def from_scene(cls, context) -> "GenerateSettings":
        """Read the panel's settings (``scene.s3d``); the Grease Pencil object defaults to the active one."""
        s = context.scene.s3d
        subject = s.subject.lower()
        return cls(source=s.source, gp_object=s.gp_object or context.active_object, projection=s.projection,
                   image_path=s.image_path, mask_image=s.mask_image, seed=s.seed, resolution=int(s.resolution),
                   views=s.views, no_frame=s.no_frame, symmetric=s.symmetric,
                   colors=picked_colours(s) if subject == "human" else None, subject=subject,
                   max_faces=s.max_faces,
                   quad_remesh=s.quad_remesh,
                   texture_size=int(s.texture_size) if s.texture else 0)


def picked_colours(props) -> dict | None:
    """The panel's ticked colour picks as the backend's ``colors`` option (sRGB hex), or None."""
    picks = {g: "#{:02x}{:02x}{:02x}".format(*(int(round(max(0.0, min(1.0, c)) * 255)) for c in getattr(props, f"{g}_color")))
             for g in ("hair", "skin", "eyes", "lips") if getattr(props, f"pick_{g}")}
    return picks or None


def input_problem(context, settings: GenerateSettings) -> str | None:
    """Why Generate cannot run with these inputs (a sentence), or None. Cheap: used by ``poll``."""
    if 0 < settings.max_faces < MIN_FACES or settings.max_faces > MAX_FACES:
        return f"Target faces must be 0 (the backend's default) or {MIN_FACES:,}..{MAX_FACES:,}"
    if settings.source == "GREASE_PENCIL":
        if not is_grease_pencil(settings.gp_object):
            return "Select a Grease Pencil object (or press 'New sketch' and draw)"
        if settings.projection == "CAMERA" and context.scene.camera is None:
            return "The scene has no active camera for the camera projection"
    elif settings.source == "IMAGE":
        if not settings.image_path:
            return "Pick a sketch image file"
    elif settings.source == "MASK":
        if settings.mask_image is None:
            return "Pick a mask image"
    return None


def build_request(context, settings: GenerateSettings, *, seed: int | None = None, name: str | None = None,
                  mask_ids: np.ndarray | None = None, tag: dict | None = None) -> JobRequest:
    """Panel settings -> one job request (the input is captured now, on the main thread).

    Raises:
        InputError: nothing to send; the message says what to do.
    """
    seed = settings.seed if seed is None else int(seed)
    if mask_ids is not None:
        data = encode_png(mask_ids.astype(np.uint8))
        job_input = {"kind": "mask_png", "data": base64.b64encode(data).decode("ascii")}
        sha = hashlib.sha256(data).hexdigest()
        name = name or "mask"
    elif settings.source == "GREASE_PENCIL":
        obj = settings.gp_object
        if not is_grease_pencil(obj):
            raise InputError("select a Grease Pencil object (or press 'New sketch' and draw)")
        try:
            doc = capture(obj, context.scene, settings.projection)
        except ValueError as e:
            raise InputError(str(e)) from None
        job_input = {"kind": "strokes", "data": doc}
        sha = stroke_hash(doc)
        name = name or f"{obj.name} head"
    elif settings.source == "IMAGE":
        if not settings.image_path:
            raise InputError("pick a sketch image file")
        data = image_file_png_bytes(settings.image_path)
        job_input = {"kind": "sketch_png", "data": base64.b64encode(data).decode("ascii")}
        sha = hashlib.sha256(data).hexdigest()
        name = name or Path(bpy.path.abspath(settings.image_path)).stem
    elif settings.source == "MASK":
        if settings.mask_image is None:
            raise InputError("pick a mask image")
        return build_request(context, settings, seed=seed, name=name or settings.mask_image.name,
                             mask_ids=mask_ids_from_image(settings.mask_image, settings.subject), tag=tag)
    else:
        raise InputError(f"unknown input source {settings.source!r}")
    job_input["name"] = name
    problem = input_problem(context, settings)
    if problem and "Target faces" in problem:
        raise InputError(problem)
    options = {"seed": seed, "resolution": int(settings.resolution), "views": int(settings.views),
               "formats": list(settings.formats), "no_frame": bool(settings.no_frame)}
    if settings.symmetric:
        options["symmetric"] = True
    if settings.subject != "human":  # human requests stay as they were
        options["subject"] = settings.subject
    if settings.colors:
        options["colors"] = dict(settings.colors)
    if settings.max_faces:
        options["max_faces"] = int(settings.max_faces)
    tag = dict(tag or {})
    if settings.quad_remesh:
        tag["quad_remesh"] = int(settings.max_faces) or True
    if settings.texture_size:
        tag["texture"] = int(settings.texture_size)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out_dir = job_root(context) / f"{_safe_name(name)}_seed{seed}_{stamp}"
    return JobRequest(job_input=job_input, options=options, out_dir=str(out_dir), name=name,
                      sketch_sha256=sha, tag=tag)


def variation_requests(context, settings: GenerateSettings, count: int) -> list[JobRequest]:
    """``count`` requests with seeds ``seed .. seed + count - 1``, placed side by side along +X."""
    base = build_request(context, settings)
    out = []
    for i in range(count):
        seed = settings.seed + i
        req = JobRequest(job_input=base.job_input, options={**base.options, "seed": seed},
                         out_dir=base.out_dir.replace(f"_seed{settings.seed}_", f"_seed{seed}_"),
                         name=f"{base.name} seed {seed}", sketch_sha256=base.sketch_sha256,
                         tag={**base.tag, "offset": (i * VARIATION_SPACING_M, 0.0, 0.0)})
        out.append(req)
    return out


def push_undo(message: str) -> None:
    """One undo step with ``message`` (also initialises undo in background mode)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


def update_device_status(context, health: dict | None) -> None:
    """Copy the backend's device report into the panel's status."""
    status = getattr(context.window_manager, "s3d_status", None)
    if not health or status is None:  # add-on not registered (batch with the bpy module)
        return
    status.device = str(health.get("device", ""))
    status.device_reason = str(health.get("device_reason", ""))


def import_warnings(objs) -> list[str]:
    """The backend's warnings about the imported heads' masks (``s3d_warnings``), each once, prefixed
    with the head's name when several heads were imported."""
    out: list[str] = []
    for o in objs:
        for msg in str(o.get("s3d_warnings", "") or "").splitlines():
            line = f"{o.name}: {msg}" if len(objs) > 1 else msg
            if msg and line not in out:
                out.append(line)
    return out


def import_results(context, results: list[JobResult], replace_object=None) -> list:
    """Import finished jobs (main thread) and push one undo step. Returns the objects.

    The backend's mask warnings go to the panel (``s3d_status.last_warning``).
    """
    objs = []
    for res in results:
        offset = tuple(res.request.tag.get("offset", (0.0, 0.0, 0.0)))
        obj = import_job_folder(context, res.request.out_dir, res.request.name,
                                sketch_sha256=res.request.sketch_sha256, offset=offset,
                                replace_object=replace_object)
        quad = res.request.tag.get("quad_remesh")
        if quad:
            target = quad if not isinstance(quad, bool) else max(1000, len(obj.data.polygons) // 2)
            try:
                quad_remesh(context, obj, int(target))
            except QuadRemeshError as e:  # the head stays, in triangles; the panel says why
                obj["s3d_warnings"] = "\n".join(x for x in (str(obj.get("s3d_warnings", "")), str(e)) if x)
        if res.request.tag.get("texture"):
            try:
                bake_texture(context, obj, int(res.request.tag["texture"]), folder=res.request.out_dir)
            except TextureBakeError as e:  # the head keeps its vertex colours
                obj["s3d_warnings"] = "\n".join(x for x in (str(obj.get("s3d_warnings", "")), str(e)) if x)
        objs.append(obj)
    if objs:
        # the scene's objects, not the view layer's bases: the PLY importer's temporary object was removed
        # and the view layer resyncs its bases lazily, so iterating them could reach a freed one
        for o in context.scene.objects:
            try:
                o.select_set(False)
            except RuntimeError:  # an object of the scene that is not in this view layer
                pass
        for o in objs:
            o.select_set(True)
        context.view_layer.objects.active = objs[-1]
        push_undo("S3D: import head")
    status = getattr(context.window_manager, "s3d_status", None)
    if status is not None:
        status.last_warning = "\n".join(import_warnings(objs))
    prune_jobs(context)
    return objs


def prune_jobs(context) -> list:
    """Keep the add-on's job folder to the newest N job folders (preference "Job folders kept"), never
    removing the folder of a head still in the file. Does nothing when the add-on is not registered
    (the batch script writes into its own output folder). Returns the removed folders."""
    prefs = get_preferences(context)
    if prefs is None:
        return []
    in_use = {str(o.get("s3d_job_folder", "")) for o in bpy.data.objects if o.get("s3d_job_folder")}
    return prune_job_folders(job_root(context), int(prefs.keep_job_folders), in_use)


def run_sync(context, requests: list[JobRequest], replace_object=None, on_progress=None) -> list:
    """Run the jobs on this thread, then import them all. Nothing is imported when one fails.

    Raises:
        BackendError, JobCancelled: from :func:`~.transport.job_runner.run_job` (the scene is unchanged).
    """
    cfg = backend_config(context)
    results = []
    for i, req in enumerate(requests):
        cb = (lambda stage, frac, i=i: on_progress(i, stage, frac)) if on_progress else None
        results.append(run_job(cfg, req, on_progress=cb))
        update_device_status(context, backend_for(cfg).health)
    if bpy.app.background:
        push_undo("S3D: before import")  # background mode starts with undo off: record the state to return to
    return import_results(context, results, replace_object)


class _Job:
    """What the running asynchronous Generate needs besides its task: the heads finished so far and
    where to put them."""

    results: list[JobResult] = []
    replace_object_name: str | None = None
    filepath: str = ""
    config = None


def _status():
    return bpy.context.window_manager.s3d_status


def _update_device(status) -> None:
    if _Job.config is not None:
        health = backend_for(_Job.config).health
        if health:
            status.device = str(health.get("device", ""))
            status.device_reason = str(health.get("device_reason", ""))


def _on_job_event(ev) -> None:
    """Main thread: show a job event in the panel; collect finished heads."""
    status = _status()
    if isinstance(ev, Progress):
        status.stage, status.progress = ev.message, ev.fraction
    elif isinstance(ev, PartResult):
        _Job.results.append(ev.result)
    _update_device(status)


def _on_job_end(ev: Finished | Failed | Cancelled) -> None:
    """Main thread, once the task has ended: say why it stopped, import the heads that finished."""
    status = _status()
    if isinstance(ev, Failed):
        status.last_error = ev.message
    elif isinstance(ev, Cancelled):
        status.last_error = "Cancelled"
    _update_device(status)
    results, _Job.results = _Job.results, []
    same_file = bpy.data.filepath == _Job.filepath  # another file opened meanwhile: import, never replace
    replace = bpy.data.objects.get(_Job.replace_object_name) if _Job.replace_object_name and same_file else None
    status.running = False
    status.progress = 1.0 if results else 0.0
    if results:
        try:
            wm = bpy.context.window_manager
            window = wm.windows[0] if len(wm.windows) else None
            with bpy.context.temp_override(window=window):
                import_results(bpy.context, results, replace)
            status.stage = "Done"
        except Exception as e:  # shown in the panel
            status.last_error = f"Import failed: {e}"


#: The asynchronous Generate: at most one task, followed by a timer every 0.1 s.
JOBS = TaskSlot("s3d-job", _on_job_event, _on_job_end, interval_s=0.1)


def is_running() -> bool:
    """True while an asynchronous job runs."""
    return JOBS.busy()


def start_async(context, requests: list[JobRequest], replace_object=None) -> None:
    """Start the jobs in a background task and a main-thread timer that imports the results."""
    if is_running():
        raise InputError("a job is already running; cancel it first")
    cfg = backend_config(context)
    status = context.window_manager.s3d_status
    status.running, status.progress, status.stage, status.last_error = True, 0.0, "Starting the backend", ""
    status.last_warning = ""
    _Job.results = []
    _Job.replace_object_name = replace_object.name if replace_object is not None else None
    _Job.filepath = bpy.data.filepath
    _Job.config = cfg
    JOBS.start(jobs_work(cfg, requests))  # the timer is persistent: it survives File > Open


def cancel_async() -> None:
    """Ask the running job to stop."""
    JOBS.cancel()


def stop_async() -> None:
    """Cancel the job and forget the timer (add-on disabled)."""
    JOBS.stop()


__all__ = ["BackendError", "GenerateSettings", "InputError", "build_request", "run_sync", "start_async"]
