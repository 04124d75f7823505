"""Creating the backend's Python environment on first use (``python -m venv`` + pip), with progress.

Steps: ``<base python> -m venv <env>`` (a Python 3.11 found on this machine; Blender 5.1+ embeds 3.13,
so Blender's own Python serves only when it is 3.11) or, when there is none, ``uv venv --seed --python
3.11 <env>`` (uv fetches a managed 3.11); ``<env python> -m pip install --upgrade pip``;
``<env python> -m pip install torch==2.13.0`` (pinned first, so no dependency pulls another build);
``<env python> -m pip install <backend requirements>``. The requirements come from
``backend_requirements.txt`` (written into the extension zip by ``build_addon.py``) or, in a checkout,
from ``pyproject.toml``'s ``[project].dependencies``. :meth:`EnvSetup.run` is the work of a
``tasks.BackgroundTask``; the add-on shows its progress and the latest pip line from a main-thread timer.
Standard library only.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..tasks import BackgroundTask, OutputLine, Progress, TaskCancelled

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


BACKEND_PYTHON_VERSION = (3, 11)
#: what ``uv`` is asked for when no Python 3.11 is installed: the newest 3.11 release uv knows
UV_PYTHON_REQUEST = "3.11"


class NoBasePythonError(RuntimeError):
    """No Python 3.11 to build the backend environment from, and no ``uv`` to fetch one."""


def python_version(exe: str, timeout_s: float = 20.0) -> tuple[int, int] | None:
    """``(major, minor)`` of the Python executable ``exe``, or None when it does not run."""
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    try:
        out = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def python_candidates() -> list[str]:
    """Executables that may be a Python 3.11, best first: Blender's own (3.11 in Blender 4.2-5.0), then
    ``python3.11`` on PATH and in the usual install folders, then ``python3`` / ``python``."""
    out: list[str] = []
    exe = sys.executable
    if exe and os.path.basename(exe).lower().startswith("python"):
        out.append(exe)
    for name in ("python3.11", "python3", "python"):
        found = shutil.which(name)
        if found:
            out.append(found)
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA", "")
        out += [os.path.join(local, "Programs", "Python", "Python311", "python.exe"), r"C:\Python311\python.exe"]
    else:
        out += ["/usr/local/bin/python3.11", "/usr/bin/python3.11", "/opt/homebrew/bin/python3.11",
                "/Library/Frameworks/Python.framework/Versions/3.11/bin/python3.11"]
    seen, unique = set(), []
    for c in out:
        if c and c not in seen and os.path.isfile(c):
            seen.add(c)
            unique.append(c)
    return unique


def base_python(candidates: list[str] | None = None) -> str | None:
    """The first candidate that is a Python 3.11 (Blender 5.1+ embeds 3.13, which the backend's pinned
    torch and numpy wheels do not cover), or None."""
    for exe in python_candidates() if candidates is None else candidates:
        if python_version(exe) == BACKEND_PYTHON_VERSION:
            return exe
    return None


def find_uv() -> str | None:
    """``uv`` on PATH or in its default install folder (``~/.local/bin``, ``~/.cargo/bin``), or None."""
    found = shutil.which("uv")
    if found:
        return found
    name = "uv.exe" if os.name == "nt" else "uv"
    for folder in (Path.home() / ".local" / "bin", Path.home() / ".cargo" / "bin"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


NO_PYTHON_MESSAGE = (
    "The backend needs Python 3.11 and none was found (Blender's own Python is {blender}). "
    "Install Python 3.11 (python.org, or your package manager: python3.11), or install uv "
    "(https://docs.astral.sh/uv/), which fetches Python 3.11 by itself; then press the button again. "
    "Or set 'Backend Python' to an existing Python 3.11 environment with the backend's packages.")


def setup_commands(env_dir: str | os.PathLike, backend_root: str | os.PathLike, python: str | None = None,
                   uv: str | None = None) -> list[tuple[str, list[str]]]:
    """The ``(label, argv)`` steps that create the backend environment in ``env_dir``.

    The venv comes from ``python`` when given, else from :func:`base_python` (a Python 3.11 on this
    machine), else from ``uv`` (``uv venv --python 3.11 --seed``: uv downloads a managed Python 3.11
    when none is installed), found with :func:`find_uv` when ``uv`` is None.

    Raises:
        NoBasePythonError: no Python 3.11 and no uv; the message says what to install.
        FileNotFoundError: no requirements in ``backend_root`` (see :func:`backend_requirements`).
    """
    py = str(env_python(env_dir))
    reqs = backend_requirements(backend_root)
    base = python or base_python()
    if base is not None:
        create = ("Creating the virtual environment", [base, "-m", "venv", str(env_dir)])
    else:
        uv = uv or find_uv()
        if uv is None:
            raise NoBasePythonError(NO_PYTHON_MESSAGE.format(blender=".".join(map(str, sys.version_info[:2]))))
        create = (f"Creating the virtual environment (uv, Python {UV_PYTHON_REQUEST})",
                  [uv, "venv", "--seed", "--python", UV_PYTHON_REQUEST, str(env_dir)])
    return [
        create,
        ("Updating pip", [py, "-m", "pip", "install", "--upgrade", "pip"]),
        (f"Installing {TORCH_REQUIREMENT} (large download)", [py, "-m", "pip", "install", TORCH_REQUIREMENT]),
        ("Installing the backend's requirements", [py, "-m", "pip", "install", *reqs]),
    ]


def online_access_problem(app=None) -> str | None:
    """Why the environment set-up may not download now (Blender's "Allow Online Access" is off), or None.

    ``app`` is ``bpy.app`` (passed in so that this module stays importable without Blender); a Blender
    without ``online_access`` (before 4.2) counts as allowed.
    """
    if app is None or getattr(app, "online_access", True):
        return None
    msg = ("Online access is off: creating the backend environment downloads about 1-2 GB (torch and the "
           "backend's packages). Allow it in Edit > Preferences > System > Network > Allow Online Access, "
           "then press Create Backend Environment again")
    if getattr(app, "online_access_override", False):
        msg += " (it was turned off on the command line with --offline-mode: start Blender without it)"
    return msg


class EnvSetupError(RuntimeError):
    """A set-up step failed (its exit code and last output lines in the message) or could not run."""

    code = "env_setup_failed"


class EnvSetup:
    """The environment set-up: :func:`setup_commands` run one after the other by :meth:`run`.

    Raises :class:`NoBasePythonError` or FileNotFoundError (see :func:`setup_commands`) when made, so
    before any thread starts.
    """

    def __init__(self, env_dir: str | os.PathLike, backend_root: str | os.PathLike, python: str | None = None):
        self.env_dir = Path(env_dir)
        self.steps = setup_commands(env_dir, backend_root, python)
        self.proc: subprocess.Popen | None = None

    def run(self, task: BackgroundTask) -> str:
        """The task's work: a ``Progress`` event per step (``fraction`` = steps done / steps), an
        ``OutputLine`` per output line of the running step (200 characters at most). A cancel terminates
        the running step at its next output line. Returns the environment's Python executable.

        Raises:
            EnvSetupError: a step exited non-zero (its last 10 output lines in the message) or could not run.
            TaskCancelled: the task was cancelled.
        """
        n = len(self.steps)
        for i, (label, argv) in enumerate(self.steps):
            if task.cancelled():
                raise TaskCancelled("cancelled")
            task.emit(Progress(f"step{i + 1}", i / n, label))
            env = dict(os.environ)
            env.pop("PYTHONHOME", None)
            env.pop("PYTHONPATH", None)
            try:
                self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.DEVNULL)
            except OSError as e:
                raise EnvSetupError(f"cannot run the setup: {e}") from e
            tail: list[str] = []
            assert self.proc.stdout is not None
            for raw in iter(self.proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    tail = (tail + [line])[-10:]
                    task.emit(OutputLine(line[:200]))
                if task.cancelled():
                    self.proc.terminate()
            rc = self.proc.wait()
            if task.cancelled():
                raise TaskCancelled("cancelled")
            if rc != 0:
                msg = "\n".join(tail)
                raise EnvSetupError(f"'{label}' failed (exit code {rc}):\n{msg}")
        return str(env_python(self.env_dir))
