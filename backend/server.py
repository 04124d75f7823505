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

One module per part: this one starts and stops the server (``serve``: start-up checks, token file,
clean exit); backend/server_http.py routes HTTP requests; backend/server_jobs.py is the job table and
its worker; backend/server_uploads.py validates job bodies and decodes uploads under the limits;
backend/server_records.py holds a job's record and the job index on disk; backend/server_api.py the
API's constants and coded error. The names other code imports from here are re-exported below.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from backend.errors import CodedError
from backend.pipeline import PipelineError
from backend.server_api import (API_VERSION, INPUT_KINDS, LOOPBACK_HOSTS, MAX_BODY_BYTES, REQUEST_TIMEOUT_S,
                                ApiError)
from backend.server_http import MAX_CONNECTIONS, _CappedServer, _Handler, make_server
from backend.server_jobs import DEFAULT_MAX_QUEUE, MAX_FINISHED_JOBS, JobServer
from backend.server_records import INDEX_NAME, Job, is_job_id
from backend.server_uploads import MAX_DECODES_IN_FLIGHT

#: Re-exported for the code and tests that import them from here (their homes: see the module doc).
__all__ = ["API_VERSION", "DEFAULT_MAX_QUEUE", "INDEX_NAME", "INPUT_KINDS", "LOOPBACK_HOSTS", "MAX_BODY_BYTES",
           "MAX_CONNECTIONS", "MAX_DECODES_IN_FLIGHT", "MAX_FINISHED_JOBS", "REQUEST_TIMEOUT_S", "ApiError", "Job",
           "JobServer", "StartupError", "_CappedServer", "_Handler", "is_job_id", "make_server", "serve",
           "write_token_file"]


class StartupError(CodedError, RuntimeError):
    """``s3d serve`` cannot start: ``jobs_dir_not_writable``, ``port_in_use``, ``bind_failed``,
    ``token_file_not_writable``, ``host_not_loopback``; one sentence that says what to do."""


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
    import signal

    if host not in LOOPBACK_HOSTS and not allow_remote:
        raise StartupError("host_not_loopback", f"host {host!r} is not loopback; serving to other machines is an "
                           "explicit opt-in (--allow-remote), and the token then travels unencrypted")
    jobs, jobs_is_temp = _usable_jobs_dir(jobs_dir)
    app = httpd = tf = None
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # SIGTERM while starting: leave through the clean-up below
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        token = secrets.token_urlsafe(32)
        app = _job_server(weights_dir, device, token, jobs, max_queue)
        httpd = _bind(app, host, port, quiet, allow_remote)
        tf = _token_file(token, token_file)
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
        _stop(app, httpd, tf, token_file is None, jobs if jobs_is_temp else None)
    return 0


def _job_server(weights_dir: str | Path | None, device: str, token: str, jobs: Path, max_queue: int) -> JobServer:
    """Load the models (a failure is reported by ``/v1/health``, not raised) and make the job table."""
    from backend.pipeline import load_models
    from backend.weights import list_weights, resolve_weights_dir

    wdir = resolve_weights_dir(weights_dir)
    models, load_error = None, None
    try:
        models = load_models(wdir, device, need_sketch=False)
    except PipelineError as e:
        load_error = {"code": e.code, "message": str(e)}
        print(f"s3d serve: models not loaded [{e.code}]: {e}", file=sys.stderr, flush=True)
    weights_status = {n: {"sha256": w["sha256"], "ok": w["ok"], **({"error": w["error"]} if w["error"] else {})}
                      for n, w in list_weights(wdir).items()}
    return JobServer(models, token, jobs, max_queue, load_error, weights_status)


def _bind(app: JobServer, host: str, port: int, quiet: bool, allow_remote: bool):
    """:func:`make_server`, its ``OSError`` as a coded :class:`StartupError`."""
    try:
        return make_server(app, host, port, quiet, allow_any_host=allow_remote)
    except OSError as e:
        import errno

        if e.errno == errno.EADDRINUSE:
            raise StartupError("port_in_use", f"port {port} on {host} is already in use; choose another "
                               "--port or 0 for a free one") from None
        raise StartupError("bind_failed", f"cannot listen on {host}:{port} ({e.strerror or e})") from None


def _token_file(token: str, token_file: str | Path | None) -> Path:
    """:func:`write_token_file`, its ``OSError`` as a coded :class:`StartupError`."""
    try:
        return write_token_file(token, token_file)
    except OSError as e:
        raise StartupError("token_file_not_writable", f"cannot write the token file {token_file} "
                           f"({e.strerror or e}); give --token-file a path you can write to") from None


def _stop(app: JobServer | None, httpd, tf: Path | None, own_token_dir: bool, temp_jobs: Path | None) -> None:
    """The clean exit: stop the worker and the socket, remove the token file (and the private folder
    made for it) and a temporary jobs folder."""
    import shutil

    if app is not None:
        app.shutdown()
    if httpd is not None:
        httpd.server_close()
    if app is not None:
        app.worker.join(timeout=5)
    if tf is not None:
        tf.unlink(missing_ok=True)
        if own_token_dir:  # the private folder write_token_file made for it
            shutil.rmtree(tf.parent, ignore_errors=True)
    if temp_jobs is not None:
        shutil.rmtree(temp_jobs, ignore_errors=True)


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
