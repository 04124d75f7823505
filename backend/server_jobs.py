"""The job table behind the HTTP routes: jobs by id, the bounded queue, the one worker thread that runs
them, cancel, and the health / status / file answers (docs/design.md section 6; the server is split over
backend/server*.py, see server.py)."""
from __future__ import annotations

import hmac
import queue
import shutil
import sys
import threading
import traceback
import uuid
from pathlib import Path
from typing import Any

from backend.pipeline import MESH_FORMATS, RESOLUTIONS, JobCancelled, ModelBundle, PipelineError, generate
from backend.server_api import API_VERSION, INPUT_KINDS, MAX_BODY_BYTES, ApiError
from backend.server_records import Job, JobIndex, recover_jobs
from backend.server_uploads import MAX_DECODES_IN_FLIGHT, parse_job_request
from backend.versions import package_versions

#: Jobs waiting (not counting the running one) before POST /v1/jobs answers 429.
DEFAULT_MAX_QUEUE = 8
#: Finished jobs kept (status and files); older ones are forgotten and their folders deleted.
MAX_FINISHED_JOBS = 100


class JobServer:
    """Jobs, the worker thread and the shared models (the HTTP handler's application object).

    Args:
        models: the loaded :class:`ModelBundle`, or None when loading failed (then ``load_error`` says why
            and job creation answers 503 with that code).
        token: the per-launch secret; jobs_dir: where job outputs go (one folder per job).
    """

    def __init__(self, models: ModelBundle | None, token: str, jobs_dir: str | Path,
                 max_queue: int = DEFAULT_MAX_QUEUE, load_error: dict | None = None,
                 weights_status: dict | None = None):
        self.models = models
        #: The models cache by job subject: the human bundle loaded at start, others on their first job.
        self.models_by_subject: dict[str, ModelBundle] = {models.subject: models} if models is not None else {}
        self.token = token.encode("utf-8")
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.load_error = load_error
        self.weights_status = weights_status or {}
        self.lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue(maxsize=max_queue)
        self.stopping = threading.Event()
        self.decodes = threading.BoundedSemaphore(MAX_DECODES_IN_FLIGHT)
        self._index = JobIndex(self.jobs_dir)
        self.jobs, self.recovered = recover_jobs(self.jobs_dir)
        self._save_index()
        self.worker = threading.Thread(target=self._work, name="s3d-job-worker", daemon=True)
        self.worker.start()

    def _save_index(self) -> None:
        """Write the job index (backend/server_records.py)."""
        self._index.save(self.lock, self.jobs)

    # --- auth
    def authorized(self, header: str | None) -> bool:
        """Constant-time check of an ``Authorization: Bearer <token>`` header."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].strip().encode("utf-8"), self.token)

    # --- jobs
    def health(self) -> dict[str, Any]:
        """The ``GET /health`` body: status (``ok`` or ``degraded`` when no weights loaded), device, weights,
        versions and capabilities (docs/contracts.md)."""
        m = self.models
        return {"status": "ok" if m is not None else "degraded", "api": API_VERSION,
                "device": m.device if m else None, "device_reason": m.device_reason if m else None,
                "weights": self.weights_status, "load_error": self.load_error, "versions": package_versions(),
                "capabilities": {"input_kinds": list(INPUT_KINDS) if m is not None and m.sketch2mask is not None
                                 else (["mask_png"] if m is not None else []),
                                 "resolutions": list(RESOLUTIONS), "formats": list(MESH_FORMATS),
                                 "views": [4, 12], "max_body_bytes": MAX_BODY_BYTES,
                                 "max_queue": self.queue.maxsize},
                "queue": {"waiting": self.queue.qsize(), "jobs": len(self.jobs)}}

    def create(self, body: Any) -> Job:
        """Validate a POST /v1/jobs body (backend/server_uploads.py) and queue the job.

        Raises:
            ApiError: 400 ``bad_request`` / ``bad_input`` / ``bad_option`` / intake codes, 503 weights codes,
                429 ``queue_full``.
        """
        req = parse_job_request(body, self.models, self.load_error, self.decodes)
        job_id = uuid.uuid4().hex[:16]
        job = Job(job_id, req.source, req.options, self.jobs_dir / job_id, req.name)
        with self.lock:
            try:
                self.queue.put_nowait(job_id)
            except queue.Full:
                raise ApiError(429, "queue_full", f"{self.queue.maxsize} jobs are already waiting; retry when one "
                               "has finished") from None
            self.jobs[job_id] = job
            self._forget_old_jobs()
        self._save_index()
        return job

    def _forget_old_jobs(self) -> None:
        """Drop the oldest finished jobs beyond ``MAX_FINISHED_JOBS`` (caller holds the lock)."""
        finished = [j for j in self.jobs.values() if j.state in ("done", "failed", "cancelled")]
        for j in sorted(finished, key=lambda j: j.created)[:max(0, len(finished) - MAX_FINISHED_JOBS)]:
            del self.jobs[j.job_id]
            shutil.rmtree(j.out_dir, ignore_errors=True)

    def get(self, job_id: str) -> Job:
        """Raises ApiError 404 ``job_not_found``."""
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r} on this server (jobs live as long as the server)")
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a queued one at once, a running one at its next check (each stage, and during
        mesh extraction); returns its status.

        Raises:
            ApiError: 404 ``job_not_found``.
        """
        job = self.get(job_id)
        with self.lock:
            if job.state == "queued":
                job.state, job.stage = "cancelled", "cancelled"
                job.error = {"code": "cancelled", "message": "the job was cancelled before it started"}
            elif job.state == "running":
                job.cancel_event.set()
            status = job.status()
        self._save_index()
        return status

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status object (docs/contracts.md section 5).

        Raises:
            ApiError: 404 ``job_not_found``.
        """
        job = self.get(job_id)
        with self.lock:
            return job.status()

    def file_path(self, job_id: str, rel: str) -> Path:
        """Resolve a result file of a job, refusing paths that leave its folder.

        Raises:
            ApiError: 404 ``job_not_found`` / ``file_not_found``, 409 ``job_not_done``.
        """
        job = self.get(job_id)
        with self.lock:
            files = list(job.files)
            state = job.state
        if rel not in files:
            if state in ("queued", "running"):
                raise ApiError(409, "job_not_done", f"job {job_id} is {state}; its files appear when it is done")
            raise ApiError(404, "file_not_found", f"job {job_id} has no file {rel!r}; see 'files' in its status")
        path = (job.out_dir / rel).resolve()
        if job.out_dir.resolve() not in path.parents or not path.is_file():
            raise ApiError(404, "file_not_found", f"job {job_id} has no file {rel!r}")
        return path

    # --- worker
    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job_id = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            with self.lock:
                job = self.jobs.get(job_id)  # a job cancelled while queued may already be forgotten
                if job is None or job.state == "cancelled":
                    continue
                job.state, job.stage = "running", "starting"
            self._save_index()
            self._run(job)

    def _models_for(self, subject: str) -> ModelBundle:
        """The cached bundle of ``subject``, loaded from the start bundle's weights folder and device on the
        first job that asks (only the worker thread calls this).

        Raises:
            PipelineError: the subject's weights codes (``weights_missing`` for cat networks not yet trained).
        """
        if subject not in self.models_by_subject:
            from backend.pipeline import load_models

            self.models_by_subject[subject] = load_models(self.models.weights_dir, self.models.device,
                                                          need_sketch=False, subject=subject)
        return self.models_by_subject[subject]

    def _run(self, job: Job) -> None:
        """Run one job to its end state (done, cancelled or failed); a bug is recorded, never raised."""

        def progress(stage: str, fraction: float) -> None:
            with self.lock:
                job.stage, job.progress = stage, float(fraction)

        try:
            result = generate(job.source, job.out_dir, job.options, models=self._models_for(job.options.subject),
                              progress=progress,
                              cancel=job.cancel_event.is_set, input_name=job.name)
            with self.lock:
                job.state, job.stage, job.progress = "done", "done", 1.0
                job.files, job.result = list(result["files"]), result
        except JobCancelled as e:
            with self.lock:
                job.state, job.stage = "cancelled", "cancelled"
                job.error = {"code": e.code, "message": str(e)}
        except PipelineError as e:
            with self.lock:
                job.state = "failed"
                job.error = {"code": e.code, "message": str(e)}
        except Exception as e:  # a bug must not take the server down: record it and go on
            traceback.print_exc(file=sys.stderr)
            with self.lock:
                job.state = "failed"
                job.error = {"code": "internal_error", "message": f"{type(e).__name__}: {e}"}
        finally:
            job.source = None  # free the upload
            self._save_index()

    def shutdown(self) -> None:
        """Ask the worker to stop after the current job; the HTTP server is stopped by its owner."""
        self.stopping.set()
