"""Keeping the add-on's job folder small: only the newest job folders stay (standard library only).

Each Generate writes ``<job folder>/<name>_seed<seed>_<YYYYmmdd-HHMMSS-ffffff>/`` (about 2 MB: mesh, masks,
previews). :func:`prune_job_folders` removes the oldest beyond a count, but never a folder that a head
in the open file still points to (its ``s3d_job_folder`` property) and never anything whose name does
not follow that pattern, so a user's own files in the same folder are safe.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

JOB_FOLDER_RE = re.compile(r".+_seed\d+_(\d{8}-\d{6}-\d{6})")


def job_folders(root: str | os.PathLike) -> list[Path]:
    """The add-on's job folders directly under ``root``, newest first (by the time stamp in the name)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = JOB_FOLDER_RE.fullmatch(p.name)
        if m and p.is_dir() and not p.is_symlink():
            found.append((m.group(1), p.name, p))
    return [p for _, _, p in sorted(found, reverse=True)]


def prune_job_folders(root: str | os.PathLike, keep: int, in_use: set[str] | None = None) -> list[Path]:
    """Delete the job folders under ``root`` beyond the ``keep`` newest, except those in ``in_use``.

    Args:
        root: the add-on's job folder. keep: how many of the newest to keep (0 or less: keep all).
        in_use: job folder paths that heads in the scene point to (compared after ``os.path.realpath``).

    Returns:
        the folders removed. A folder that cannot be removed (permissions, in use on Windows) is skipped.
    """
    if keep <= 0:
        return []
    used = {os.path.realpath(p) for p in (in_use or set()) if p}
    removed = []
    for folder in job_folders(root)[keep:]:
        if os.path.realpath(folder) in used:
            continue
        try:
            shutil.rmtree(folder)
        except OSError:
            continue
        removed.append(folder)
    return removed
