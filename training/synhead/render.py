"""CPU ray casting (Embree through embreex, :mod:`.raycast`) of a SynHead scene: RGB, label, depth,
normal and alpha maps.

Orthographic views of the box (docs/contracts.md sections 1 and 3):

* ``front``: camera at -Y looking along +Y, image right = +X, up = +Z (the input view);
* ``back``: at +Y looking along -Y, image right = -X;
* ``left``: on the person's left (+X) looking along -X, image right = +Y;
* ``right``: on the person's right (-X) looking along +X, image right = -Y;

plus optional random perspective views (:func:`perspective_camera`, :func:`render_camera`).

Camera dicts follow the contract: ``cam2world`` 4x4 (camera looks along its -Z, +Y up, OpenGL
convention, metres), ``ortho_size_m`` (= the box side) or ``fov_deg`` (vertical), ``resolution``. The
orthographic camera origin lies on the box face (0.20 m from the centre). ``depth`` is the distance
along the camera's viewing axis from the camera origin in metres (z-depth; ``inf`` where nothing is
hit). Labels are the argmax of the barycentric blend of the hit triangle's vertex labels; colours are
the blend of vertex colours with the iris and pupil drawn analytically on the eyeballs and the brows
per pixel; shading is diffuse + ambient (Lambert).
"""
from __future__ import annotations

import numpy as np

from backend.coords import BOX_SIZE_M

VIEW_AXES = {  # name: (forward, right, up)
    "front": ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
    "back": ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
    "left": ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "right": ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
}
_RAY_START_BACK = 1.0  # rays start this far behind the camera origin (metres)


def ortho_camera(view: str, resolution: int) -> dict:
    """Contract camera dict of an orthographic view of the box. Raises KeyError for unknown views."""
    fwd, right, up = (np.array(a, float) for a in VIEW_AXES[view])
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2] = right, up, -fwd
    c2w[:3, 3] = -fwd * BOX_SIZE_M / 2
    return {"type": "orthographic", "view": view, "cam2world": c2w.round(6).tolist(), "ortho_size_m": BOX_SIZE_M,
            "resolution": int(resolution)}


def render_view(scene, view: str, resolution: int, light_dir=(-0.35, -0.8, 0.5),
                candidates: np.ndarray | None = None) -> dict:
    """Render one orthographic view.

    ``candidates`` (R, R) bool, optional: cast rays only where it is True (e.g. the dilated, upsampled
    alpha of a coarser render of the same view); everything else is background.

    Returns a dict with ``rgb`` (R, R, 3) uint8 sRGB (white background), ``label`` (R, R) uint8 ids,
    ``depth`` (R, R) float32 metres (inf where empty), ``normal`` (R, R, 3) float32 unit normals in the
    box frame (0 where empty), ``alpha`` (R, R) uint8 (255 on the head), ``camera`` (contract dict).
    """
    cam = ortho_camera(view, resolution)
    fwd, right, up = (np.array(a, float) for a in VIEW_AXES[view])
    scene.combined()
    verts = scene.vertices
    r = resolution
    s = (np.arange(r) + 0.5) / r * BOX_SIZE_M - BOX_SIZE_M / 2
    xs, ys = np.meshgrid(s, -s)  # ys: image up
    origin0 = -fwd * (BOX_SIZE_M / 2 + _RAY_START_BACK)
    # cast rays only inside the projected bounding box of the scene (2 px margin)
    u, w = verts @ right, verts @ up
    pix = BOX_SIZE_M / r
    inside = ((xs >= u.min() - 2 * pix) & (xs <= u.max() + 2 * pix) & (ys >= w.min() - 2 * pix)
              & (ys <= w.max() + 2 * pix)).reshape(-1)
    if candidates is not None:
        if candidates.shape != (r, r):
            raise ValueError(f"candidates must be ({r}, {r}) bool, got {candidates.shape}")
        inside &= candidates.reshape(-1)
    cast = np.flatnonzero(inside)
    origins = origin0 + xs.reshape(-1)[cast, None] * right + ys.reshape(-1)[cast, None] * up
    dirs = np.broadcast_to(fwd, (len(origins), 3))
    return _shade_rays(scene, cam, r, cast, origins, dirs, fwd, light_dir, depth_offset=_RAY_START_BACK)


def perspective_camera(rng: np.random.Generator, resolution: int, name: str = "persp0",
                       target=(0.0, 0.0, 0.035)) -> dict:
    """A random perspective camera looking at the head (contract camera dict).

    Distance 0.55-0.9 m from ``target`` (metres, box frame), azimuth anywhere around the head, elevation
    -10..+30 degrees, and the vertical field of view of a 0.22 m sphere around the target."""
    dist = rng.uniform(0.55, 0.9)
    az = rng.uniform(-np.pi, np.pi)
    el = np.radians(rng.uniform(-10, 30))
    tgt = np.asarray(target, float) + rng.normal(0, 0.01, 3)
    pos = tgt + dist * np.array([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)])
    fwd = (tgt - pos) / np.linalg.norm(tgt - pos)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -fwd, pos
    fov = 2 * np.degrees(np.arcsin(0.22 / dist))
    return {"type": "perspective", "view": name, "cam2world": c2w.round(6).tolist(), "fov_deg": round(float(fov), 4),
            "resolution": int(resolution)}


def render_camera(scene, cam: dict, light_dir=(-0.35, -0.8, 0.5)) -> dict:
    """Render a perspective camera dict (:func:`perspective_camera`); same outputs as
    :func:`render_view`, with ``depth`` the z-depth along the camera's viewing axis (metres).

    Raises:
        ValueError: a camera that is not perspective (use :func:`render_view` for the box views).
    """
    if cam.get("type") != "perspective":
        raise ValueError("render_camera draws perspective cameras; use render_view for orthographic views")
    r = int(cam["resolution"])
    c2w = np.asarray(cam["cam2world"], float)
    rot, pos = c2w[:3, :3], c2w[:3, 3]
    t = np.tan(np.radians(cam["fov_deg"]) / 2)
    ndc = (np.arange(r) + 0.5) / r * 2 - 1
    u, v = np.meshgrid(ndc, -ndc)
    d_cam = np.stack([u * t, v * t, -np.ones_like(u)], -1).reshape(-1, 3)
    dirs = d_cam @ rot.T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origins = np.broadcast_to(pos, dirs.shape)
    return _shade_rays(scene, cam, r, np.arange(r * r), origins, dirs, -rot[:, 2], light_dir, depth_offset=0.0)


def _shade_rays(scene, cam, r, cast, origins, dirs, fwd, light_dir, depth_offset: float) -> dict:
    """Cast ``origins``/``dirs`` (for the pixels ``cast``) and shade: the dict of :func:`render_view`."""
    _, vlab, vcol, fpart = scene.combined()
    faces = scene.faces
    hit, tri_all, t_all, bary_all = scene.ray_scene().first_hits(origins, dirs)
    tri_idx, ray_idx, t_hit = tri_all[hit], cast[hit], t_all[hit]
    bary = np.clip(bary_all[hit], 0, 1)
    bary /= bary.sum(1, keepdims=True) + 1e-12
    hdirs = dirs[hit]
    locs = origins[hit] + t_hit[:, None] * hdirs
    n = r * r
    label = np.zeros(n, np.uint8)
    depth = np.full(n, np.inf, np.float32)
    normal = np.zeros((n, 3), np.float32)
    rgb = np.ones((n, 3), np.float32)
    if len(ray_idx):
        tri = faces[tri_idx]
        labs = vlab[tri]
        score = np.stack([(bary * (labs == labs[:, [k]])).sum(1) for k in range(3)], 1)
        label[ray_idx] = labs[np.arange(len(tri)), np.argmax(score, 1)]
        # depth along the viewing axis (for orthographic rays t itself, less the start offset)
        depth[ray_idx] = (t_hit * (hdirs @ fwd) - depth_offset).astype(np.float32)
        vn = scene.vertex_normals
        nrm = (vn[tri] * bary[..., None]).sum(1)
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
        # face the camera (thin or inverted parts)
        flip = np.einsum("ij,ij->i", nrm, hdirs) > 0
        nrm[flip] *= -1
        normal[ray_idx] = nrm
        col = (vcol[tri] * bary[..., None]).sum(1)
        col = _paint_eyes(scene, col, locs, fpart[tri_idx])
        _paint_brows(scene, label, col, ray_idx, tri_idx, bary, fpart[tri_idx])
        ld = np.array(light_dir, float)
        ld /= np.linalg.norm(ld)
        shade = 0.42 + 0.62 * np.clip(nrm @ ld, 0, 1)
        rgb[ray_idx] = np.clip(col * shade[:, None], 0, 1)
    rgb8 = (rgb.reshape(r, r, 3) * 255 + 0.5).astype(np.uint8)
    return {"rgb": rgb8, "label": label.reshape(r, r), "depth": depth.reshape(r, r),
            "normal": normal.reshape(r, r, 3), "alpha": ((label > 0) * 255).astype(np.uint8).reshape(r, r),
            "camera": cam}


def candidates_from_coarse(alpha: np.ndarray, resolution: int, dilate_px: int = 2) -> np.ndarray:
    """Pixels of a ``resolution`` view worth casting, from the ``alpha`` (r, r) of a coarser render of
    the same view: alpha dilated by ``dilate_px`` coarse pixels, upsampled (nearest). Raises
    ValueError unless ``resolution`` is a multiple of r."""
    import cv2

    r = alpha.shape[0]
    if resolution % r:
        raise ValueError(f"resolution {resolution} is not a multiple of the coarse resolution {r}")
    k = 2 * dilate_px + 1
    m = cv2.dilate((alpha > 0).astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    f = resolution // r
    return np.repeat(np.repeat(m, f, 0), f, 1)


def _paint_brows(scene, label, col, ray_idx, tri_idx, bary, part) -> None:
    """Per-pixel brows on forehead skin hits (rest-template position of the hit; see labels.py)."""
    from .labels import SKIN, brow_labels_at

    skin = scene.parts[0]
    if skin.rest is None or "brows" not in scene.params:
        return
    sel = np.flatnonzero((part == 0) & np.isin(label[ray_idx], [SKIN, 6, 7]))
    if not len(sel):
        return
    scene.combined()
    tri = scene.faces[tri_idx[sel]]  # skin is part 0: its vertices come first in the combined mesh
    rest = (skin.rest[tri] * bary[sel, :, None]).sum(1)
    b = brow_labels_at(scene.params["brows"], rest)
    fwd_ok = scene.skin_forward[tri].mean(1) > 0.5
    b[~fwd_ok] = 0
    label[ray_idx[sel]] = np.where(b > 0, b, SKIN)
    vc = skin.colors[tri].copy()
    vc[np.isin(skin.labels[tri], [6, 7])] = scene.appearance["skin_rgb"]
    base = (vc * bary[sel, :, None]).sum(1)
    col[sel] = np.where((b > 0)[:, None], np.array(scene.appearance["brow_rgb"]), base)


def _paint_eyes(scene, col: np.ndarray, locs: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Iris and pupil on eyeball hits, from the angle between the hit and the eye's forward axis."""
    from .scene import IRIS_HALF_ANGLE, PUPIL_HALF_ANGLE

    names = [p.name for p in scene.parts]
    iris = np.array(scene.appearance["iris_rgb"])
    for k, name in enumerate(("eye_l", "eye_r")):
        if name not in names:
            continue
        sel = part == names.index(name)
        if not sel.any():
            continue
        d = locs[sel] - scene.eyes["centres"][k]
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        ang = np.arccos(np.clip(d @ scene.eyes["axes"][k], -1, 1))
        c = col[sel]
        c[ang < IRIS_HALF_ANGLE] = iris * (0.8 + 0.4 * (ang[ang < IRIS_HALF_ANGLE, None] / IRIS_HALF_ANGLE))
        c[ang < PUPIL_HALF_ANGLE] = 0.03
        col[sel] = c
    return col
