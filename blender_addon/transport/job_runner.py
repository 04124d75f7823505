"""Running backend jobs: :func:`run_job` on the calling thread, and :func:`jobs_work`, the work of a
``tasks.BackgroundTask`` that runs several jobs one after the other.

Blender data is touched only on the main thread (docs/design.md section 6): the task's worker thread
talks HTTP and writes files and reports with typed events (``tasks``); the add-on follows the task
from a ``bpy.app.timers`` function on the main thread. Timers do not run in background mode, so
``blender -b``, the batch entry point and the tests call :func:`run_job` directly.
Standard library only (no bpy).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..tasks import BackgroundTask, PartResult, Progress, TaskCancelled
from .backend_process import BackendConfig, backend_for
from .http_client import BackendError

TERMINAL_STATES = ("done", "failed", "cancelled")


@dataclass
class JobRequest:
    """One job to run.

    Attributes:
        job_input: ``{"kind": "sketch_png"|"strokes"|"mask_png", "data": ..., "name": ...}`` (contract 5).
        options: ``{"seed", "resolution", "views", "formats", "no_frame"}``.
        out_dir: folder that receives the job's files (created).
        name: name for the Blender object.
        sketch_sha256: hash of the input as sent, stored on the object.
        tag: free data the caller gets back with the result (e.g. the variation index).
    """

    job_input: dict
    options: dict
    out_dir: str
    name: str
    sketch_sha256: str = ""
    tag: dict = field(default_factory=dict)


@dataclass
class JobResult:
    """A finished job: its folder with the downloaded files and the backend's final status object."""

    request: JobRequest
    job_id: str
    status: dict
    files: list[str]

    @property
    def result(self) -> dict:
        """``result.json`` as sent in the status (or read from the folder)."""
        res = self.status.get("result")
        if isinstance(res, dict):
            return res
        path = Path(self.request.out_dir) / "result.json"
        return json.loads(path.read_text()) if path.is_file() else {}


class JobCancelled(TaskCancelled):
    """The user cancelled the job (a ``tasks.TaskCancelled``, so a task that raises it ends
    ``tasks.Cancelled``)."""


def _safe_relative(rel: str) -> str:
    """Refuse absolute paths and ``..`` in file names sent by the backend."""
    parts = Path(rel).parts
    if not rel or Path(rel).is_absolute() or ".." in parts:
        raise BackendError("backend_bad_reply", f"the backend listed an unsafe file name {rel!r}")
    return rel


def run_job(config: BackendConfig, request: JobRequest, *, cancel_event: threading.Event | None = None,
            on_progress: Callable[[str, float], None] | None = None, poll_interval_s: float = 0.2) -> JobResult:
    """Submit a job, wait for it, download its files into ``request.out_dir``.

    Args:
        config: how to reach or start the backend (started on demand, restarted after a crash).
        request: the job.
        cancel_event: set it to cancel; the backend job is cancelled and :class:`JobCancelled` raised.
        on_progress: called with (stage name, progress 0..1) whenever the status changes.
        poll_interval_s: pause between status calls.

    Returns:
        :class:`JobResult`.

    Raises:
        BackendError: the backend could not be started or reached, refused the job, the job failed
            (its error code and message), or it did not finish within ``config.job_timeout_s``.
        JobCancelled: ``cancel_event`` was set.
    """
    backend = backend_for(config)
    client = backend.client()
    job_id = client.submit(request.job_input, request.options)
    deadline = time.monotonic() + config.job_timeout_s
    last = None
    while True:
        if cancel_event is not None and cancel_event.is_set():
            try:
                client.cancel(job_id)
            except BackendError:
                pass
            raise JobCancelled(f"job {job_id} cancelled")
        try:
            status = client.status(job_id)
        except BackendError as e:
            if e.code in ("backend_unreachable",) and not backend.is_running():
                raise BackendError("backend_crashed", "the backend process stopped while generating "
                                   f"(job {job_id}). Its last output:\n{backend.log_tail()}") from None
            raise
        state = status.get("state")
        progress = (str(status.get("stage") or state), float(status.get("progress") or 0.0))
        if on_progress is not None and progress != last:
            on_progress(*progress)
            last = progress
        if state in TERMINAL_STATES:
            break
        if time.monotonic() > deadline:
            try:
                client.cancel(job_id)
            except BackendError:
                pass
            raise BackendError("job_timeout", f"the job did not finish within {config.job_timeout_s:.0f} s; "
                               "try a lower quality (grid resolution) or check the device in use")
        time.sleep(poll_interval_s)
    if state == "cancelled":
        raise JobCancelled(f"job {job_id} was cancelled")
    if state == "failed":
        err = status.get("error") or {}
        raise BackendError(str(err.get("code") or "job_failed"), str(err.get("message") or "the job failed without a message"))
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [_safe_relative(str(f)) for f in status.get("files") or []]
    # download everything into a staging folder first: a failure midway leaves no partial result behind
    staging = Path(tempfile.mkdtemp(prefix=".s3d-download-", dir=out))
    try:
        for rel in files:
            data = client.file(job_id, rel, timeout_s=max(config.call_timeout_s, 60.0))
            staged = staging / rel
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(data)
        for rel in files:
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if isinstance(status.get("result"), dict) and "result.json" not in files:
        (out / "result.json").write_text(json.dumps(status["result"], indent=2))
    return JobResult(request=request, job_id=job_id, status=status, files=files)


def jobs_work(config: BackendConfig, requests: list[JobRequest]):
    """The work of a ``tasks.BackgroundTask`` that runs ``requests`` one after the other.

    Events: ``tasks.Progress`` (``stage``: the backend's stage name; ``fraction``: over all the
    jobs; ``message``: the stage in words, with "(i/n)" when there are several jobs) and a
    ``tasks.PartResult`` (``index``, :class:`JobResult`) per finished job. Returns the list of
    results; the first failure ends the task (the results before it were already sent), a cancel
    cancels the backend job and ends it ``tasks.Cancelled``.
    """
    requests = list(requests)
    n = max(1, len(requests))

    def work(task: BackgroundTask) -> list[JobResult]:
        results = []
        for i, req in enumerate(requests):
            if task.cancelled():
                raise JobCancelled(f"cancelled before job {i + 1} of {n}")

            def on_progress(stage: str, frac: float, i: int = i) -> None:
                words = stage_label(stage) + (f" ({i + 1}/{n})" if n > 1 else "")
                task.emit(Progress(stage, (i + frac) / n, words))

            res = run_job(config, req, cancel_event=task.cancel_event, on_progress=on_progress)
            task.emit(PartResult(i, res))
            results.append(res)
        return results

    return work


#: What the panel shows for the backend's stage names (backend/pipeline.py STAGES, the server's states).
STAGE_LABELS = {
    "queued": "Waiting for the backend", "starting": "Starting the job", "load_models": "Loading the networks",
    "intake": "Reading the drawing", "sketch_to_mask": "Finding the face parts", "planes": "Shaping the head",
    "density_grid": "Building the surface", "mesh": "Making the mesh", "vertex_colors": "Painting the colours",
    "texture": "Baking the texture", "export": "Writing the files", "downloading": "Fetching the result",
    "done": "Done", "cancelling": "Cancelling", "cancelled": "Cancelled", "failed": "Failed",
    "interrupted": "Interrupted",
}


def stage_label(stage: str) -> str:
    """A stage name (``density_grid``) as the panel shows it ("Building the surface"); unknown names are
    shown with spaces and a capital."""
    stage = str(stage or "")
    return STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize())
