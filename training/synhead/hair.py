"""Procedural hair as closed geometry: a signed field around the scalp, meshed by marching cubes.

Method (this project's, issue 3): rays from the cranium centre measure the scalp radius
``r_head(el, az)`` on an elevation/azimuth grid. A style is a set of fields whose positive part is
hair, all in metres:

* a scalp shell ``r_head - 12 mm < r < r_head + T(el, az)`` above a hairline ``el > h(az)`` (smooth
  random hairline: forehead, temples, above the ears, nape), with a style thickness ``T`` plus noise;
* optional fringe (forehead cover down to the brows), side/back drop below the hairline (bob, long,
  curly), a vertical curtain below the head (long), a bun sphere or a ponytail capsule (tied back).

The union (max of the fields) is sampled on a 10 mm grid, interpolated trilinearly to 5 mm and meshed
with PyMCubes at level 0; the grid is padded with negative values, so the mesh is closed (watertight) and has an inside for occupancy.
Azimuth ``az`` is 0 at the face (-Y) and +90 deg at +X (the person's left); elevation is +90 at the top.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Styles and their sampling weights. "bald" gives no hair mesh.
HAIR_STYLES: dict[str, float] = {
    "buzz": 0.10, "short": 0.20, "medium": 0.14, "long": 0.17, "bob": 0.12, "curly": 0.10,
    "tied": 0.10, "bald": 0.05, "receding": 0.02,
}
VOXEL_M = 0.005
_EL = np.linspace(-np.pi / 2, np.pi / 2, 49)
_AZ = np.linspace(-np.pi, np.pi, 97)


@dataclass
class HairSpec:
    """A sampled hair style (all lengths metres, angles radians)."""

    style: str
    fringe: bool
    params: dict

    def to_json(self) -> dict:
        """The spec as a JSON-ready dict for the manifest (floats rounded to 5 digits)."""
        return {"style": self.style, "fringe": self.fringe,
                **{k: (round(float(v), 5) if isinstance(v, (float, np.floating)) else v) for k, v in self.params.items()}}


def sample_hair_spec(rng: np.random.Generator, gender: float) -> HairSpec:
    """Random style; men (gender > 0.5 in anny) get short styles and baldness more often."""
    styles = list(HAIR_STYLES)
    w = np.array([HAIR_STYLES[s] for s in styles])
    male = gender > 0.5
    boost = {"buzz": 1.8, "short": 1.8, "bald": 1.6, "receding": 2.5} if male else {"long": 1.8, "bob": 1.6, "tied": 1.6, "curly": 1.3}
    w = w * np.array([boost.get(s, 1.0) for s in styles])
    if male:
        w[styles.index("long")] *= 0.5
    style = str(rng.choice(styles, p=w / w.sum()))
    fringe = bool(style in ("short", "medium", "long", "bob", "curly") and rng.random() < 0.35)
    p = {
        "hairline_front_deg": rng.uniform(28, 40) + (12 if style == "receding" else 0),
        "hairline_temple_deg": rng.uniform(10, 22) + (14 if style == "receding" else 0),
        "hairline_ear_deg": rng.uniform(-2, 8),
        "hairline_nape_deg": rng.uniform(-42, -28),
        "noise_amp": rng.uniform(0.0, 0.004),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "part_az_deg": rng.uniform(-40, 40),
    }
    t = {"buzz": (0.004, 0.007), "short": (0.010, 0.022), "medium": (0.018, 0.030), "long": (0.010, 0.022),
         "bob": (0.014, 0.026), "curly": (0.035, 0.060), "tied": (0.005, 0.010), "bald": (0, 0),
         "receding": (0.004, 0.012)}[style]
    p["thickness_top"] = rng.uniform(*t)
    p["thickness_side"] = p["thickness_top"] * rng.uniform(0.5, 0.9)
    if style == "bob":
        p["drop_el_deg"] = rng.uniform(-55, -35)
    elif style == "curly":
        p["drop_el_deg"] = rng.uniform(-60, -25)
        p["noise_amp"] = rng.uniform(0.008, 0.016)
    elif style == "medium":
        p["drop_el_deg"] = rng.uniform(-30, -10)
    elif style == "long":
        p["drop_el_deg"] = rng.uniform(-45, -30)
        p["length_below_m"] = rng.uniform(0.10, 0.28)
        p["curtain_thickness"] = rng.uniform(0.015, 0.03)
        p["front_strands"] = bool(rng.random() < 0.4)
    if style == "tied":
        p["tie"] = "bun" if rng.random() < 0.5 else "ponytail"
        p["tie_el_deg"] = rng.uniform(10, 55) if p["tie"] == "bun" else rng.uniform(-5, 25)
        p["tie_radius"] = rng.uniform(0.03, 0.045) if p["tie"] == "bun" else rng.uniform(0.015, 0.025)
        p["tail_length"] = rng.uniform(0.08, 0.2)
    if fringe:
        p["fringe_bottom_m"] = rng.uniform(0.004, 0.02)  # above the brow line
        p["fringe_half_az_deg"] = rng.uniform(30, 55)
        p["fringe_thickness"] = rng.uniform(0.008, 0.016)
    return HairSpec(style=style, fringe=fringe, params=p)


def _smooth_noise(seed: int, el: np.ndarray, az: np.ndarray, freq: float, n: int = 6) -> np.ndarray:
    """Sum of ``n`` random sinusoids on the sphere angles, in [-1, 1] roughly."""
    r = np.random.default_rng(seed)
    out = np.zeros(np.broadcast(el, az).shape)
    for _ in range(n):
        a, b = r.integers(1, int(freq) + 2, size=2)
        ph = r.uniform(0, 2 * np.pi, size=2)
        out += np.sin(a * el * 2 + ph[0]) * np.sin(b * az + ph[1])
    return out / np.sqrt(n / 2)


def scalp_radius_table(skin_mesh, centre: np.ndarray) -> np.ndarray:
    """Ray-cast the scalp radius ``r_head`` (len(_EL), len(_AZ)) metres from ``centre`` outwards."""
    el, az = np.meshgrid(_EL, _AZ, indexing="ij")
    d = np.stack([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)], -1).reshape(-1, 3)
    from .raycast import RayScene

    o = np.repeat(centre[None], len(d), 0)
    hit, _, t, _ = RayScene(np.asarray(skin_mesh.vertices), np.asarray(skin_mesh.faces)).first_hits(o, d)
    r = np.where(hit, t, np.nan).reshape(el.shape)
    fill = np.nanmedian(r)
    return np.where(np.isfinite(r), r, fill)


def _table_lookup(tables: np.ndarray, el: np.ndarray, az: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (K, len(_EL), len(_AZ)) tables at angles -> (K, *el.shape)."""
    fi = np.clip((el - _EL[0]) / (_EL[1] - _EL[0]), 0, len(_EL) - 1.001)
    fj = np.clip((az - _AZ[0]) / (_AZ[1] - _AZ[0]), 0, len(_AZ) - 1.001)
    i0, j0 = fi.astype(np.int32), fj.astype(np.int32)
    a, b = fi - i0, fj - j0
    t = tables
    return (t[:, i0, j0] * (1 - a) * (1 - b) + t[:, i0 + 1, j0] * a * (1 - b)
            + t[:, i0, j0 + 1] * (1 - a) * b + t[:, i0 + 1, j0 + 1] * a * b)


def _angular_tables(spec: HairSpec, r_table: np.ndarray):
    """Hairline (len(_AZ),) and shell thickness (len(_EL), len(_AZ)) tables in radians / metres."""
    p = spec.params
    deg = np.pi / 180
    el, az = np.meshgrid(_EL, _AZ, indexing="ij")
    aaz = np.abs(_AZ)
    knots = np.array([0, 30, 55, 80, 100, 135, 180]) * deg
    vals = np.array([p["hairline_front_deg"], (p["hairline_front_deg"] + p["hairline_temple_deg"]) / 2 + 4,
                     p["hairline_temple_deg"], p["hairline_ear_deg"] + 12, p["hairline_ear_deg"],
                     (p["hairline_ear_deg"] + p["hairline_nape_deg"]) / 2, p["hairline_nape_deg"]]) * deg
    hairline = np.interp(aaz, knots, vals) + 0.08 * _smooth_noise(p["noise_seed"], 0 * _AZ, _AZ, 5)
    if "drop_el_deg" in p:  # below-hairline drop at the sides and back (never over the face)
        side = np.clip((aaz - 62 * deg) / (25 * deg), 0, 1)
        hairline = hairline * (1 - side) + np.minimum(hairline, p["drop_el_deg"] * deg) * side
    thick = p["thickness_side"] + (p["thickness_top"] - p["thickness_side"]) * np.clip((el + 0.2) / 1.2, 0, 1)
    if spec.style in ("bob", "curly"):  # hanging hair gets fuller downwards
        thick = thick + (0.035 if spec.style == "bob" else 0.07) * np.clip(-el, 0, None)
    noise = _smooth_noise(p["noise_seed"] + 1, el, az, 9 if spec.style == "curly" else 4)
    thick = np.maximum(thick + p["noise_amp"] * noise, 0.003)
    return hairline, thick


def hair_field(spec: HairSpec, r_table: np.ndarray, centre: np.ndarray, brow_z: float,
               points: np.ndarray) -> np.ndarray:
    """Signed hair field (metres, > 0 inside hair) at ``points`` (..., 3) of the canonical head frame."""
    p = spec.params
    deg = np.pi / 180
    hairline_t, thick_t = _angular_tables(spec, r_table)
    d = points - centre
    r = np.linalg.norm(d, axis=-1) + 1e-9
    el = np.arcsin(np.clip(d[..., 2] / r, -1, 1))
    az = np.arctan2(d[..., 0], -d[..., 1])
    both = _table_lookup(np.stack([r_table, thick_t]), el, az)
    rh, thick = both[0], both[1]
    aaz = np.abs(az)
    hairline = np.interp(az, _AZ, hairline_t)
    ang_margin = (el - hairline) * r  # metres above the hairline along the surface
    shell = np.minimum(np.minimum(r - (rh - 0.012), rh + thick - r), ang_margin)
    if spec.style == "receding":  # thinning crown for the receding/horseshoe pattern
        shell = np.minimum(shell, (np.pi / 2 - 0.55 - el) * r + 0.02 * (aaz > 100 * deg))
    fields = [shell]
    if spec.fringe:
        fz = brow_z + p["fringe_bottom_m"] + 0.01 * np.sin(az * 7 + p["noise_seed"] % 7)
        fr = np.minimum.reduce([r - (rh - 0.01), rh + p["fringe_thickness"] - r, points[..., 2] - fz,
                                (p["fringe_half_az_deg"] * deg - aaz) * r, el * r + 0.05])
        fields.append(fr)
    if spec.style == "long":
        ring = np.interp(az, _AZ, r_table[len(_EL) // 2])
        rho = np.linalg.norm(d[..., :2], axis=-1)
        az_min = (50 if p.get("front_strands") else 68) * deg
        z_top = centre[2] - 0.02
        z_bot = centre[2] - 0.05 - p["length_below_m"]
        wave = 0.006 * np.sin(az * 11 + points[..., 2] * 40)
        cur = np.minimum.reduce([rho - (ring - 0.01), ring + p["curtain_thickness"] + wave - rho,
                                 (aaz - az_min) * rho, z_top - points[..., 2] + 0.04,
                                 points[..., 2] - z_bot - wave])
        fields.append(cur)
    if spec.style == "tied":
        tel = p["tie_el_deg"] * deg
        rt = float(_table_lookup(r_table[None], np.array([tel]), np.array([np.pi - 1e-6]))[0, 0])
        anchor = centre + rt * np.array([0.0, np.cos(tel), np.sin(tel)])
        if p["tie"] == "bun":
            c = anchor + np.array([0.0, 0.5, 0.15]) * p["tie_radius"]
            fields.append(p["tie_radius"] - np.linalg.norm(points - c, axis=-1))
        else:
            a = anchor - np.array([0.0, 0.01, 0.0])
            b = a + np.array([0.0, 0.035, -p["tail_length"]])
            ab = b - a
            t = np.clip(((points - a) @ ab) / (ab @ ab), 0, 1)
            dist = np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)
            fields.append(p["tie_radius"] * (1 - 0.4 * t) - dist)
    return np.maximum.reduce(fields)


def _upsample2(c: np.ndarray) -> np.ndarray:
    """Trilinear 2x upsampling of a 3D grid whose end samples stay put: (n0, n1, n2) -> (2 n - 1 each)."""
    out = c
    for ax in range(3):
        shape = list(out.shape)
        shape[ax] = 2 * shape[ax] - 1
        res = np.empty(shape, out.dtype)
        even, odd, lo, hi = ([slice(None)] * 3 for _ in range(4))
        even[ax], odd[ax], lo[ax], hi[ax] = slice(0, None, 2), slice(1, None, 2), slice(0, -1), slice(1, None)
        res[tuple(even)] = out
        res[tuple(odd)] = (out[tuple(lo)] + out[tuple(hi)]) * 0.5
        out = res
    return out


def hair_mesh(spec: HairSpec, skin_mesh, centre: np.ndarray, brow_z: float, bounds: np.ndarray):
    """Closed hair mesh (trimesh.Trimesh, metres, canonical head frame) or None for bald heads.

    Args:
        skin_mesh: the closed skin surface (trimesh) in the same frame.
        centre: (3,) cranium centre the hair field is built around.
        brow_z: height of the brow line (fringe bottom reference), metres.
        bounds: (2, 3) region to mesh; hair outside it is cut (and closed) at its faces.
    """
    import mcubes
    import trimesh

    if spec.style == "bald":
        return None
    r_table = scalp_radius_table(skin_mesh, centre)
    # the field is smooth (min/max of smooth functions): evaluate it on a grid twice as coarse and
    # interpolate trilinearly to the meshing grid (about 6x cheaper than evaluating every voxel)
    coarse = 2 * VOXEL_M
    n = np.ceil((bounds[1] - bounds[0]) / coarse).astype(int) + 1
    axes = [bounds[0][k] + coarse * np.arange(n[k]) for k in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    fc = hair_field(spec, r_table, centre, brow_z, grid).astype(np.float32)
    f = _upsample2(fc)
    f[[0, -1], :, :] = -1
    f[:, [0, -1], :] = -1
    f[:, :, [0, -1]] = -1
    if (f > 0).sum() < 50:
        return None
    verts, faces = mcubes.marching_cubes(f, 0.0)
    verts = bounds[0] + verts * VOXEL_M
    mesh = trimesh.Trimesh(verts, faces.astype(np.int64), process=True)
    parts = mesh.split(only_watertight=False)
    parts = [m for m in parts if len(m.faces) >= 200]
    if not parts:
        return None
    mesh = trimesh.util.concatenate(parts)
    # PyMCubes' orientation depends on the sign convention: make the normals point outwards
    tri = mesh.vertices[mesh.faces]
    if np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() < 0:
        mesh.invert()
    return mesh
