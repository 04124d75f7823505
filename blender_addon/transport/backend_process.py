"""The backend's process lifecycle: start on demand, find port and token, health check, restart, stop.

The backend (``backend/``, torch) runs in its own Python environment as a separate process
(docs/design.md section 6): ``<backend_python> -m backend.cli serve --host 127.0.0.1 --port 0
--token-file <private tmp>/token`` with ``PYTHONPATH`` set to the folder holding ``backend/`` (the
bundled copy inside the installed extension, or the repository checkout). When it listens it prints
``S3D_READY {"host", "port", "token_file"}`` (docs/contracts.md section 5). Its stderr and the rest of
its stdout go to a log file whose last lines are quoted in error messages.

A remote backend is an explicit opt-in (``BackendConfig.remote_url`` + ``remote_token``); nothing is
started then. Standard library only; no Blender data is touched here, so the worker thread may call it.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .http_client import BackendClient, BackendError

READY_PREFIX = "S3D_READY "
ADDON_DIR = Path(__file__).resolve().parents[1]  # the add-on folder (this file is in its transport/)


def find_backend_root(addon_dir: str | os.PathLike = ADDON_DIR) -> Path | None:
    """The folder that holds ``backend/cli.py``: the bundled copy inside the extension, else the checkout."""
    addon_dir = Path(addon_dir)
    for root in (addon_dir, addon_dir.parent):
        if (root / "backend" / "cli.py").is_file():
            return root
    return None


@dataclass
class BackendConfig:
    """How to reach or start the backend.

    Attributes:
        backend_python: Python executable of the backend environment (torch installed).
        backend_root: folder holding ``backend/`` (put on PYTHONPATH); found automatically when None.
        weights_dir: passed as ``S3D_WEIGHTS_DIR`` when set (default: the backend's own ``weights/``).
        startup_timeout_s: longest wait for the ``S3D_READY`` line (importing torch takes seconds).
        call_timeout_s: time-out of every HTTP call.
        job_timeout_s: longest wait for one job, queue included.
        remote_url / remote_token: use an already running backend (explicit opt-in); nothing is started.
        extra_env: more environment variables for the backend process.
    """

    backend_python: str = ""
    backend_root: str | None = None
    weights_dir: str | None = None
    startup_timeout_s: float = 180.0
    call_timeout_s: float = 30.0
    job_timeout_s: float = 1800.0
    remote_url: str = ""
    remote_token: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    def key(self) -> tuple:
        """What identifies a backend: a change of any of these needs a new process (timeouts do not)."""
        return (self.backend_python, self.backend_root, self.weights_dir, self.remote_url,
                tuple(sorted(self.extra_env.items())))


class BackendProcess:
    """One backend process (or one remote backend), started lazily by :meth:`client`.

    Thread-safe: the worker thread and the main thread may both call :meth:`client` and :meth:`stop`.
    """

    def __init__(self, config: BackendConfig):
        self.config = config
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._client: BackendClient | None = None
        self._tmpdir: str | None = None
        self._reader: threading.Thread | None = None
        self._ready: dict | None = None
        self._ready_event = threading.Event()
        self._stop_requested = threading.Event()
        self.health: dict | None = None
        self.restarts = 0
        self.last_crash: str | None = None
        self.log_path: str | None = None

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """Process id of the started backend, or None when none was started (or it is remote)."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True when the started process is alive (or a remote backend is configured)."""
        if self.config.remote_url:
            return self._client is not None
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n_lines: int = 12) -> str:
        """The last lines of the backend's log (stderr and stdout), for error messages."""
        if not self.log_path or not os.path.isfile(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(self.log_path) - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n_lines:])

    # -- lifecycle --------------------------------------------------------------------------------------------
    def client(self) -> BackendClient:
        """A client of a healthy backend, starting or restarting the process when needed.

        Raises:
            BackendError: ``backend_python_missing`` (no usable Python configured), ``backend_source_missing``,
                ``backend_start_failed`` (exited during start-up; the message quotes its log),
                ``backend_start_timeout``, or any error of the health check.
        """
        with self._lock:
            self._stop_requested.clear()
            if self.config.remote_url:
                if self._client is None:
                    self._client = BackendClient(self.config.remote_url, self.config.remote_token, self.config.call_timeout_s)
                self.health = self._client.health()
                return self._client
            if self._proc is not None and self._proc.poll() is not None:
                rc = self._proc.returncode
                self.last_crash = f"the backend process stopped unexpectedly (exit code {rc}); restarting it"
                self.restarts += 1
                self._cleanup()
            if self._proc is None:
                self._start()
            assert self._client is not None
            return self._client

    def _start(self) -> None:
        cfg = self.config
        python = cfg.backend_python
        if not python or not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise BackendError("backend_python_missing",
                               f"no usable backend Python at {python!r}: set 'Backend Python' in the add-on "
                               "preferences to an environment with torch, or press 'Create backend environment'")
        root = Path(cfg.backend_root) if cfg.backend_root else find_backend_root()
        if root is None or not (root / "backend" / "cli.py").is_file():
            raise BackendError("backend_source_missing",
                               f"the backend source (backend/cli.py) was not found next to the add-on ({ADDON_DIR}); "
                               "reinstall the extension zip built by build_addon.py")
        self._tmpdir = tempfile.mkdtemp(prefix="s3d-backend-")
        os.chmod(self._tmpdir, 0o700)
        token_file = os.path.join(self._tmpdir, "token")
        self.log_path = os.path.join(self._tmpdir, "backend.log")
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the backend's venv must not inherit it
        env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        if cfg.weights_dir:
            env["S3D_WEIGHTS_DIR"] = str(cfg.weights_dir)
        env.update(cfg.extra_env)
        cmd = [python, "-m", "backend.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--token-file", token_file,
               "--exit-with-parent"]
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                          cwd=self._tmpdir, env=env, start_new_session=(os.name == "posix"))
        except OSError as e:
            log.close()
            self._cleanup()
            raise BackendError("backend_start_failed", f"cannot start the backend with {python}: {e}") from None
        log.close()
        self._ready, self._ready_event = None, threading.Event()
        self._reader = threading.Thread(target=self._read_stdout, args=(self._proc, self.log_path, self._ready_event),
                                        name="s3d-backend-stdout", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + cfg.startup_timeout_s
        while not self._ready_event.wait(0.05):
            if self._stop_requested.is_set():  # stop() from another thread while starting
                self._proc.kill()
                self._proc.wait()
                self._cleanup()
                raise BackendError("backend_stopped", "the backend was stopped while it was starting")
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                tail = self.log_tail()
                self._cleanup()
                raise BackendError("backend_start_failed",
                                   f"the backend exited during start-up (exit code {rc}). Its last output:\n{tail}")
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise BackendError("backend_start_timeout",
                                   f"the backend did not report ready within {cfg.startup_timeout_s:.0f} s. Its last output:\n{tail}")
        ready = self._ready or {}
        try:
            token = Path(ready.get("token_file") or token_file).read_text().strip()
        except OSError as e:
            self.stop()
            raise BackendError("backend_start_failed", f"cannot read the backend's token file: {e}") from None
        url = f"http://{ready.get('host', '127.0.0.1')}:{int(ready['port'])}"
        self._client = BackendClient(url, token, cfg.call_timeout_s)
        try:
            self.health = self._client.health()
        except BackendError:
            self.stop()
            raise

    def _read_stdout(self, proc: subprocess.Popen, log_path: str, ready_event: threading.Event) -> None:
        assert proc.stdout is not None
        with open(log_path, "ab") as log:
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                if not ready_event.is_set() and line.startswith(READY_PREFIX):
                    try:
                        self._ready = json.loads(line[len(READY_PREFIX):])
                        ready_event.set()
                        continue
                    except ValueError:
                        pass
                log.write(raw)
                log.flush()
        proc.stdout.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the process (terminate, then kill after ``timeout_s``) and delete its private folder.

        Does not wait for a start-up in progress on another thread: that one is interrupted.
        """
        self._stop_requested.set()
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout_s)
            self._cleanup()

    def _cleanup(self) -> None:
        self._proc = None
        self._client = None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        if self._tmpdir:
            # keep the log of a crashed process readable: copy it next to the temp folder's parent
            if self.log_path and os.path.isfile(self.log_path):
                keep = os.path.join(tempfile.gettempdir(), "s3d-backend-last.log")
                try:
                    shutil.copyfile(self.log_path, keep)
                    self.log_path = keep
                except OSError:
                    self.log_path = None
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


_PROCESSES: dict[tuple, BackendProcess] = {}
_REGISTRY_LOCK = threading.Lock()


def backend_for(config: BackendConfig) -> BackendProcess:
    """The shared :class:`BackendProcess` of this configuration (one process per configuration)."""
    with _REGISTRY_LOCK:
        proc = _PROCESSES.get(config.key())
        if proc is None:
            proc = _PROCESSES[config.key()] = BackendProcess(config)
        else:
            proc.config = config  # time-outs may have changed
        return proc


def running_backends() -> list[BackendProcess]:
    """Every backend this session has started (alive or not)."""
    with _REGISTRY_LOCK:
        return list(_PROCESSES.values())


def stop_all() -> None:
    """Stop every backend this Blender session started (add-on disabled, Blender quitting)."""
    with _REGISTRY_LOCK:
        procs = list(_PROCESSES.values())
        _PROCESSES.clear()
    for proc in procs:
        try:
            proc.stop()
        except Exception as e:  # never block quitting Blender
            print(f"S3D: could not stop a backend process: {e}", file=sys.stderr)


atexit.register(stop_all)
