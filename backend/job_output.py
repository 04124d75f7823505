"""Atomic job output folders: one job's files appear in their destination whole, or not at all.

Used by :func:`backend.pipeline.generate` (and so by ``s3d generate``, ``s3d batch`` and the job server):

* the destination is reserved for the job's life by an exclusive ``fcntl.flock`` on a sibling lock file
  ``.<name>.s3d-lock``; a second job for the same destination is refused at once with
  ``output_busy`` (never mixed with the first);
* the job writes into a private temporary folder ``.<name>.s3d-tmp-<random>`` beside the destination
  (same file system, so the final move is a rename);
* :meth:`JobOutput.commit` moves the folder into place: one ``rename`` when the destination does not
  exist or is empty; otherwise the previous job's outputs (the files its ``result.json`` lists) are
  removed, ``result.json`` first, and the new entries renamed in, ``result.json`` last, so a folder with
  a ``result.json`` always holds one job's complete set; other files of the user's are kept;
* a job that fails (or is refused) removes its temporary folder and any parent folders it created, so it
  leaves nothing behind; temporary folders left by a killed process are removed by the next job for the
  same destination (:func:`remove_stale_temps`).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from pathlib import Path

from backend.errors import CodedError

LOCK_SUFFIX = ".s3d-lock"
TEMP_MARK = ".s3d-tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputError(CodedError, RuntimeError):
    """The output folder cannot be reserved or written: ``output_busy``, ``output_not_writable``,
    ``disk_full`` or ``output_write_failed``."""


def output_error(where: Path, e: OSError) -> OutputError:
    """Translate an ``OSError`` met while writing under ``where`` into a coded :class:`OutputError`."""
    if TEMP_MARK in where.name:  # name the destination, not the job's temporary folder
        where = where.parent / where.name[1:where.name.index(TEMP_MARK)]
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError("disk_full", f"the disk holding {where} is full ({e.strerror}); free some space "
                           "or choose another output folder; no partial files were left")
    return OutputError("output_write_failed", f"writing the results into {where} failed ({e.strerror or e}); "
                       "no partial files were left")


def _not_writable(dest: Path, e: OSError) -> OutputError:
    return OutputError("output_not_writable", f"cannot write to the output folder {dest} "
                       f"({e.strerror or e}); choose a folder you can write to")


def remove_stale_temps(folder: Path, name: str | None = None) -> list[str]:
    """Remove temporary job folders (``.<name>.s3d-tmp-*``) under ``folder`` whose lock is not held (and,
    for all names, lock files that nobody holds).

    Args:
        folder: the parent folder; name: only the temps of this destination name (default: all).

    Returns:
        The names removed. Temps of a destination whose lock another live job holds are kept.
    """
    removed: list[str] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        if name is None and p.name.startswith(".") and p.name.endswith(LOCK_SUFFIX) and p.is_file():
            try:  # a lock file left by a killed process: nobody holds it, so locking it removes it
                with _Lock(Path(folder) / p.name[1:-len(LOCK_SUFFIX)]):
                    pass
            except (OutputError, OSError):
                pass
            continue
        if not (p.name.startswith(".") and TEMP_MARK in p.name and p.is_dir()):
            continue
        owner = p.name[1:p.name.index(TEMP_MARK)]
        if name is not None and owner != name:
            continue
        if name is None:  # only when nobody holds that destination now
            try:
                with _Lock(Path(folder) / owner):
                    shutil.rmtree(p, ignore_errors=True)
            except OutputError:
                continue
        else:
            shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


class _Lock:
    """An exclusive, non-blocking ``flock`` on ``.<name>.s3d-lock`` beside ``dest``; the file is removed on
    release. Raises :class:`OutputError` ``output_busy`` when another job holds it."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.path = dest.parent / f".{dest.name}{LOCK_SUFFIX}"
        self.fd: int | None = None

    def __enter__(self) -> "_Lock":
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError("output_busy", f"another job is writing into {self.dest}; wait for it to "
                                  "finish or choose another output folder") from None
            try:  # the holder before us may have unlinked the file we opened: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)
        raise OutputError("output_busy", f"the lock of {self.dest} keeps changing; another job is using it")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still locked, so no waiter locks a file that is going away
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


class JobOutput:
    """Reserve ``dest`` for one job and give it a private temporary folder; a context manager.

    ``with JobOutput(dest) as out:`` write under ``out.tmp``, then call ``out.commit()``. Leaving the block
    without a commit (an exception) removes the temporary folder and any parent folders created for it.

    Raises (on entry):
        OutputError: ``output_busy`` (another live job holds ``dest``), ``output_not_writable`` (the
            folder or its parent cannot be created or written, or ``dest`` is a file).
    """

    def __init__(self, dest: str | os.PathLike):
        self.dest = Path(os.path.abspath(dest))
        self.tmp: Path | None = None
        self.committed = False
        self._created: list[Path] = []
        self._lock: _Lock | None = None

    def __enter__(self) -> "JobOutput":
        dest = self.dest
        try:
            missing = [p for p in [dest.parent, *dest.parent.parents] if not p.exists()]
            for p in reversed(missing):
                p.mkdir()
                self._created.append(p)
            if dest.exists() and not dest.is_dir():
                raise OSError(errno.ENOTDIR, "Not a directory", str(dest))
            self._lock = _Lock(dest).__enter__()
        except OutputError:
            self._cleanup()
            raise
        except OSError as e:
            self._cleanup()
            raise _not_writable(dest, e) from None
        try:
            remove_stale_temps(dest.parent, dest.name)  # left by a killed job; we hold the lock
            tmp = dest.parent / f".{dest.name}{TEMP_MARK}{secrets.token_hex(6)}"
            tmp.mkdir(mode=0o777 & ~_UMASK)
            self.tmp = tmp
        except OSError as e:
            self._cleanup()
            raise _not_writable(dest, e) from None
        return self

    def commit(self) -> Path:
        """Move the finished temporary folder into ``dest`` (see the module docstring); return ``dest``.

        Raises:
            OutputError: ``disk_full`` / ``output_write_failed`` (the temporary folder is then removed on exit).
        """
        assert self.tmp is not None and not self.committed
        dest, tmp = self.dest, self.tmp
        try:
            try:
                os.rename(tmp, dest)  # dest missing or an empty folder: one atomic step
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                self._merge_into(dest, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as e:
            raise output_error(dest, e) from None
        self.committed = True
        self.tmp = None
        return dest

    @staticmethod
    def _merge_into(dest: Path, tmp: Path) -> None:
        """Replace the previous job's outputs in a non-empty ``dest`` by ``tmp``'s entries (lock held)."""
        old = dest / "result.json"
        stale: list[str] = []
        if old.is_file():
            try:
                stale = [f for f in json.loads(old.read_text()).get("files", []) if isinstance(f, str)]
            except (OSError, ValueError, AttributeError):
                stale = []
            old.unlink()  # first: from here on the folder does not claim to hold a complete set
        for rel in stale:
            p = (dest / rel)
            if p.resolve().parent.is_relative_to(dest.resolve()) and p.is_file():
                p.unlink()
        for sub in {Path(r).parts[0] for r in stale if len(Path(r).parts) > 1}:
            try:
                (dest / sub).rmdir()
            except OSError:
                pass
        new = sorted(tmp.rglob("*"), key=lambda p: (p.name == "result.json", len(p.parts)))
        for p in new:
            target = dest / p.relative_to(tmp)
            if p.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(p, target)

    def _cleanup(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
        for p in reversed(self._created):  # deepest last created first
            try:
                p.rmdir()
            except OSError:
                break
        self._created = []

    def __exit__(self, *exc) -> None:
        if self.committed:
            self._created = []  # they now hold the result
        self._cleanup()


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename (never half-written)."""
    from backend.weights import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")
