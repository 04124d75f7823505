"""Versions of Python and the packages the project uses, read from installed metadata.

Nothing is imported, so a health check or ``s3d info`` never loads a heavy or crash-prone module (bpy
segfaulted a process at exit when imported only to read its version).
"""
from __future__ import annotations

import platform
from importlib import metadata

#: Distributions reported by ``s3d info`` and ``/v1/health`` (bpy and anny only where installed).
VERSION_PACKAGES = ("torch", "numpy", "scipy", "PyMCubes", "opencv-python-headless", "pillow", "trimesh",
                    "safetensors", "fast-simplification", "bpy", "anny", "s3d-blender")


def package_versions() -> dict[str, str | None]:
    """``{"python": "3.11.7", "<distribution>": "<version>" or None when absent}``."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
