"""Live preview: the decisions behind the draft head that follows a drawing (standard library and numpy, no bpy).

While the artist draws, the add-on (blender_addon/scene/live_preview_blender.py, the thin Blender glue) asks
:class:`LivePreview` what to do, a few times a second:

* :meth:`LivePreview.observe` gets the drawing's current key (a hash of its strokes and the options
  that shape the head). A new key restarts the debounce clock, and a draft job started for an older
  key is stale: it is cancelled at once (the job runner cancels the backend job through
  ``POST /v1/jobs/<id>/cancel``) and its result, should it still arrive, is never applied.
* :meth:`LivePreview.tick` starts one draft job once the drawing has been still for ``debounce_s``
  (0.4 s) and no other draft job runs; when the draft job of the current key finishes, it returns its
  result to apply (one preview object, its mesh swapped in place, by the glue).

At most one draft job runs at a time, so a fast artist never queues a pile of jobs: a new stroke cancels
the running draft, and the next starts 0.4 s after the last stroke. The draft job is the normal job
with :data:`DRAFT_OPTIONS` (a coarse grid, few and small colour views): about 1.1 s of one CPU core's
time (``s3d bench --draft``; half of it is the sketch network, which no job option makes cheaper).

The glue's job handles are ``tasks.BackgroundTask`` objects (a worker thread with a cancel event; they
have ``done``, ``cancel`` and ``result``). Also here: :func:`read_mesh_ply`, which reads the backend's
``mesh.ply`` into arrays, so that the preview's mesh can be built with Blender's mesh API without the PLY
import operator (which changes the selection and the active object, and so would disturb the drawing in
progress).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

#: Seconds the drawing must stay unchanged before a draft job starts (a new stroke restarts the wait).
DEBOUNCE_S = 0.4
#: Options of a draft job (merged over the panel's options): grid 64^3, 4 colour views (the backend's
#: minimum) rendered at 48 px, 32 px preview renders. Measured by ``s3d bench --draft`` (same options).
DRAFT_OPTIONS = {"resolution": 64, "views": 4, "color_resolution": 48, "view_resolution": 32, "draft": True}


class JobHandle(Protocol):
    """What :class:`LivePreview` needs of a running draft job."""

    def done(self) -> bool:
        """True once the job has finished (result, error or cancelled)."""

    def cancel(self) -> None:
        """Ask the job to stop; its result will not be used."""

    def result(self) -> Any:
        """The finished job's result; raises the job's error."""


@dataclass
class Draft:
    """One draft job: the drawing key it was started for, its handle and when it started."""

    key: str
    handle: Any
    started_at: float


@dataclass
class Update:
    """A finished draft of the current drawing, to apply: its key, the job's result and the latency
    (seconds from the drawing's last change to now)."""

    key: str
    result: Any
    latency_s: float


@dataclass
class LivePreview:
    """Debounce clock and draft-job bookkeeping of the live preview (no Blender, no threads of its own).

    Args:
        start: ``start(key) -> JobHandle``: start a draft job for the drawing whose key is ``key``.
        clock: seconds, monotonic (``time.monotonic``; tests pass a fake clock).
        debounce_s: how long the drawing must stay unchanged before a draft job starts.

    Attributes:
        counts: ``started``, ``cancelled`` (stale jobs cancelled), ``discarded`` (results of stale jobs
            dropped), ``applied``, ``failed``.
        last_error: the message of the last failed draft ("" after a success).
        last_latency_s: seconds from the drawing's last change to the last applied draft.
    """

    start: Callable[[str], Any]
    clock: Callable[[], float] = time.monotonic
    debounce_s: float = DEBOUNCE_S
    latest_key: str | None = None
    changed_at: float = 0.0
    applied_key: str | None = None
    failed_key: str | None = None
    running: Draft | None = None
    stale: list = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"started": 0, "cancelled": 0, "discarded": 0, "applied": 0,
                                                  "failed": 0})
    last_error: str = ""
    last_latency_s: float | None = None

    def observe(self, key: str | None) -> bool:
        """Record the drawing as it is now (``None``: nothing to send). Returns True when it changed.

        A change restarts the debounce clock and cancels a running draft of an older drawing.
        """
        if key == self.latest_key:
            return False
        self.latest_key, self.changed_at = key, self.clock()
        if self.running is not None and self.running.key != key:
            self._drop_running()
        return True

    def _drop_running(self) -> None:
        self.running.handle.cancel()
        self.stale.append(self.running)
        self.running = None
        self.counts["cancelled"] += 1

    def waiting_s(self) -> float:
        """Seconds left before a draft of the current drawing may start (0 when it may start now)."""
        return max(0.0, self.debounce_s - (self.clock() - self.changed_at))

    def needs_draft(self) -> bool:
        """True when the current drawing has no preview yet and no draft job for it runs."""
        k = self.latest_key
        return k is not None and k != self.applied_key and k != self.failed_key and self.running is None

    def tick(self, can_start: bool = True) -> Update | None:
        """Advance: reap stale jobs, collect a finished draft, start the next one when due.

        Args:
            can_start: False while something else has the backend (the final Generate job): no draft starts.

        Returns:
            An :class:`Update` when the draft of the current drawing has just finished; else None.
        """
        for d in [d for d in self.stale if d.handle.done()]:
            self.stale.remove(d)
            self.counts["discarded"] += 1
        update = None
        if self.running is not None and self.running.handle.done():
            d, self.running = self.running, None
            try:
                result = d.handle.result()
            except Exception as e:  # the job failed: say so, do not retry the same drawing
                self.failed_key, self.last_error = d.key, str(e) or type(e).__name__
                self.counts["failed"] += 1
            else:
                self.applied_key, self.last_error = d.key, ""
                self.counts["applied"] += 1
                update = Update(d.key, result, self.clock() - self.changed_at)
                self.last_latency_s = update.latency_s
        if can_start and self.needs_draft() and self.waiting_s() <= 0.0:
            self.running = Draft(self.latest_key, self.start(self.latest_key), self.clock())
            self.counts["started"] += 1
        return update

    def stop(self) -> None:
        """Cancel every job (the toggle was switched off); forget the drawing."""
        if self.running is not None:
            self._drop_running()
        for d in self.stale:
            d.handle.cancel()
        self.latest_key = self.applied_key = self.failed_key = None

    def busy(self) -> bool:
        """True while a draft job (current or stale) has not finished."""
        return self.running is not None or bool(self.stale)


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "<i2", "int16": "<i2",
              "ushort": "<u2", "uint16": "<u2", "int": "<i4", "int32": "<i4", "uint": "<u4", "uint32": "<u4",
              "float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8"}


def read_mesh_ply(path: str | Path) -> dict[str, np.ndarray | None]:
    """Read a binary little-endian triangle PLY such as the backend's ``mesh.ply`` (docs/contracts.md section 6).

    Returns:
        ``{"vertices": (N, 3) float32, "faces": (F, 3) int32, "rgb": (N, 3) uint8 sRGB or None,
        "label": (N,) uint8 or None}``.

    Raises:
        ValueError: not a binary little-endian PLY with ``x y z`` vertices and triangle faces, or truncated.
    """
    data = Path(path).read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path} is not a PLY file")
    header = data[:end].decode("ascii", "replace").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY is read here")
    elements: list[list] = []  # [name, count, [(prop, dtype)], list_types or None]
    for line in header:
        parts = line.split()
        if parts[:1] == ["element"] and len(parts) == 3:
            elements.append([parts[1], int(parts[2]), [], None])
        elif parts[:2] == ["property", "list"] and elements and len(parts) == 5:
            elements[-1][3] = (_PLY_TYPES[parts[2]], _PLY_TYPES[parts[3]])
        elif parts[:1] == ["property"] and elements and len(parts) == 3:
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    offset, out = end + len(b"end_header\n"), {}
    for name, count, props, list_types in elements:
        if list_types is None:
            dt = np.dtype(props)
        else:  # triangles only: a count of 3 then three indices per face
            dt = np.dtype([("n", list_types[0]), ("i", list_types[1], (3,))])
        if offset + count * dt.itemsize > len(data):
            raise ValueError(f"{path}: the file is truncated")
        out[name] = np.frombuffer(data, dtype=dt, count=count, offset=offset)
        offset += count * dt.itemsize
    v, f = out.get("vertex"), out.get("face")
    if v is None or f is None or not {"x", "y", "z"} <= set(v.dtype.names or ()):
        raise ValueError(f"{path}: no x y z vertices or no faces")
    if "n" not in (f.dtype.names or ()) or len(f) and not (f["n"] == 3).all():
        raise ValueError(f"{path}: only triangle faces are read here")
    names = set(v.dtype.names)
    rgb = np.stack([v["red"], v["green"], v["blue"]], 1).astype(np.uint8) if {"red", "green", "blue"} <= names else None
    return {"vertices": np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32),
            "faces": np.asarray(f["i"], np.int32).reshape(-1, 3),
            "rgb": rgb, "label": v["label"].astype(np.uint8) if "label" in names else None}
