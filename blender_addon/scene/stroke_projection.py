"""Project Grease Pencil strokes (3D points in metres) to the stroke JSON of docs/contracts.md section 2.

Two projections:

* :func:`project_front` -- the input view of the canonical frame (docs/contracts.md section 1,
  ``backend/coords.py``): a front orthographic view of the X-Z plane, seen from -Y looking along +Y, image
  right = +X, image up = +Z. The tri-plane box square (side ``BOX_SIZE_M`` = 0.40 m, centred at the
  origin) spans the image, so a drawing made on the "New sketch" guide frame keeps its exact placement.
  A drawing that does not fit inside that square is framed by a square around its own bounding box
  instead (the backend auto-frames drawings anyway, docs/contracts.md section 1).
* :func:`project_camera` -- through a Blender camera (perspective or orthographic), into the camera's
  render image (pixels, y down), for drawings made in any view.

Standard library and numpy only.
"""
from __future__ import annotations

import math

import numpy as np

#: Side of the tri-plane box square in metres; equal to ``backend.coords.BOX_SIZE_M`` (a test checks it).
BOX_SIZE_M: float = 0.40
#: Margin added around a drawing's own bounding box when it does not fit the box square (fraction).
FIT_MARGIN: float = 0.10


class ProjectionError(ValueError):
    """Strokes that cannot be projected (no points, NaN, points behind the camera, ...)."""


def _split(offsets: np.ndarray, n_points: int) -> list[slice]:
    offsets = np.asarray(offsets, dtype=np.int64).ravel()
    if offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n_points or (np.diff(offsets) < 0).any():
        raise ProjectionError(f"curve offsets must rise from 0 to the number of points ({n_points}); got {offsets[:5]}...")
    return [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:]) if b > a]


def _document(uv: np.ndarray, widths: np.ndarray, slices: list[slice], frame: str,
              width: float, height: float) -> dict:
    strokes = []
    for s in slices:
        pts = np.round(uv[s], 6)
        w = np.round(widths[s], 6)
        stroke = {"points": pts.tolist(), "width": float(np.median(w)) if len(w) else 0.0}
        if len(w) > 1 and float(w.max() - w.min()) > 1e-6:
            stroke["widths"] = w.tolist()
        strokes.append(stroke)
    doc: dict = {"version": 1, "frame": frame, "strokes": strokes}
    doc["width"], doc["height"] = (int(round(width)), int(round(height))) if frame == "image" else (width, height)
    return doc


def project_front(positions: np.ndarray, radii: np.ndarray, offsets: np.ndarray,
                  box_size_m: float = BOX_SIZE_M) -> dict:
    """Strokes in the canonical head frame -> stroke JSON in the front input view ("normalized" frame).

    Args:
        positions: ``(P, 3)`` float world positions in metres (head frame: Z up, face towards -Y).
        radii: ``(P,)`` float point radii in metres (Grease Pencil ``radius``).
        offsets: ``(S + 1,)`` int first point of each stroke, ending with ``P`` (``curve_offsets``).
        box_size_m: side of the square that spans the image when the drawing fits in it.

    Returns:
        stroke JSON dict: ``frame`` "normalized", ``width``/``height`` 1, points in [0, 1] (y down),
        widths as a fraction of the image height (diameter = 2 x radius).

    Raises:
        ProjectionError: no points, NaN/inf coordinates, or inconsistent offsets.
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(radii, dtype=np.float64).ravel()
    if len(p) == 0:
        raise ProjectionError("the Grease Pencil drawing has no points: draw the face first")
    if r.shape != (len(p),):
        raise ProjectionError(f"need one radius per point: {len(r)} radii for {len(p)} points")
    if not np.isfinite(p).all() or not np.isfinite(r).all():
        raise ProjectionError("the drawing has NaN or infinite coordinates")
    slices = _split(offsets, len(p))
    x, z = p[:, 0], p[:, 2]
    half = box_size_m / 2.0
    if np.abs(x).max() <= half and np.abs(z).max() <= half:
        cx, cz, side = 0.0, 0.0, box_size_m
    else:  # does not fit the guide frame: a square around the drawing's own bounding box
        cx, cz = (x.max() + x.min()) / 2.0, (z.max() + z.min()) / 2.0
        side = max(x.max() - x.min(), z.max() - z.min(), 1e-6) * (1.0 + 2.0 * FIT_MARGIN)
    uv = np.stack([(x - cx) / side + 0.5, 0.5 - (z - cz) / side], axis=1)
    widths = 2.0 * np.abs(r) / side
    return _document(uv, widths, slices, "normalized", 1, 1)


def project_camera(positions: np.ndarray, radii: np.ndarray, offsets: np.ndarray, world_to_camera: np.ndarray,
                   *, orthographic: bool, ortho_scale: float = 1.0, fov_rad: float = math.radians(50.0),
                   resolution: tuple[int, int] = (512, 512), shift: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Strokes seen through a camera -> stroke JSON in the camera's image ("image" frame, pixels).

    The camera looks along its local -Z with +Y up (Blender and OpenGL convention). Sensor fit is
    Blender's AUTO: ``ortho_scale`` and ``fov_rad`` span the larger image side.

    Args:
        positions: ``(P, 3)`` world positions, metres. radii: ``(P,)`` metres. offsets: ``(S + 1,)``.
        world_to_camera: ``(4, 4)`` inverse of the camera's world matrix.
        orthographic: True for an orthographic camera.
        ortho_scale: orthographic view width in metres (larger side).
        fov_rad: perspective field of view along the larger side, radians.
        resolution: render size ``(width, height)`` in pixels.
        shift: Blender's lens shift ``(shift_x, shift_y)`` as a fraction of the larger side.

    Returns:
        stroke JSON dict with ``frame`` "image", ``width``/``height`` the resolution, widths in pixels.

    Raises:
        ProjectionError: no points, NaN, bad offsets, or (perspective) points at or behind the camera.
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    r = np.asarray(radii, dtype=np.float64).ravel()
    if len(p) == 0:
        raise ProjectionError("the Grease Pencil drawing has no points: draw the face first")
    if r.shape != (len(p),) or not np.isfinite(p).all() or not np.isfinite(r).all():
        raise ProjectionError("need finite positions and one finite radius per point")
    slices = _split(offsets, len(p))
    m = np.asarray(world_to_camera, dtype=np.float64).reshape(4, 4)
    pc = p @ m[:3, :3].T + m[:3, 3]
    w_px, h_px = float(resolution[0]), float(resolution[1])
    big = max(w_px, h_px)
    if orthographic:
        scale_px = big / ortho_scale  # pixels per metre
        xs, ys = pc[:, 0] * scale_px, pc[:, 1] * scale_px
        width_px = 2.0 * np.abs(r) * scale_px
    else:
        depth = -pc[:, 2]
        if (depth <= 1e-6).any():
            raise ProjectionError("some strokes are at or behind the camera; draw in front of it or use the front view")
        focal_px = (big / 2.0) / math.tan(fov_rad / 2.0)
        xs, ys = pc[:, 0] / depth * focal_px, pc[:, 1] / depth * focal_px
        width_px = 2.0 * np.abs(r) / depth * focal_px
    u = w_px / 2.0 + xs - shift[0] * big
    v = h_px / 2.0 - ys + shift[1] * big
    return _document(np.stack([u, v], axis=1), width_px, slices, "image", w_px, h_px)
