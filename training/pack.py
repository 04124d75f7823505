"""A sketch-only copy of SynHead folders in one ``.tar.gz`` (``s3d-data pack-sketches``), to move the sketch
network's training data to another machine (a GPU box that can receive tens of megabytes, not gigabytes).

A SynHead head is about 1.6 MB (mesh, 3D points, four rendered views); the sketch network reads three of its
files, about 30 kB: the sketch, its strokes (for stroke-level augmentation) and the 2D label map. The archive
holds one folder that is itself a SynHead folder (``manifest.json`` with the sample entries cut down to those
files), so ``s3d-train sketch2mask --data`` reads it as it is once unpacked.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any, Sequence

from backend.weights import atomic_write_bytes
from training.datasets import DataError, SynHead

#: The manifest-entry keys a sketch-network sample keeps (files) and the plain fields it keeps with them.
SKETCH_FILE_KEYS = ("sketch", "strokes", "mask")
SKETCH_ENTRY_FIELDS = ("id", "seed", "split", "generator_version", "sketch_style")


def pack_sketches(data: str | Path | Sequence[str | Path], out: str | Path, split: str = "train",
                  limit: int | None = None, max_mib: float | None = None) -> dict[str, Any]:
    """Write ``out`` (``.tar.gz``): folder ``<stem>/`` holding ``manifest.json`` and, per sample, the files of
    :data:`SKETCH_FILE_KEYS`, in manifest order until ``limit`` samples or until the compressed archive would
    pass ``max_mib`` MiB (1 MiB = 2**20 bytes; the last sample may overshoot by its own compressed size, about
    30 kB, plus the manifest's; the first sample always goes in).

    The archive is built in memory and written with ``backend.weights.atomic_write_bytes`` (temporary file and
    rename), so a failed or interrupted run leaves no partial archive. Returns a summary: ``count``,
    ``bytes``, ``seed_min`` / ``seed_max``, ``split``.

    Raises:
        DataError: unreadable data folders (:class:`SynHead`), a sample without a sketch or mask file.
        ValueError: ``out`` does not end in ``.tar.gz``, or ``max_mib`` <= 0.
    """
    out = Path(out)
    if not out.name.endswith(".tar.gz"):
        raise ValueError(f"{out}: the archive name must end in .tar.gz")
    if max_mib is not None and max_mib <= 0:
        raise ValueError(f"--max-mib must be > 0 (got {max_mib}); leave it out for no size limit")
    src = SynHead(data, split, limit=limit)
    stem = out.name[: -len(".tar.gz")]
    budget = None if max_mib is None else int(max_mib * 2 ** 20)
    entries: list[dict[str, Any]] = []
    raw = io.BytesIO()  # the archive is a few tens of MB: built in memory, written atomically once complete
    with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
        for s in src.samples:
            if budget is not None and entries and raw.tell() >= budget:
                break
            entry = {k: s.entry[k] for k in SKETCH_ENTRY_FIELDS if k in s.entry}
            for key in SKETCH_FILE_KEYS:
                rel = s.entry.get(key)
                if not rel:
                    if key == "strokes":  # older SynHead: no strokes, the sketch is used as drawn
                        continue
                    raise DataError(f"sample {s.entry.get('id')} in {s.root} has no {key!r} file")
                path = s.root / rel
                if not path.is_file():
                    raise DataError(f"{path} is missing: is {s.root} complete (s3d-data synth resumes it)?")
                tar.add(path, arcname=f"{stem}/{rel}", recursive=False)
                entry[key] = rel
            entries.append(entry)
        manifest = {k: v for k, v in src.manifest.items() if k != "samples"}
        manifest.update(samples=entries, packed={"for": "sketch2mask", "from": [str(r) for r in src.roots],
                                                  "split": split, "count": len(entries)})
        blob = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo(f"{stem}/manifest.json")
        info.size, info.mtime = len(blob), int(time.time())
        tar.addfile(info, io.BytesIO(blob))
    atomic_write_bytes(out, raw.getvalue())
    seeds = [int(e["seed"]) for e in entries]
    return {"out": str(out), "folder": stem, "count": len(entries), "bytes": out.stat().st_size, "split": split,
            "seed_min": min(seeds), "seed_max": max(seeds)}
