"""The job's ``result.json`` record (docs/contracts.md section 6), built from the stages' values."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from backend.stage_values import ColourViews, HeadMesh, Mask, Outputs, Planes, Sketch


def input_sha256(source: Any) -> str | None:
    """sha256 of the job's input: the file's bytes, the uploaded bytes, the stroke JSON (sorted keys,
    compact) or the array's bytes; None when it cannot be read."""
    try:
        if isinstance(source, (str, Path)):
            data = Path(source).read_bytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        elif isinstance(source, dict):
            data = json.dumps(source, sort_keys=True, separators=(",", ":")).encode("utf-8")
        elif isinstance(source, np.ndarray):
            data = np.ascontiguousarray(source).tobytes()
        else:
            return None
    except (OSError, TypeError, ValueError):
        return None
    return hashlib.sha256(data).hexdigest()


def result_record(source: Any, sketch: Sketch, mask: Mask, planes: Planes, head: HeadMesh,
                  colour_views: ColourViews, outputs: Outputs, options: Any, models: Any,
                  timings: dict[str, float]) -> dict[str, Any]:
    """The job's ``result.json`` record (docs/contracts.md section 6); ``timings`` includes ``total``. The
    class names (``class_vertex_counts``) and ``label_set`` are those of ``models.labels``, the networks' set."""
    from backend.coords import BOX_SIZE_M

    info = dict(sketch.info, sha256=input_sha256(source))
    names = models.labels.names
    counts = np.bincount(head.labels, minlength=len(names))
    lo, hi = head.vertices.min(0), head.vertices.max(0)
    return {
        "api": 1,
        "input": info,
        "seed": options.seed,
        "subject": models.subject,
        "label_set": models.labels.name,
        "sketch_sha256": info["sha256"],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "device": models.device,
        "device_reason": models.device_reason,
        "weights": {n: {"sha256": c.get("sha256"), "profile": c.get("profile")} for n, c in models.cards.items()},
        "framing": mask.transform.to_dict(),
        "colour_code": ({g: "#" + "".join(f"{int(round(float(v) * 255)):02x}" for v in c)
                         for g, c in planes.colour_code.items()} if planes.colour_code else None),
        "intake": sketch.intake,
        "warnings": mask.warnings,  # [{"code", "message"}], shown by the add-on
        "timings_s": timings,
        "vertex_count": int(len(head.vertices)),
        "face_count": int(len(head.faces)),
        "bbox_m": {"min": lo.round(5).tolist(), "max": hi.round(5).tolist(), "size": (hi - lo).round(5).tolist()},
        "class_vertex_counts": {names[i]: int(counts[i]) for i in range(len(names)) if counts[i] > 0},
        "mesh": dict(head.stats, iso_level=planes.level, grid_points_evaluated=head.grid_evaluated,
                     grid_points_dense=int((options.resolution + 1) ** 3),
                     field_points_queried=int(planes.field.points)),
        "vertex_colors": {"views": [v.name for v in colour_views.views], "vertices_seen": colour_views.vertices_seen,
                          "color_resolution": options.color_resolution, "preview_resolution": options.view_resolution},
        "views": {v.name: v.camera_dict(options.view_resolution, BOX_SIZE_M / 2) for v in colour_views.views},
        "frame": {"units": "metres", "up": "+Z", "face_towards": "-Y", "box_size_m": BOX_SIZE_M},
        "files": sorted(outputs.files + ["result.json"]),
        **({"texture": outputs.texture} if outputs.texture else {}),
    }
