"""Add-on preferences: where the backend's Python is, time-outs, the remote-backend opt-in.

``bl_idname`` is the add-on's package name (the package above this ``ui`` subpackage), which is
``bl_ext.<repo>.s3d_sketch_to_head`` for an installed extension and the folder name for an add-on enabled
from a folder.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import bpy

from ..transport.backend_env import env_python
from ..transport.backend_process import BackendConfig, find_backend_root

ADDON_PACKAGE = __package__.rpartition(".")[0]  # "<add-on>.ui" -> "<add-on>"


def default_env_dir() -> Path:
    """Where 'Create backend environment' puts the venv: the extension's user folder, else next to the add-on."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="backend-env", create=False))
    except (ValueError, AttributeError, RuntimeError):  # not an extension (enabled from a folder)
        return Path(bpy.utils.user_resource("DATAFILES", path="s3d_sketch_to_head")) / "backend-env"


def auto_backend_python() -> str:
    """A usable backend Python when the preference is empty: the created env, else a checkout's .venv."""
    candidates = [env_python(default_env_dir())]
    root = find_backend_root()
    if root is not None:
        candidates.append(env_python(Path(root) / ".venv"))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return ""


class S3DPreferences(bpy.types.AddonPreferences):
    """The add-on's preferences: which backend to run (its Python, or a remote URL) and how to set it up."""

    bl_idname = ADDON_PACKAGE

    backend_python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH", default="",
        description="Python executable of an environment with torch and the backend's requirements "
                    "(e.g. the repository's .venv/bin/python). Empty: the environment created by the button below")
    weights_dir: bpy.props.StringProperty(
        name="Weights folder", subtype="DIR_PATH", default="",
        description="Folder with <name>.safetensors and model cards. Empty: the weights bundled with the add-on")
    output_dir: bpy.props.StringProperty(
        name="Job folder", subtype="DIR_PATH", default="",
        description="Where job results are written. Empty: next to the saved .blend (s3d_jobs/), else the temp folder")
    keep_job_folders: bpy.props.IntProperty(
        name="Job folders kept", default=10, min=0, max=10000,
        description="After each import, only the newest job folders in the job folder are kept (about 2 MB each); "
                    "the folder of a head still in the file is never removed. 0 keeps them all")
    startup_timeout_s: bpy.props.FloatProperty(name="Start-up time-out (s)", default=180.0, min=5.0, max=3600.0)
    call_timeout_s: bpy.props.FloatProperty(name="Call time-out (s)", default=30.0, min=1.0, max=600.0)
    job_timeout_s: bpy.props.FloatProperty(name="Job time-out (s)", default=1800.0, min=10.0, max=86400.0)
    use_remote: bpy.props.BoolProperty(
        name="Use a remote backend", default=False,
        description="Explicit opt-in: send sketches to a backend already running at the URL below instead of starting one")
    remote_url: bpy.props.StringProperty(name="Remote URL", default="http://127.0.0.1:8765")
    remote_token: bpy.props.StringProperty(name="Remote token", subtype="PASSWORD", default="")

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        col.prop(self, "backend_python")
        resolved = resolve_backend_python(self)
        col.label(text=f"In use: {resolved or 'none found'}", icon="CHECKMARK" if resolved else "ERROR")
        status = context.window_manager.s3d_status
        box = layout.box()
        box.label(text="Backend environment (Python 3.11 venv + torch 2.13.0 + requirements; needs online access)")
        if status.env_running:
            box.progress(factor=status.env_progress, type="BAR", text=status.env_stage or "Working")
            box.label(text=status.env_line)
        else:
            box.operator("s3d.create_backend_env", icon="CONSOLE")
            if status.env_error:  # e.g. online access off, no Python 3.11: the whole sentence matters
                lines = textwrap.wrap(status.env_error.splitlines()[0], 90) or [""]
                for i, line in enumerate(lines[:6]):
                    box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")
        box.label(text=f"Location: {default_env_dir()}")
        col = layout.column()
        col.prop(self, "weights_dir")
        col.prop(self, "output_dir")
        col.prop(self, "keep_job_folders")
        row = col.row()
        row.prop(self, "startup_timeout_s")
        row.prop(self, "call_timeout_s")
        row.prop(self, "job_timeout_s")
        col.prop(self, "use_remote")
        sub = col.column()
        sub.enabled = self.use_remote
        sub.prop(self, "remote_url")
        sub.prop(self, "remote_token")


def get_preferences(context=None):
    """The add-on's preferences, or None when it is not registered (batch with the bpy module)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def resolve_backend_python(prefs) -> str:
    """The preference when set, else :func:`auto_backend_python`; ``$S3D_BACKEND_PYTHON`` wins over both."""
    env = os.environ.get("S3D_BACKEND_PYTHON", "")
    if env:
        return env
    if prefs is not None and prefs.backend_python:
        return bpy.path.abspath(prefs.backend_python)
    return auto_backend_python()


def backend_python_problem(prefs) -> str | None:
    """Why no backend can be started with these preferences (a sentence), or None when it can."""
    if prefs is not None and prefs.use_remote:
        return None
    python = resolve_backend_python(prefs)
    if not python:
        return "No backend environment yet: create one (downloads torch), or set 'Backend Python' in the add-on preferences"
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"'Backend Python' {python} does not exist or is not executable: fix it in the add-on preferences, or create an environment"
    return None


def backend_config(context=None) -> BackendConfig:
    """The :class:`BackendConfig` from the preferences (defaults when the add-on is not registered)."""
    prefs = get_preferences(context)
    cfg = BackendConfig(backend_python=resolve_backend_python(prefs))
    if os.environ.get("S3D_WEIGHTS_DIR"):
        cfg.weights_dir = os.environ["S3D_WEIGHTS_DIR"]
    if prefs is not None:
        if prefs.weights_dir:
            cfg.weights_dir = bpy.path.abspath(prefs.weights_dir)
        cfg.startup_timeout_s = prefs.startup_timeout_s
        cfg.call_timeout_s = prefs.call_timeout_s
        cfg.job_timeout_s = prefs.job_timeout_s
        if prefs.use_remote:
            cfg.remote_url, cfg.remote_token = prefs.remote_url, prefs.remote_token
    return cfg


def job_root(context=None) -> Path:
    """Folder for job results (see the ``output_dir`` preference)."""
    prefs = get_preferences(context)
    if prefs is not None and prefs.output_dir:
        return Path(bpy.path.abspath(prefs.output_dir))
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//s3d_jobs"))
    import tempfile

    return Path(tempfile.gettempdir()) / "s3d_jobs"


def register() -> None:
    bpy.utils.register_class(S3DPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(S3DPreferences)
