"""Running backend jobs: a synchronous path and a worker thread that reports through a queue.

Blender data is touched only on the main thread (docs/design.md section 6): the worker thread
talks HTTP and writes files, then puts events on a :class:`queue.Queue`; the add-on drains that queue
from a ``bpy.app.timers`` function on the main thread. Timers do not run in background mode, so
``blender -b``, the batch entry point and the tests call :func:`run_job` directly.
Standard library only (no bpy).
"""
from __future__ import annotations

import json
import os
import shutil
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


class JobCancelled(Exception):
    """The user cancelled the job."""


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


class JobThread(threading.Thread):
    """Runs several :class:`JobRequest` one after the other in a worker thread.

    Events on :attr:`events` (a :class:`queue.Queue`), each a tuple:
    ``("progress", index, stage, fraction)``, ``("done", index, JobResult)``,
    ``("error", index, BackendError | Exception)``, ``("cancelled", index)``, and finally ``("finished",)``.
    The main thread drains them with :meth:`drain` from a timer.
    """

    def __init__(self, config: BackendConfig, requests: list[JobRequest]):
        super().__init__(name="s3d-job", daemon=True)
        self.config = config
        self.requests = list(requests)
        self.events: queue.Queue = queue.Queue()
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop (asynchronous; a ``cancelled`` event follows)."""
        self.cancel_event.set()

    def run(self) -> None:
        try:
            for i, req in enumerate(self.requests):
                if self.cancel_event.is_set():
                    self.events.put(("cancelled", i))
                    break
                try:
                    res = run_job(self.config, req, cancel_event=self.cancel_event,
                                  on_progress=lambda stage, frac, i=i: self.events.put(("progress", i, stage, frac)))
                except JobCancelled:
                    self.events.put(("cancelled", i))
                    break
                except Exception as e:  # reported to the user on the main thread
                    self.events.put(("error", i, e))
                    break
                self.events.put(("done", i, res))
        finally:
            self.events.put(("finished",))

    def drain(self) -> list[tuple]:
        """All events queued so far (non-blocking)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out


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
