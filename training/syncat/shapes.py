"""Procedural cat head geometry: a signed-distance composition meshed by marching cubes.

Local cat frame: metres, the canonical head frame's axes (Z up, the face looks along -Y, +X is the cat's
own left = image right in the front view), origin at the skull centre. Sizes are about 2.2x life size, so
that a head fills the 0.40 m tri-plane box as SynHead's human heads do (docs/syncat.md).

Signed distances are negative inside. Primitives (Inigo Quilez's distance-function formulas: ellipsoid
bound ``k0 (k0 - 1) / k1``, polynomial smooth minimum ``smin``) are combined into three groups whose
distances also give the per-vertex labels:

* face: skull, two cheeks, muzzle, two whisker pads, chin, nose pad and an optional neck/chest, joined by
  smooth unions, with an optional fur ruff (long-haired cats);
* ears: two thin cupped triangular shells (the concave side faces forward), smooth-joined to the skull;
* eyes: per side a sphere clipped by an almond (an ellipse in the front view, extruded along Y), its
  front 1.5-3 mm proud of the face surface, joined by a hard union so the eye outline is crisp; the face
  has a socket around it (the almond grown by 2.5 mm, carved 5 mm deep), so a groove rings the eye.

The field is evaluated on a 10 mm grid, upsampled trilinearly twice (to 5 mm, then 2.5 mm) and
re-evaluated exactly after each step in a narrow band around the surface, then meshed with PyMCubes;
the grid is padded with outside values, so the mesh is closed (watertight).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

VOXEL_M = 0.0025
#: Share of long-haired cats (a fur ruff on cheeks, neck and back of the head, :func:`_ruff`).
LONGHAIR_PROBABILITY = 0.2
#: Breed / age archetypes and their sampling weights.
ARCHETYPES: dict[str, float] = {"domestic": 0.36, "round": 0.18, "long": 0.16, "big_ears": 0.12, "kitten": 0.18}


# ---- distance primitives ------------------------------------------------------------------------------
def sd_ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance (metres) of points ``p (N, 3)`` to the ellipsoid centred at ``c`` with
    radii ``r`` (IQ's bound ``k0 (k0 - 1) / k1``: exact on the surface, a lower bound elsewhere)."""
    x, y, z = ((p[:, k] - c[k]) / r[k] for k in range(3))
    k0 = np.sqrt(x * x + y * y + z * z)
    x, y, z = x / r[0], y / r[1], z / r[2]
    k1 = np.sqrt(x * x + y * y + z * z)
    return np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(r))  # the centre: inside


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union) of two distances with blend radius ``k`` metres."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def sd_ellipse2d(u: np.ndarray, v: np.ndarray, ru: float, rv: float) -> np.ndarray:
    """Approximate 2D signed distance to an axis-aligned ellipse of radii ``ru``, ``rv`` (same bound)."""
    k0 = np.sqrt((u / ru) ** 2 + (v / rv) ** 2)
    k1 = np.sqrt((u / ru ** 2) ** 2 + (v / rv ** 2) ** 2)
    return np.where(k1 > 1e-9, k0 * (k0 - 1.0) / np.maximum(k1, 1e-9), -min(ru, rv))


def sd_triangle2d(s: np.ndarray, u: np.ndarray, half_base: float, height: float) -> np.ndarray:
    """Signed distance bound to the isosceles triangle with base ``u = 0``, ``|s| <= half_base`` and tip
    ``(0, height)``: the maximum of the three edge half-planes (exact inside, a lower bound outside)."""
    n = np.array([height, half_base]) / np.hypot(height, half_base)  # outward normal of the side edge
    side = (np.abs(s) - half_base) * n[0] + u * n[1]
    return np.maximum(side, -u)


# ---- parameters ---------------------------------------------------------------------------------------
@dataclass
class CatShape:
    """Random shape parameters of one cat head (metres, local cat frame; angles in degrees)."""

    archetype: str
    skull: tuple          # radii (x, y, z)
    cheek_r: tuple        # cheek ellipsoid radii
    cheek_c: tuple        # (|x|, y, z) of the cheek centres
    muzzle_r: tuple
    muzzle_c: tuple
    pad_r: tuple          # whisker pad radii
    pad_c: tuple          # (|x|, y, z)
    chin_r: tuple
    chin_c: tuple
    nose_half_w: float    # nose pad: half width, height, thickness
    nose_h: float
    nose_c: tuple
    eye_c: tuple          # (|x|, z) of the eye centres (y follows the face surface)
    eye_r: float          # eyeball radius
    eye_almond: tuple     # almond half width, half height in the front view
    eye_tilt_deg: float   # outer corner up
    eye_proud_m: float    # how far the eye front stands out of the face surface
    ear_base: tuple       # (|x|, y, z) base centre
    ear_half_w: float
    ear_h: float
    ear_thick: float
    ear_cup: float
    ear_out_deg: float    # tilt of the ear outwards (about Y)
    ear_back_deg: float   # tilt backwards (about X)
    ear_yaw_deg: float    # rotation of the ear's opening outwards (about the ear's axis)
    neck: bool
    neck_r: tuple
    neck_c: tuple
    mouth_w: float        # mouth corner offset |x| and droop, metres
    mouth_droop: float
    fluff_m: float = 0.0  # long hair: how far the fur ruff stands out at most (0: short hair)
    fluff_waves: tuple = ()  # (6, 4): direction (3) and phase of each wave of the ruff's noise


    def to_json(self) -> dict:
        """Plain JSON-able dict (rounded floats)."""
        return {k: (round(v, 5) if isinstance(v, float) else np.round(np.asarray(v, float), 5).tolist()
                    if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def sample_cat_shape(rng: np.random.Generator) -> CatShape:
    """Random :class:`CatShape`: an archetype (round-faced, long-faced, big-eared, kitten, domestic) sets the
    proportions, then every size gets its own jitter of a few percent."""
    names = list(ARCHETYPES)
    p = np.array([ARCHETYPES[n] for n in names])
    arch = str(rng.choice(names, p=p / p.sum()))
    j = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    # archetype factors: face width, muzzle length, ear size, eye size, roundness
    f = {"domestic": (1.0, 1.0, 1.0, 1.0, 1.0), "round": (1.1, 0.75, 0.75, 1.05, 1.15),
         "long": (0.88, 1.3, 1.2, 0.9, 0.85), "big_ears": (0.95, 1.1, 1.45, 1.0, 0.95),
         "kitten": (0.95, 0.7, 1.15, 1.3, 1.15)}[arch]
    fw, fm, fe, fy, fr = (x * j(0.94, 1.06) for x in f)
    sk = (0.092 * fw, 0.088 * j(0.95, 1.05), 0.080 * fr * j(0.95, 1.05))
    cheek_r = (0.048 * fw * fr, 0.042 * j(0.9, 1.1), 0.042 * fr * j(0.9, 1.1))
    cheek_c = (0.050 * fw, -0.030, -0.032 * j(0.9, 1.1))
    mlen = 0.028 * fm
    muzzle_c = (0.0, -0.062 - 0.5 * mlen, -0.040 * j(0.92, 1.08))
    muzzle_r = (0.036 * fw * j(0.92, 1.08), mlen, 0.026 * j(0.92, 1.08))
    pad_r = (0.020 * j(0.9, 1.15), 0.014 * j(0.9, 1.1), 0.017 * j(0.9, 1.1))
    pad_c = (0.017 * j(0.9, 1.1), muzzle_c[1] - 0.55 * mlen - 0.004, muzzle_c[2] - 0.004)
    chin_c = (0.0, pad_c[1] + 0.012, muzzle_c[2] - 0.026 * j(0.9, 1.1))
    chin_r = (0.019 * j(0.85, 1.15), 0.016, 0.012 * j(0.8, 1.2))
    nose_c = (0.0, pad_c[1] - 0.007, pad_c[2] + 0.017 * j(0.9, 1.1))
    eye_z = 0.014 * j(0.7, 1.3)
    eye_x = 0.045 * fw * j(0.94, 1.06)
    eye_r = 0.026 * fy
    almond = (0.021 * fy * j(0.92, 1.08), 0.015 * fy * fr * j(0.85, 1.1))
    ear_h = 0.075 * fe * j(0.9, 1.1)
    ear_half_w = 0.042 * (fe ** 0.6) * j(0.9, 1.1)
    neck = bool(rng.random() < 0.6)
    return CatShape(
        archetype=arch, skull=sk, cheek_r=cheek_r, cheek_c=cheek_c, muzzle_r=muzzle_r, muzzle_c=muzzle_c,
        pad_r=pad_r, pad_c=pad_c, chin_r=chin_r, chin_c=chin_c, nose_half_w=0.011 * j(0.85, 1.2),
        nose_h=0.012 * j(0.85, 1.2), nose_c=nose_c, eye_c=(eye_x, eye_z), eye_r=eye_r, eye_almond=almond,
        eye_tilt_deg=j(0.0, 18.0) * (1.4 if arch == "long" else 1.0), eye_proud_m=j(0.0015, 0.003),
        ear_base=(0.048 * fw * j(0.92, 1.1), 0.010 * j(-1, 1), sk[2] * 0.62), ear_half_w=ear_half_w,
        ear_h=ear_h, ear_thick=0.0065 * j(0.95, 1.15), ear_cup=0.012 * j(0.7, 1.3),
        ear_out_deg=j(12.0, 32.0), ear_back_deg=j(-4.0, 12.0), ear_yaw_deg=j(10.0, 30.0),
        neck=neck, neck_r=(0.075 * fw * j(0.9, 1.1), 0.075 * j(0.9, 1.1), 0.11),
        neck_c=(0.0, 0.025, -sk[2] - 0.06), mouth_w=0.016 * j(0.8, 1.25), mouth_droop=0.004 * j(0.3, 1.6),
        fluff_m=j(0.003, 0.0045) if rng.random() < LONGHAIR_PROBABILITY else 0.0,
        fluff_waves=tuple(tuple(float(x) for x in w) for w in rng.normal(0, 1, (6, 4))))


# ---- the field ----------------------------------------------------------------------------------------
def _rot(axis: str, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def ear_frame(shape: CatShape, side: float) -> tuple[np.ndarray, np.ndarray]:
    """``(base (3,), R (3, 3))`` of the ear on ``side`` (+1 the cat's left, +X; -1 right): columns of R are
    the ear's width axis s (outwards), height axis u (base -> tip) and opening normal n (forward, out of
    the concave side)."""
    r = _rot("y", side * shape.ear_out_deg) @ _rot("x", -shape.ear_back_deg) @ _rot("z", -side * shape.ear_yaw_deg)
    s_ax, u_ax, n_ax = r @ np.array([side, 0.0, 0.0]), r @ np.array([0.0, 0.0, 1.0]), r @ np.array([0.0, -1.0, 0.0])
    base = np.array([side * shape.ear_base[0], shape.ear_base[1], shape.ear_base[2]])
    return base, np.stack([s_ax, u_ax, n_ax], 1)


def ear_coords(shape: CatShape, p: np.ndarray, side: float) -> np.ndarray:
    """Points ``p (N, 3)`` in the ear frame of ``side``: (N, 3) = (s, u, n) metres."""
    base, r = ear_frame(shape, side)
    return (p - base) @ r


def _sd_ear(shape: CatShape, p: np.ndarray, side: float) -> np.ndarray:
    q = ear_coords(shape, p, side)
    s, u, n = q[:, 0], q[:, 1], q[:, 2]
    tri = sd_triangle2d(s, u + 0.02, shape.ear_half_w * 1.25, shape.ear_h + 0.02) - 0.003
    w = np.maximum(shape.ear_half_w * (1 - np.clip(u, 0, None) / shape.ear_h), 1e-3)
    centre = shape.ear_cup * ((s / w) ** 2 - 1.0) * np.clip(1 - u / shape.ear_h, 0, 1)
    shell = np.abs(n - centre) - shape.ear_thick * (0.5 + 0.5 * np.clip(-u / 0.02, 0, 1))
    return np.maximum(tri, shell)


def eye_centre(shape: CatShape, side: float, face_y: float) -> np.ndarray:
    """Eyeball centre (3,) for the face surface at ``face_y`` (metres) in front of the eye."""
    return np.array([side * shape.eye_c[0], face_y - shape.eye_proud_m + shape.eye_r, shape.eye_c[1]])


def eye_uv(shape: CatShape, p: np.ndarray, side: float) -> tuple[np.ndarray, np.ndarray]:
    """Front-view coordinates (u outwards, v up; metres) of points relative to the eye of ``side``,
    rotated by the eye's tilt (outer corner up)."""
    dx = (p[:, 0] - side * shape.eye_c[0]) * side
    dz = p[:, 2] - shape.eye_c[1]
    a = np.radians(shape.eye_tilt_deg)
    return dx * np.cos(a) + dz * np.sin(a), -dx * np.sin(a) + dz * np.cos(a)


def _sd_eye(shape: CatShape, p: np.ndarray, side: float, face_y: float) -> np.ndarray:
    c = eye_centre(shape, side, face_y)
    sphere = np.linalg.norm(p - c, axis=1) - shape.eye_r
    u, v = eye_uv(shape, p, side)
    return np.maximum(sphere, sd_ellipse2d(u, v, *shape.eye_almond))


#: Eye sockets: the almond grown by this much (metres) is carved this deep into the face around each eye.
SOCKET_GAP_M, SOCKET_DEPTH_M = 0.0025, 0.005


def _sd_socket(shape: CatShape, p: np.ndarray, side: float, face_y: float) -> np.ndarray:
    """The socket carved around the eye of ``side``: the grown almond, from the front down to
    ``SOCKET_DEPTH_M`` behind the face surface ``face_y``."""
    u, v = eye_uv(shape, p, side)
    aw, ah = shape.eye_almond
    return np.maximum(sd_ellipse2d(u, v, aw + SOCKET_GAP_M, ah + SOCKET_GAP_M), p[:, 1] - (face_y + SOCKET_DEPTH_M))


def sd_nose(shape: CatShape, p: np.ndarray) -> np.ndarray:
    """Nose pad: a flattened ellipsoid cut by an inverted triangle in the front view."""
    c = np.asarray(shape.nose_c)
    ell = sd_ellipsoid(p, c + [0, 0.002, 0], (shape.nose_half_w * 1.2, 0.009, shape.nose_h * 0.8))
    tri = sd_triangle2d(p[:, 0] - c[0], -(p[:, 2] - c[2] - 0.45 * shape.nose_h), shape.nose_half_w,
                        shape.nose_h) - 0.0015
    return np.maximum(ell, tri)


def face_group(shape: CatShape, p: np.ndarray) -> dict[str, np.ndarray]:
    """Distances (N,) of the face group's pieces: ``face`` (their smooth union), ``pads`` (both whisker
    pads), ``nose``."""
    d = sd_ellipsoid(p, (0, 0, 0), shape.skull)
    for side in (-1.0, 1.0):
        cx, cy, cz = shape.cheek_c
        d = smin(d, sd_ellipsoid(p, (side * cx, cy, cz), shape.cheek_r), 0.02)
    d = smin(d, sd_ellipsoid(p, shape.muzzle_c, shape.muzzle_r), 0.018)
    pads = np.minimum(*(sd_ellipsoid(p, (side * shape.pad_c[0], shape.pad_c[1], shape.pad_c[2]), shape.pad_r)
                        for side in (-1.0, 1.0)))
    d = smin(d, pads, 0.008)
    d = smin(d, sd_ellipsoid(p, shape.chin_c, shape.chin_r), 0.012)
    nose = sd_nose(shape, p)
    d = smin(d, nose, 0.004)
    if shape.neck:
        neck = np.maximum(sd_ellipsoid(p, shape.neck_c, shape.neck_r), (shape.neck_c[2] - 0.06) - p[:, 2])
        d = smin(d, neck, 0.03)
    if shape.fluff_m > 0:
        d = d - _ruff(shape, p)
    return {"face": d, "pads": pads, "nose": nose}


def _ruff(shape: CatShape, p: np.ndarray) -> np.ndarray:
    """Outward offset (N,) metres of a long-haired cat's fur: smooth noise (6 plane waves of 18-30 mm
    wavelength) times ``fluff_m``, strongest on the sides of the cheeks and on the neck, none on the front of
    the face (muzzle, eyes) so the features keep their place."""
    n = np.zeros(len(p))
    for w in shape.fluff_waves:
        d = np.asarray(w[:3]) / (np.linalg.norm(w[:3]) + 1e-9)
        n += np.sin(2 * np.pi * (p @ d) / (0.018 + 0.012 * abs(np.tanh(w[3]))) + 3 * w[3])
    n = 0.5 + 0.5 * np.clip(n / np.sqrt(len(shape.fluff_waves)), -1, 1)
    side = np.clip((np.abs(p[:, 0]) - 0.045) / 0.04, 0, 1)
    low = np.clip((shape.chin_c[2] + 0.01 - p[:, 2]) / 0.04, 0, 1)
    back = np.clip((p[:, 1] + 0.02) / 0.05, 0, 1) * 0.6
    return shape.fluff_m * n * np.maximum(np.maximum(side, low), back)


def face_surface_y(shape: CatShape, x: float, z: float) -> float:
    """Y (metres) of the face group's front surface at (x, z): the first sign change along +Y."""
    ys = np.linspace(-0.25, 0.05, 601)
    p = np.stack([np.full_like(ys, x), ys, np.full_like(ys, z)], 1)
    d = face_group(shape, p)["face"]
    i = int(np.argmax(d < 0))
    if d[i] >= 0:
        return 0.0
    return float(ys[i - 1] + (ys[i] - ys[i - 1]) * d[i - 1] / (d[i - 1] - d[i]))


def cat_groups(shape: CatShape, p: np.ndarray, eye_face_y: tuple[float, float]) -> dict[str, np.ndarray]:
    """Distances (N,) metres per group at points ``p (N, 3)``: ``face``, ``pads``, ``nose``, ``ears`` (both
    ears), ``ear_r`` and ``ear_l`` (each ear on its own: -X, +X), ``eyes`` and the whole cat ``all`` (face and
    ears smooth-joined, eyes hard-joined)."""
    g = face_group(shape, p)
    g["ear_r"], g["ear_l"] = _sd_ear(shape, p, -1.0), _sd_ear(shape, p, 1.0)
    ears = np.minimum(g["ear_r"], g["ear_l"])
    eyes = np.minimum(_sd_eye(shape, p, -1.0, eye_face_y[0]), _sd_eye(shape, p, 1.0, eye_face_y[1]))
    sockets = np.minimum(_sd_socket(shape, p, -1.0, eye_face_y[0]), _sd_socket(shape, p, 1.0, eye_face_y[1]))
    g["face"] = np.maximum(g["face"], -sockets)
    g["ears"], g["eyes"] = ears, eyes
    g["all"] = np.minimum(smin(g["face"], ears, 0.012), eyes)
    return g


def eye_face_depths(shape: CatShape) -> tuple[float, float]:
    """Face-surface Y in front of each eye centre (right, left), for :func:`eye_centre`."""
    return tuple(face_surface_y(shape, side * shape.eye_c[0], shape.eye_c[1]) for side in (-1.0, 1.0))


def bounds(shape: CatShape) -> np.ndarray:
    """(2, 3) axis-aligned bounds (metres) that contain the whole cat, with 3 voxels of margin."""
    lo = np.array([-0.2, -0.2, -0.16 if not shape.neck else shape.neck_c[2] - 0.07])
    hi = np.array([0.2, 0.15, shape.ear_base[2] + shape.ear_h + 0.03])
    return np.stack([lo, hi])


def cat_mesh(shape: CatShape):
    """Closed triangle mesh of the cat: ``(vertices (V, 3) float64 metres, faces (F, 3) int64, groups dict
    of per-vertex distances as :func:`cat_groups`)``. Coarse 10 mm grid, two trilinear 2x upsamplings,
    each followed by exact re-evaluation where the field is within 16 mm / 6 mm of the surface, PyMCubes
    at level 0 (the field negated: PyMCubes meshes the positive side as inside), outward normals."""
    import mcubes

    from training.synhead.hair import _upsample2

    ey = eye_face_depths(shape)
    b = bounds(shape)
    coarse = 4 * VOXEL_M
    n = np.ceil((b[1] - b[0]) / coarse).astype(int) + 1
    b = np.stack([b[0], b[0] + (n - 1) * coarse])
    axes = [b[0][k] + coarse * np.arange(n[k]) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    f = cat_groups(shape, grid, ey)["all"].reshape(n).astype(np.float32)
    for step, band_m in ((2 * VOXEL_M, 0.016), (VOXEL_M, 0.006)):
        f = _upsample2(f)
        band = np.abs(f) < band_m
        pts = b[0] + np.argwhere(band) * step
        f[band] = cat_groups(shape, pts, ey)["all"].astype(np.float32)
    f = -f
    f[[0, -1], :, :] = -1
    f[:, [0, -1], :] = -1
    f[:, :, [0, -1]] = -1
    verts, faces = mcubes.marching_cubes(f, 0.0)
    verts = b[0] + verts * VOXEL_M
    faces = faces.astype(np.int64)
    tri = verts[faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces, cat_groups(shape, verts, ey)
