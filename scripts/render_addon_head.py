#!/usr/bin/env python3
"""Render a generated head as the add-on imports it: Workbench (vertex colours) through bpy, headless.

Usage:
    python scripts/render_addon_head.py JOB_DIR OUT.png [--size 512] [--engine WORKBENCH|CYCLES]
    python scripts/render_addon_head.py --strokes examples/head_front.json OUT.png [--weights DIR] [--seed N]

JOB_DIR is a job folder (``s3d generate INPUT --out JOB_DIR``, docs/contracts.md section 6). With
``--strokes`` the whole add-on path runs instead: the add-on is registered, "New sketch" creates the
Grease Pencil object, the stroke JSON's strokes are drawn into it, and Generate (synchronous path)
captures them, starts the backend (``$S3D_BACKEND_PYTHON``, default this Python) and imports the head.
The mesh is imported with the add-on's own importer (``blender_addon.scene.importer.import_job_folder``:
colour attribute ``Col``, material, vertex groups), placed at the origin, and rendered from a three-quarter front view
with an orthographic camera framing the tri-plane box. Workbench needs an OpenGL context (Mesa EGL works
headless here); ``--engine CYCLES`` renders on the CPU with few samples instead. The PNG is written
atomically. Grease Pencil is never rendered (that needs a GL context the add-on does not rely on).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_addon.scene.importer import import_job_folder  # noqa: E402


def generate_from_strokes(ctx, strokes_path: Path, args):
    """Draw a stroke JSON (normalized frame) as Grease Pencil and run the add-on's Generate on it."""
    import json

    import numpy as np

    import blender_addon
    from blender_addon.scene.sketch_setup import add_stroke
    from blender_addon.scene.stroke_projection import BOX_SIZE_M

    os.environ.setdefault("S3D_BACKEND_PYTHON", sys.executable)
    if args.weights:
        os.environ["S3D_WEIGHTS_DIR"] = str(Path(args.weights).resolve())
    blender_addon.register()
    bpy.ops.s3d.new_sketch()
    gp = ctx.active_object
    drawing = gp.data.layers["Lines"].current_frame().drawing
    doc = json.loads(strokes_path.read_text())
    for stroke in doc["strokes"]:
        uv = np.asarray(stroke["points"], dtype=np.float64)
        xz = np.c_[(uv[:, 0] - 0.5) * BOX_SIZE_M, (0.5 - uv[:, 1]) * BOX_SIZE_M]  # the front view of the box
        add_stroke(drawing, np.c_[xz, np.zeros(len(xz))], float(stroke.get("width", 0.004)) * BOX_SIZE_M / 2)
    s = ctx.scene.s3d
    s.seed, s.resolution, s.views = args.seed, args.resolution, 8
    bpy.ops.s3d.generate()
    head = ctx.active_object
    gp.hide_render = gp.hide_viewport = True  # only the head in the picture
    head.location = (0.0, 0.0, 0.0)
    return head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("job_dir", nargs="?", default="")
    p.add_argument("out")
    p.add_argument("--strokes", default="", help="stroke JSON to draw as Grease Pencil and Generate from")
    p.add_argument("--weights", default="", help="weights folder for --strokes (default: the backend's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", default="192")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--engine", choices=("WORKBENCH", "CYCLES"), default="WORKBENCH")
    p.add_argument("--name", default="S3D head")
    args = p.parse_args(argv)

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    ctx = bpy.context
    ctx.scene.cursor.location = (0.0, 0.0, 0.0)
    if args.strokes:
        head = generate_from_strokes(ctx, Path(args.strokes), args)
    else:
        head = import_job_folder(ctx, args.job_dir, args.name)
    centre = sum((head.matrix_world @ Vector(c) for c in head.bound_box), Vector()) / 8.0
    extent = max(head.dimensions) or 0.4

    cam_data = bpy.data.cameras.new("Camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = extent * 1.25
    cam = bpy.data.objects.new("Camera", cam_data)
    ctx.scene.collection.objects.link(cam)
    az = math.radians(-30.0)  # three-quarter view from the front-left of the viewer (face looks along -Y)
    direction = Vector((math.sin(az), -math.cos(az), 0.12)).normalized()
    cam.location = centre + direction * 2.0
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    ctx.scene.camera = cam

    scene = ctx.scene
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.film_transparent = False
    if args.engine == "WORKBENCH":
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "VERTEX"  # the active colour attribute: Col
        shading.show_cavity = True
        shading.show_specular_highlight = False
        scene.display.render_aa = "8"
    else:
        scene.render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = 16
        world = bpy.data.worlds.new("World")
        world.color = (0.8, 0.8, 0.8)
        scene.world = world
        light = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
        light.rotation_euler = (math.radians(50), 0.0, math.radians(-30))
        scene.collection.objects.link(light)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.92, 0.92, 0.92)

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{os.getpid()}.png")
    scene.render.filepath = str(tmp)
    bpy.ops.render.render(write_still=True)
    os.replace(tmp, out)
    print(f"rendered {head.name} ({len(head.data.vertices)} vertices, groups {[g.name for g in head.vertex_groups]}) "
          f"with {args.engine} -> {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
