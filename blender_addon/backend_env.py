"""Creating the backend's Python environment on first use (``python -m venv`` + pip), with progress.

Steps: ``<base python> -m venv <env>``; ``<env python> -m pip install --upgrade pip``;
``<env python> -m pip install torch==2.13.0`` (pinned first, so no dependency pulls another build);
``<env python> -m pip install <backend requirements>``. The requirements come from
``backend_requirements.txt`` (written into the extension zip by ``build_addon.py``) or, in a checkout,
from ``pyproject.toml``'s ``[project].dependencies``. Runs in a worker thread; the add-on shows the
progress and the latest pip line from a main-thread timer. Standard library only.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

TORCH_REQUIREMENT = "torch==2.13.0"


def env_python(env_dir: str | os.PathLike) -> Path:
    """Path of the Python executable inside a venv folder (POSIX ``bin/python``, Windows ``Scripts\\python.exe``)."""
    env_dir = Path(env_dir)
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def backend_requirements(backend_root: str | os.PathLike) -> list[str]:
    """The backend's pip requirements without torch (installed separately, pinned).

    Raises:
        FileNotFoundError: neither ``backend_requirements.txt`` nor ``pyproject.toml`` is in ``backend_root``.
    """
    root = Path(backend_root)
    txt = root / "backend_requirements.txt"
    if txt.is_file():
        reqs = [ln.strip() for ln in txt.read_text().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    elif (root / "pyproject.toml").is_file():
        import tomllib

        reqs = list(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"])
    else:
        raise FileNotFoundError(f"no backend_requirements.txt or pyproject.toml in {root}")
    return [r for r in reqs if not r.replace(" ", "").lower().startswith("torch")]


def base_python() -> str:
    """A Python 3.11 able to create venvs: Blender's own (``sys.executable`` in 4.x is its Python)."""
    exe = sys.executable
    if exe and os.path.basename(exe).lower().startswith("python"):
        return exe
    for name in ("python3.11", "python3"):
        found = shutil.which(name)
        if found:
            return found
    return exe


def setup_commands(env_dir: str | os.PathLike, backend_root: str | os.PathLike, python: str | None = None) -> list[tuple[str, list[str]]]:
    """The ``(label, argv)`` steps that create the backend environment in ``env_dir``."""
    py = str(env_python(env_dir))
    return [
        ("Creating the virtual environment", [python or base_python(), "-m", "venv", str(env_dir)]),
        ("Updating pip", [py, "-m", "pip", "install", "--upgrade", "pip"]),
        (f"Installing {TORCH_REQUIREMENT} (large download)", [py, "-m", "pip", "install", TORCH_REQUIREMENT]),
        ("Installing the backend's requirements", [py, "-m", "pip", "install", *backend_requirements(backend_root)]),
    ]


@dataclass
class SetupEvent:
    """Progress of the environment setup: ``kind`` is "progress", "line", "done" or "error"."""

    kind: str
    fraction: float = 0.0
    text: str = ""


class EnvSetupThread(threading.Thread):
    """Runs :func:`setup_commands` one after the other; events on :attr:`events` (:class:`SetupEvent`)."""

    def __init__(self, env_dir: str | os.PathLike, backend_root: str | os.PathLike, python: str | None = None):
        super().__init__(name="s3d-env-setup", daemon=True)
        self.env_dir = Path(env_dir)
        self.steps = setup_commands(env_dir, backend_root, python)
        self.events: queue.Queue = queue.Queue()
        self.cancel_event = threading.Event()
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        n = len(self.steps)
        try:
            for i, (label, argv) in enumerate(self.steps):
                if self.cancel_event.is_set():
                    self.events.put(SetupEvent("error", i / n, "cancelled"))
                    return
                self.events.put(SetupEvent("progress", i / n, label))
                env = dict(os.environ)
                env.pop("PYTHONHOME", None)
                env.pop("PYTHONPATH", None)
                self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.DEVNULL)
                tail: list[str] = []
                assert self.proc.stdout is not None
                for raw in iter(self.proc.stdout.readline, b""):
                    line = raw.decode("utf-8", "replace").rstrip()
                    if line:
                        tail = (tail + [line])[-10:]
                        self.events.put(SetupEvent("line", i / n, line[:200]))
                    if self.cancel_event.is_set():
                        self.proc.terminate()
                rc = self.proc.wait()
                if rc != 0:
                    msg = "\n".join(tail)
                    self.events.put(SetupEvent("error", i / n, f"'{label}' failed (exit code {rc}):\n{msg}"))
                    return
            self.events.put(SetupEvent("done", 1.0, str(env_python(self.env_dir))))
        except OSError as e:
            self.events.put(SetupEvent("error", 0.0, f"cannot run the setup: {e}"))

    def cancel(self) -> None:
        """Ask the setup to stop: the running step is terminated at its next output line, then an ``error`` event
        follows."""
        self.cancel_event.set()
