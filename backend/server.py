"""The local job server behind the Blender add-on: ``s3d serve`` (docs/contracts.md section 5, API v1).

Design (docs/design.md section 6):

* stdlib ``http.server.ThreadingHTTPServer``; binds 127.0.0.1 by default (another host needs the
  explicit ``allow_remote`` opt-in); a per-launch random token (``secrets.token_urlsafe``) in a
  0600 token file is required on every route as ``Authorization: Bearer <token>``, compared with
  ``hmac.compare_digest``;
* one copy of the networks in memory; one worker thread runs jobs in the order they arrived; a
  bounded queue answers 429 ``queue_full`` when full; cancel works while queued and between stages
  while running; a failing job is recorded and the server keeps serving;
* request bodies are limited (413 ``body_too_large``); every error is
  ``{"error": {"code": "stable_snake_case", "message": "a human sentence"}}``.

Routes: ``GET /v1/health``, ``POST /v1/jobs``, ``GET /v1/jobs/<id>``, ``POST /v1/jobs/<id>/cancel``,
``GET /v1/jobs/<id>/files/<relative path>``.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import mimetypes
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from backend.errors import CodedError
from backend.job_output import remove_stale_temps, write_json_atomic
from backend.versions import package_versions

from backend.pipeline import (MESH_FORMATS, RESOLUTIONS, GenerateOptions, JobCancelled, ModelBundle,
                              PipelineError, generate)

API_VERSION = 1
#: Largest accepted request body (a 4096^2 PNG sketch in base64 fits comfortably).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Jobs waiting (not counting the running one) before POST /v1/jobs answers 429.
DEFAULT_MAX_QUEUE = 8
#: Seconds a connection may sit idle while a request or its body is read (slow or stalled clients).
REQUEST_TIMEOUT_S = 30.0
#: Finished jobs kept (status and files); older ones are forgotten and their folders deleted.
MAX_FINISHED_JOBS = 100
INPUT_KINDS = ("sketch_png", "strokes", "mask_png")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Uploads decoded at once by request threads (each up to backend.input_limits.MAX_DECODE_PIXELS, about
#: 0.8 GB at the cap); the worker decodes one more. Bounds the memory that image decoding can take.
MAX_DECODES_IN_FLIGHT = 1
#: Open connections served at once; more are answered 503 ``too_many_connections`` and closed.
MAX_CONNECTIONS = 64
#: The job index in the jobs folder (written atomically; reloaded on start).
INDEX_NAME = "jobs.json"
_JOB_ID_CHARS = set("0123456789abcdef")


class StartupError(CodedError, RuntimeError):
    """``s3d serve`` cannot start: ``jobs_dir_not_writable``, ``port_in_use``, ``bind_failed``,
    ``token_file_not_writable``, ``host_not_loopback``; one sentence that says what to do."""


class ApiError(Exception):
    """An HTTP error with a stable code: rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Job:
    """One job's state (guarded by :attr:`JobServer.lock`)."""

    job_id: str
    source: Any
    options: GenerateOptions
    out_dir: Path
    name: str
    state: str = "queued"
    stage: str = "queued"
    progress: float = 0.0
    error: dict | None = None
    files: list[str] = field(default_factory=list)
    result: dict | None = None
    created: float = field(default_factory=time.time)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def record(self) -> dict[str, Any]:
        """What the job index keeps of this job (its result is re-read from ``result.json``)."""
        return {"job_id": self.job_id, "state": self.state, "stage": self.stage, "error": self.error,
                "files": list(self.files), "name": self.name, "created": self.created}

    def status(self) -> dict[str, Any]:
        """The status object of docs/contracts.md section 5."""
        return {"job_id": self.job_id, "state": self.state, "stage": self.stage, "progress": round(self.progress, 4),
                "error": self.error, "files": list(self.files), "result": self.result}


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
        self.token = token.encode("utf-8")
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.load_error = load_error
        self.weights_status = weights_status or {}
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.queue: queue.Queue[str] = queue.Queue(maxsize=max_queue)
        self.stopping = threading.Event()
        self.decodes = threading.BoundedSemaphore(MAX_DECODES_IN_FLIGHT)
        self._index_lock = threading.Lock()
        self._index_seq = self._index_written = 0
        self.recovered = self._recover()
        self.worker = threading.Thread(target=self._work, name="s3d-job-worker", daemon=True)
        self.worker.start()

    # --- persistence
    def _recover(self) -> dict[str, int]:
        """Reload the job index of an earlier server on this jobs folder: finished jobs answer again,
        jobs that were queued or running are marked failed (``interrupted``), and half-written folders
        (temporary folders, job folders without a finished record) are removed. Returns counts."""
        import shutil

        counts = {"reloaded": 0, "interrupted": 0, "removed": len(remove_stale_temps(self.jobs_dir))}
        try:
            index = json.loads((self.jobs_dir / INDEX_NAME).read_text())
            records = index.get("jobs", []) if isinstance(index, dict) else []
        except (OSError, ValueError):
            records = []
        for rec in records:
            if not isinstance(rec, dict) or not _is_job_id(rec.get("job_id")):
                continue
            job = Job(rec["job_id"], None, GenerateOptions(), self.jobs_dir / rec["job_id"], str(rec.get("name", "")),
                      created=float(rec.get("created") or 0.0))
            state = rec.get("state")
            if state == "done" and (job.out_dir / "result.json").is_file():
                try:
                    job.result = json.loads((job.out_dir / "result.json").read_text())
                except (OSError, ValueError):
                    state = "lost"
            if state == "done" and job.result is not None:
                job.state, job.stage, job.progress = "done", "done", 1.0
                job.files = list(job.result.get("files", []))
                counts["reloaded"] += 1
            elif state in ("failed", "cancelled"):
                job.state, job.stage, job.error = state, rec.get("stage") or state, rec.get("error")
                counts["reloaded"] += 1
            else:
                job.state, job.stage = "failed", "interrupted"
                job.error = {"code": "interrupted", "message": f"the server stopped while this job was {state} "
                             "(a crash or a restart); its files were removed; submit it again"}
                counts["interrupted"] += 1
            self.jobs[job.job_id] = job
        for d in self.jobs_dir.iterdir():  # job folders that hold no finished job
            if d.is_dir() and _is_job_id(d.name) and (d.name not in self.jobs or self.jobs[d.name].state != "done"):
                shutil.rmtree(d, ignore_errors=True)
                counts["removed"] += 1
        self._save_index()
        return counts

    def _save_index(self) -> None:
        """Write the job index atomically (a snapshot taken under the lock; an older snapshot never
        overwrites a newer one)."""
        with self.lock:
            self._index_seq += 1
            seq = self._index_seq
            snapshot = {"api": API_VERSION, "jobs": [j.record() for j in self.jobs.values()]}
        with self._index_lock:
            if seq < self._index_written:
                return
            try:
                write_json_atomic(self.jobs_dir / INDEX_NAME, snapshot)
                self._index_written = seq
            except OSError as e:  # the jobs still run; only a restart would lose their records
                print(f"s3d serve: cannot write the job index ({e})", file=sys.stderr, flush=True)

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
        """Validate a POST /v1/jobs body and queue the job.

        Raises:
            ApiError: 400 ``bad_request`` / ``bad_input`` / ``bad_option`` / intake codes, 503 weights codes,
                429 ``queue_full``.
        """
        from backend.input_limits import load_mask_checked, load_sketch_checked
        from backend.sketch.intake import IntakeError

        if self.models is None:
            err = self.load_error or {"code": "weights_missing", "message": "the networks are not loaded"}
            raise ApiError(503, err["code"], err["message"])
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            raise ApiError(400, "bad_request", "the body must be {\"input\": {\"kind\", \"data\"}, \"options\": {...}}")
        inp = body["input"]
        kind = inp.get("kind")
        if kind not in INPUT_KINDS:
            raise ApiError(400, "bad_input", f"input.kind must be one of {list(INPUT_KINDS)}, not {kind!r}")
        extra = set(body) - {"input", "options"}
        if extra:
            raise ApiError(400, "bad_request", f"unknown top-level keys {sorted(extra)}")
        if not isinstance(body.get("options", {}), (dict, type(None))):
            raise ApiError(400, "bad_option", "options must be a JSON object such as {\"seed\": 0}")
        opts = dict(body.get("options") or {})
        if "from_mask" in opts:
            raise ApiError(400, "bad_option", "set input.kind to 'mask_png' instead of options.from_mask")
        opts["from_mask"] = kind == "mask_png"
        try:
            options = GenerateOptions.from_dict(opts)
        except PipelineError as e:
            raise ApiError(400, e.code, str(e)) from None
        except TypeError as e:
            raise ApiError(400, "bad_option", f"options are invalid: {e}") from None
        data = inp.get("data")
        if kind == "strokes":
            if not isinstance(data, dict):
                raise ApiError(400, "bad_input", "input.data must be a stroke JSON object for kind 'strokes'")
            source = data
        else:
            if not isinstance(data, str):
                raise ApiError(400, "bad_input", f"input.data must be a base64 string for kind '{kind}'")
            try:
                source = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "bad_input", "input.data is not valid base64") from None
        if kind != "mask_png" and self.models.sketch2mask is None:
            err = self.models.sketch2mask_error or {"code": "weights_missing", "message": "no sketch network"}
            raise ApiError(503, err["code"], err["message"])
        if not self.decodes.acquire(timeout=REQUEST_TIMEOUT_S):
            raise ApiError(503, "busy_decoding", f"{MAX_DECODES_IN_FLIGHT} uploads are being decoded; retry in a "
                           "few seconds")
        try:  # early check under the decode limits, so a broken upload fails now and not in the queue
            load_mask_checked(source) if kind == "mask_png" else load_sketch_checked(source)
        except IntakeError as e:
            raise ApiError(400, e.code, str(e)) from None
        finally:
            self.decodes.release()
        name = inp.get("name") if isinstance(inp.get("name"), str) and inp.get("name") else kind
        job_id = uuid.uuid4().hex[:16]
        job = Job(job_id, source, options, self.jobs_dir / job_id, name[:200])
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
        import shutil

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

            def progress(stage: str, fraction: float, job: Job = job) -> None:
                with self.lock:
                    job.stage, job.progress = stage, float(fraction)

            try:
                result = generate(job.source, job.out_dir, job.options, models=self.models, progress=progress,
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


def _is_job_id(name: Any) -> bool:
    """True for the server's own job folder names (16 lower-case hex digits)."""
    return isinstance(name, str) and len(name) == 16 and set(name) <= _JOB_ID_CHARS


class _Handler(BaseHTTPRequestHandler):
    server_version = "S3D/1"
    app: JobServer  # set on the class made by make_server
    quiet = True
    allow_any_host = False
    #: socket time-out for reading a request (StreamRequestHandler applies it to the connection)
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.quiet:
            sys.stderr.write("s3d serve: " + format % args + "\n")

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (malformed request line, unknown method, huge headers) as JSON too."""
        stable = {400: "bad_request", 408: "request_timeout", 414: "uri_too_long", 431: "headers_too_large",
                  501: "method_not_allowed", 505: "http_version_not_supported"}
        status = 405 if code == 501 else code
        body = json.dumps({"error": {"code": stable.get(code, f"http_{code}"),
                                     "message": message or self.responses.get(code, ("error",))[0]}}).encode("utf-8")
        try:
            self.send_response(status, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and status >= 200 and status not in (204, 304):
                self.wfile.write(body)
        except OSError:  # the client is gone
            pass
        self.close_connection = True

    def _send_error(self, e: ApiError) -> None:
        self._send_json(e.status, {"error": {"code": e.code, "message": e.message}})

    def _read_json(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "length_required", "send the body with a Content-Length header")
        try:
            n = int(length)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if n > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"the body is {n} bytes; the limit is {MAX_BODY_BYTES}")
        if n < 0:
            raise ApiError(400, "bad_request", "Content-Length is negative")
        try:
            raw = self.rfile.read(n) if n > 0 else b""
        except TimeoutError:
            self.close_connection = True
            raise ApiError(408, "request_timeout", f"the body did not arrive within {self.timeout:.0f} s") from None
        if len(raw) < n:
            self.close_connection = True
            raise ApiError(400, "body_incomplete", f"the body ended after {len(raw)} of {n} bytes")
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {type(e).__name__}: {e}"[:500]) from None

    def _host_allowed(self) -> bool:
        """The ``Host`` header must name the address the server is bound to (a DNS-rebinding guard: a web
        page that resolves its own name to 127.0.0.1 sends its own name). Any host with ``allow_remote``."""
        host = self.headers.get("Host")
        if host is None:
            return False
        if self.allow_any_host:
            return True
        bound, port = self.server.server_address[:2]
        names = {bound, "localhost", "127.0.0.1", "[::1]"} if bound in LOOPBACK_HOSTS else {bound}
        names |= {f"[{bound}]"} if ":" in bound else set()
        return host.strip().lower() in {f"{n}:{port}" for n in names}

    def _route(self, method: str) -> None:
        try:
            if not self._host_allowed():
                self.close_connection = True
                raise ApiError(421, "host_not_allowed", "the Host header must be the address the server is bound to "
                               f"({self.server.server_address[0]}:{self.server.server_address[1]})")
            if not self.app.authorized(self.headers.get("Authorization")):
                raise ApiError(401, "unauthorized", "missing or wrong token: send 'Authorization: Bearer <token>' "
                               "with the token from the server's token file")
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.split("/") if p]
            if len(parts) < 2 or parts[0] != "v1":
                raise ApiError(404, "not_found", f"no route {path}; the API lives under /v1")
            if parts[1] == "health" and len(parts) == 2:
                self._only(method, "GET")
                return self._send_json(200, self.app.health())
            if parts[1] == "jobs":
                if len(parts) == 2:
                    self._only(method, "POST")
                    job = self.app.create(self._read_json())
                    return self._send_json(202, {"job_id": job.job_id})
                job_id = parts[2]
                if len(parts) == 3:
                    self._only(method, "GET")
                    return self._send_json(200, self.app.status(job_id))
                if len(parts) == 4 and parts[3] == "cancel":
                    self._only(method, "POST")
                    if self.headers.get("Content-Length"):
                        self._read_json()
                    return self._send_json(200, self.app.cancel(job_id))
                if len(parts) >= 5 and parts[3] == "files":
                    self._only(method, "GET")
                    return self._send_file(self.app.file_path(job_id, "/".join(parts[4:])))
            raise ApiError(404, "not_found", f"no route {method} {path}")
        except ApiError as e:
            self._send_error(e)
        except Exception as e:  # never let a handler bug drop the connection without an answer
            traceback.print_exc(file=sys.stderr)
            self._send_error(ApiError(500, "internal_error", f"{type(e).__name__}: {e}"))

    def _only(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise ApiError(405, "method_not_allowed", f"use {allowed} on {urlsplit(self.path).path}")

    def _send_file(self, path: Path) -> None:
        data = path.read_bytes()
        ctype = {".ply": "application/octet-stream", ".glb": "model/gltf-binary", ".obj": "text/plain",
                 ".json": "application/json"}.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class _CappedServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with at most ``max_connections`` connections served at once; one more is
    answered 503 ``too_many_connections`` at once and closed (one thread per connection otherwise)."""

    daemon_threads = True
    max_connections = MAX_CONNECTIONS

    def server_bind(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().server_bind()

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            body = json.dumps({"error": {"code": "too_many_connections", "message": f"{self.max_connections} "
                                         "connections are open; close idle ones or retry"}}).encode()
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(app: JobServer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True,
                allow_any_host: bool = False) -> ThreadingHTTPServer:
    """A threading HTTP server bound to ``(host, port)`` (0 = a free port) serving ``app``, with at most
    ``MAX_CONNECTIONS`` connections at once and the ``Host`` header checked (``allow_any_host`` for
    ``--allow-remote``).

    Raises:
        OSError: the address cannot be bound (``serve`` turns it into a coded :class:`StartupError`).
    """
    handler = type("S3DHandler", (_Handler,), {"app": app, "quiet": quiet, "allow_any_host": allow_any_host})
    return _CappedServer((host, port), handler)


def write_token_file(token: str, path: str | Path | None = None) -> Path:
    """Write the token to ``path`` (default: a fresh private temp folder) with mode 0600, atomically."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="s3d-serve-")) / "token"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def _usable_jobs_dir(jobs_dir: str | Path | None) -> tuple[Path, bool]:
    """Create (or make) the jobs folder and check it can be written; return it and whether it is a fresh
    temporary folder that the server removes on exit.

    Raises:
        StartupError: ``jobs_dir_not_writable``.
    """
    if not jobs_dir:
        return Path(tempfile.mkdtemp(prefix="s3d-jobs-")), True
    path = Path(jobs_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".s3d-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StartupError("jobs_dir_not_writable", f"the jobs folder {path} cannot be created or written "
                           f"({e.strerror or e}); give --jobs-dir a folder you can write to") from None
    return path, False


def serve(host: str = "127.0.0.1", port: int = 0, token_file: str | Path | None = None,
          weights_dir: str | Path | None = None, device: str = "auto", jobs_dir: str | Path | None = None,
          max_queue: int = DEFAULT_MAX_QUEUE, allow_remote: bool = False, quiet: bool = True,
          exit_with_parent: bool = False) -> int:
    """Load the models once, bind, print ``S3D_READY {...}`` and serve until interrupted (Ctrl-C or
    SIGTERM); on that clean exit a temporary jobs folder and the token file are removed.

    Start-up checks run before the token file is written: the host, the jobs folder, the port. With
    ``exit_with_parent`` the server shuts down when the process that started it is gone (its parent pid
    changes), so a Blender that is killed hard does not leave an orphaned backend.

    Raises:
        StartupError: ``host_not_loopback`` (a non-loopback host without ``allow_remote``),
            ``jobs_dir_not_writable``, ``port_in_use`` / ``bind_failed``, ``token_file_not_writable``.
    """
    import shutil
    import signal

    from backend.pipeline import load_models
    from backend.weights import list_weights, resolve_weights_dir

    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise StartupError("host_not_loopback", f"host {host!r} is not loopback; serving to other machines is an "
                           "explicit opt-in (--allow-remote), and the token then travels unencrypted")
    jobs, jobs_is_temp = _usable_jobs_dir(jobs_dir)
    app = httpd = tf = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM while starting: leave through the clean-up below
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        wdir = resolve_weights_dir(weights_dir)
        models, load_error = None, None
        try:
            models = load_models(wdir, device, need_sketch=False)
        except PipelineError as e:
            load_error = {"code": e.code, "message": str(e)}
            print(f"s3d serve: models not loaded [{e.code}]: {e}", file=sys.stderr, flush=True)
        weights_status = {n: {"sha256": w["sha256"], "ok": w["ok"], **({"error": w["error"]} if w["error"] else {})}
                          for n, w in list_weights(wdir).items()}
        token = secrets.token_urlsafe(32)
        app = JobServer(models, token, jobs, max_queue, load_error, weights_status)
        try:
            httpd = make_server(app, host, port, quiet, allow_any_host=allow_remote)
        except OSError as e:
            import errno

            if e.errno == errno.EADDRINUSE:
                raise StartupError("port_in_use", f"port {port} on {host} is already in use; choose another "
                                   "--port or 0 for a free one") from None
            raise StartupError("bind_failed", f"cannot listen on {host}:{port} ({e.strerror or e})") from None
        try:
            tf = write_token_file(token, token_file)
        except OSError as e:
            raise StartupError("token_file_not_writable", f"cannot write the token file {token_file} "
                               f"({e.strerror or e}); give --token-file a path you can write to") from None
        bound_host, bound_port = httpd.server_address[:2]
        if app.recovered["reloaded"] or app.recovered["interrupted"] or app.recovered["removed"]:
            print(f"s3d serve: jobs folder {jobs}: {app.recovered}", file=sys.stderr, flush=True)
        if main_thread:  # SIGTERM from now on: the same clean exit as Ctrl-C
            signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
        print("S3D_READY " + json.dumps({"host": bound_host, "port": bound_port, "token_file": str(tf),
                                         "jobs_dir": str(jobs)}), flush=True)
        if exit_with_parent:
            _watch_parent(httpd)
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
    finally:
        if app is not None:
            app.shutdown()
        if httpd is not None:
            httpd.server_close()
        if app is not None:
            app.worker.join(timeout=5)
        if tf is not None:
            tf.unlink(missing_ok=True)
            if token_file is None:  # the private folder write_token_file made for it
                shutil.rmtree(tf.parent, ignore_errors=True)
        if jobs_is_temp:
            shutil.rmtree(jobs, ignore_errors=True)
    return 0


def _watch_parent(httpd, interval_s: float = 1.0) -> threading.Thread:
    """Shut ``httpd`` down once this process's parent has exited (the parent pid changes on reparenting)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        print("s3d serve: the parent process is gone; shutting down", file=sys.stderr, flush=True)
        httpd.shutdown()

    t = threading.Thread(target=watch, name="s3d-parent-watch", daemon=True)
    t.start()
    return t
