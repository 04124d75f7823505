"""Surface quality of backend/mesh.py: one closed piece of genus 0 and a planar bottom cap (issue 39)."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from backend.mesh import DensityGrid, extract_mesh
from backend.mesh_topology import euler_characteristic, repair_topology, surface_genus

CELLS = 64


def _coords() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lin = np.linspace(-1.0, 1.0, CELLS + 1, dtype=np.float32)
    return np.meshgrid(lin, lin, lin, indexing="ij")


def tunnel_grid() -> DensityGrid:
    """A ball (radius 0.6) pierced along y by a thin tunnel (radius 1.2 cells: genus 1), with a loose blob
    beside it and a closed bubble inside it; density = signed distance, positive inside, level 0."""
    x, y, z = _coords()
    ball = 0.6 - np.sqrt(x ** 2 + y ** 2 + z ** 2)
    tunnel = np.sqrt((x - 0.2) ** 2 + z ** 2) - 1.2 * 2.0 / CELLS
    solid = np.minimum(ball, tunnel)
    blob = 0.12 - np.sqrt((x + 0.82) ** 2 + y ** 2 + (z - 0.8) ** 2)
    bubble = np.sqrt((x + 0.25) ** 2 + y ** 2 + z ** 2) - 0.12
    values = np.maximum(np.minimum(solid, bubble), blob)
    return DensityGrid(values=values.astype(np.float32), level=0.0)


def neck_grid(shoulder: bool = False) -> DensityGrid:
    """A ball on a cylinder (a head on its neck) that leaves the box through its bottom face z = -1; with
    ``shoulder`` also a slab joined to the neck whose flat underside hovers 0.1 cell (0.6 mm) above the floor."""
    x, y, z = _coords()
    head = 0.55 - np.sqrt(x ** 2 + y ** 2 + (z - 0.2) ** 2)
    neck = np.minimum(0.3 - np.sqrt(x ** 2 + y ** 2), 0.2 - z)
    values = np.maximum(head, neck)
    if shoulder:
        floor = -1.0 + 0.1 * 2.0 / CELLS
        slab = np.minimum(np.minimum(0.3 - np.abs(x - 0.45), 0.2 - np.abs(y)), np.minimum(z - floor, -0.7 - z))
        values = np.maximum(values, slab)
    return DensityGrid(values=values.astype(np.float32), level=0.0)


def _genus_pieces(mesh) -> tuple[float, int, bool]:
    m = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    return (2 * m.body_count - m.euler_number) / 2.0, int(m.body_count), bool(m.is_watertight)


def test_the_tunnel_grid_really_has_a_handle_a_bubble_and_a_floater():
    grid = tunnel_grid()
    genus, pieces = surface_genus(grid.values, grid.level)
    assert genus == 1 and pieces == 3  # ball with tunnel, loose blob, inner bubble's shell
    raw = extract_mesh(grid, smooth_iterations=0, max_faces=None, repair=False)
    assert _genus_pieces(raw)[0] == 1


def test_a_grid_with_a_tunnel_comes_out_genus_0_and_one_closed_piece():
    mesh = extract_mesh(tunnel_grid(), smooth_iterations=20, max_faces=None)
    genus, pieces, watertight = _genus_pieces(mesh)
    assert (genus, pieces, watertight) == (0, 1, True)
    assert mesh.stats["genus_before"] == 1 and mesh.stats["genus"] == 0
    assert mesh.stats["handle_fix"] in ("closing", "opening") and mesh.stats["handle_radius"] >= 1
    # the repair is local: the ball keeps its volume within a few per cent (4/3 pi 0.6^3 box units)
    volume_box = trimesh.Trimesh(mesh.vertices, mesh.faces).volume / 0.2 ** 3
    assert volume_box == pytest.approx(4 / 3 * np.pi * 0.6 ** 3, rel=0.05)


def test_the_closing_gives_back_the_crevices_it_filled_beside_the_tunnel():
    """A one-cell slot cut into the ball (a crevice) is filled by the same closing that plugs the tunnel;
    the repair gives it back, so only the tunnel's plug stays."""
    grid = tunnel_grid()
    x, y, z = _coords()
    h = 2.0 / CELLS
    slot = np.maximum(np.maximum(np.abs(y) - 0.75 * h, x + 0.3), np.abs(z - 0.3) - 0.15)
    values = np.minimum(grid.values, slot).astype(np.float32)
    in_slot = (slot < 0) & (np.sqrt(x ** 2 + y ** 2 + z ** 2) < 0.55)
    assert in_slot.sum() > 20 and not (values[in_slot] >= 0).any()
    out, stats = repair_topology(values, 0.0)
    assert stats["genus"] == 0 and stats["handle_fix"] == "closing"
    assert not (out[in_slot] >= 0).any()  # the crevice is open again
    _, without_slot = repair_topology(grid.values, 0.0)  # floater, bubble and plug only
    assert stats["points_changed"] <= without_slot["points_changed"] + 5


def test_repair_leaves_a_genus_0_grid_alone():
    x, y, z = _coords()
    values = (0.5 - np.sqrt(x ** 2 + y ** 2 + z ** 2)).astype(np.float32)
    out, stats = repair_topology(values, 0.0)
    assert np.array_equal(out, values) and stats["points_changed"] == 0 and stats["handle_fix"] == "none"


def test_euler_characteristic_of_a_cube_and_a_torus():
    box = trimesh.creation.box()
    assert euler_characteristic(box.faces, len(box.vertices)) == 2
    torus = trimesh.creation.torus(1.0, 0.3)
    assert euler_characteristic(torus.faces, len(torus.vertices)) == 0


def _bottom(mesh, band_m: float = 1e-3) -> tuple[np.ndarray, float, float]:
    """(z of the vertices within ``band_m`` of the lowest point, area of the faces lying flat there, the
    neck's section area)."""
    m = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    zmin = float(m.vertices[:, 2].min())
    low = m.vertices[:, 2] < zmin + band_m
    flat = (m.vertices[m.faces, 2] == zmin).all(axis=1)
    return m.vertices[low, 2], float(m.area_faces[flat].sum()), np.pi * (0.3 * 0.2) ** 2


def test_the_bottom_cut_is_a_closed_planar_cap_after_smoothing():
    mesh = extract_mesh(neck_grid(), smooth_iterations=20, max_faces=None)
    genus, pieces, watertight = _genus_pieces(mesh)
    assert (genus, pieces, watertight) == (0, 1, True)
    low_z, cap_area, section = _bottom(mesh)
    assert float(low_z.min()) == pytest.approx(-0.2, abs=1e-9)
    assert np.ptp(low_z) == 0.0  # every vertex of the cut lies exactly on the box's bottom face
    assert cap_area == pytest.approx(section, rel=0.08)  # the cap covers the neck's cross-section
    # without the repair step (the old clean-up) the smoothing bends the cap out of its plane
    old_low_z, _, _ = _bottom(extract_mesh(neck_grid(), smooth_iterations=20, max_faces=None, repair=False))
    assert np.ptp(old_low_z) > 1e-5


def test_a_part_hovering_just_above_the_floor_joins_the_flat_cap():
    grid = neck_grid(shoulder=True)
    raw_low, _, _ = _bottom(extract_mesh(grid, smooth_iterations=0, max_faces=None, repair=False))
    assert ((raw_low > -0.2 + 1e-5) & (raw_low < -0.2 + 1e-3)).any()  # the slab's underside hovers
    mesh = extract_mesh(grid, smooth_iterations=20, max_faces=None)
    low_z, cap_area, _ = _bottom(mesh)
    assert np.ptp(low_z) == 0.0  # nothing between the cap and 1 mm above it
    assert cap_area > np.pi * (0.3 * 0.2) ** 2 + 0.5 * (0.3 * 0.2) * (0.4 * 0.2)  # the slab's foot is in the cap
    assert _genus_pieces(mesh) == (0, 1, True)


def test_the_cap_stays_planar_through_decimation():
    mesh = extract_mesh(neck_grid(), smooth_iterations=20, max_faces=4000)
    assert len(mesh.faces) <= 4100
    low_z, cap_area, section = _bottom(mesh, band_m=1e-4)  # no vertex hovers a hair above the cap
    assert np.ptp(low_z) == 0.0
    assert cap_area == pytest.approx(section, rel=0.1)
    assert _genus_pieces(mesh)[2]
