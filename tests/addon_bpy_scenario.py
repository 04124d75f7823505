"""The add-on end to end under the ``bpy`` module, run by tests/test_addon.py in a subprocess.

Usage: python tests/addon_bpy_scenario.py --zip Z --workdir W --backend-python P --weights D --dead-python X

Installs the extension zip, enables it, draws a face with the Grease Pencil Python API, captures it,
runs Generate's synchronous path against a real backend process, undoes, kills the backend and
generates again (restart), regenerates from a painted mask, makes variations, tries a dead backend,
imports a recorded multi-class job folder, saves the drawing as a .blend (input of the batch test)
and disables the add-on. It records what it observed in ``W/report.json`` (and arrays in
``W/arrays.npz``); the assertions live in the pytest file. Only this script touches bpy.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import bpy
import numpy as np

PKG = "bl_ext.user_default.s3d_sketch_to_head"


def names():
    return sorted(o.name for o in bpy.data.objects)


def draw_face(gp_obj) -> list[np.ndarray]:
    """Strokes of a simple front-view face, written with the GPv3 bulk API; returns world (x, z) per stroke."""
    t = np.linspace(0, 2 * np.pi, 48)
    strokes_xz = [
        np.stack([0.075 * np.cos(t), -0.01 + 0.1 * np.sin(t)], 1),                  # face outline
        np.stack([-0.03 + 0.012 * np.cos(t[:20]), 0.02 + 0.006 * np.sin(t[:20])], 1),  # left eye
        np.stack([0.03 + 0.012 * np.cos(t[:20]), 0.02 + 0.006 * np.sin(t[:20])], 1),   # right eye
        np.array([[0.0, 0.01], [-0.008, -0.03], [0.006, -0.032]]),                   # nose
        np.array([[-0.025, -0.055], [0.0, -0.06], [0.025, -0.055]]),                 # mouth
    ]
    layer = gp_obj.data.layers["Lines"]
    drawing = layer.current_frame().drawing
    drawing.add_strokes([len(s) for s in strokes_xz])
    # the sketch object is rotated +90 deg about X: local (x, y, 0) is world (x, 0, y)
    local = np.concatenate([np.c_[s[:, 0], s[:, 1], np.zeros(len(s))] for s in strokes_xz]).astype(np.float32)
    drawing.attributes["position"].data.foreach_set("vector", local.ravel())
    radius = drawing.attributes.get("radius") or drawing.attributes.new("radius", "FLOAT", "POINT")
    radius.data.foreach_set("value", np.full(len(local), 0.0015, np.float32))
    return strokes_xz


def describe_head(obj) -> tuple[dict, dict]:
    me = obj.data
    info = {"name": obj.name, "type": obj.type, "location": list(obj.location), "vertices": len(me.vertices),
            "faces": len(me.polygons), "color_attributes": [(a.name, a.data_type, a.domain) for a in me.color_attributes],
            "vertex_groups": [g.name for g in obj.vertex_groups],
            "materials": [m.name for m in me.materials],
            "links": [], "props": {}}
    if me.materials:
        mat = me.materials[0]
        info["links"] = [(l.from_node.type, l.from_socket.name, l.to_node.type, l.to_socket.name) for l in mat.node_tree.links]
        info["attribute_node_names"] = [n.attribute_name for n in mat.node_tree.nodes if n.type == "ATTRIBUTE"]
    for k in ("s3d_seed", "s3d_sketch_sha256", "s3d_device", "s3d_job_folder", "s3d_mask_image"):
        v = obj.get(k)
        info["props"][k] = v if isinstance(v, (int, float, str)) else None
    w = obj.get("s3d_weights_sha256")
    info["props"]["s3d_weights_sha256"] = w.to_dict() if hasattr(w, "to_dict") else None
    img = bpy.data.images.get(str(obj.get("s3d_mask_image", "")))
    info["mask_image"] = {"exists": img is not None, "packed": bool(img and img.packed_file), "size": list(img.size) if img else None}
    arrays = {}
    col = me.color_attributes.get("Col")
    if col is not None:
        buf = np.empty(len(me.vertices) * 4, np.float32)
        col.data.foreach_get("color_srgb", buf)
        arrays["col"] = np.round(buf.reshape(-1, 4)[:, :3] * 255).astype(np.uint8)
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    arrays["co"] = co.reshape(-1, 3)
    groups = np.full(len(me.vertices), -1, np.int32)
    multi = 0
    for v in me.vertices:
        if len(v.groups) > 1:
            multi += 1
        if len(v.groups):
            groups[v.index] = v.groups[0].group
    info["vertices_in_several_groups"] = multi
    arrays["group"] = groups
    return info, arrays


class CheckingLayout:
    """A stand-in for ``UILayout`` that checks every call against Blender's RNA (panels cannot draw headless)."""

    ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
    FUNCS = bpy.types.UILayout.bl_rna.functions

    def __init__(self, calls):
        self.calls = calls
        self.enabled = self.active = self.alert = True

    def _check(self, fn, kw):
        params = {p.identifier for p in self.FUNCS[fn].parameters}
        bad = set(kw) - params
        assert not bad, f"{fn}() has no parameter(s) {bad}"
        if "icon" in kw:
            assert kw["icon"] in self.ICONS, f"unknown icon {kw['icon']!r}"
        self.calls.append(fn)

    def _sub(self, *a, **kw):
        return CheckingLayout(self.calls)

    box = column = row = split = _sub

    def prop(self, data, prop, **kw):
        assert prop in data.bl_rna.properties.keys(), f"{type(data).__name__} has no property {prop!r}"
        self._check("prop", kw)

    def operator(self, idname, **kw):
        mod, name = idname.split(".")
        try:
            getattr(getattr(bpy.ops, mod), name).get_rna_type()
        except KeyError:
            raise AssertionError(f"no operator {idname!r}") from None
        self._check("operator", kw)

    def label(self, **kw):
        self._check("label", kw)

    def progress(self, **kw):
        self._check("progress", kw)

    def template_ID(self, data, prop, **kw):
        assert prop in data.bl_rna.properties.keys()
        self._check("template_ID", kw)


class _Self:
    """``self`` for an unbound draw(): the layout plus the attributes of a real data-block."""

    def __init__(self, layout, base=None):
        self.layout, self._base = layout, base

    def __getattr__(self, name):
        return getattr(self._base, name)


def draw_everything(mod, report_extra: dict) -> list[str]:
    calls: list[str] = []
    problems: list = []
    ctx = bpy.context
    status, s = ctx.window_manager.s3d_status, ctx.scene.s3d
    prefs = ctx.preferences.addons[PKG].preferences
    for source in ("GREASE_PENCIL", "IMAGE", "MASK"):
        for running in (False, True):
            s.source, status.running = source, running
            status.device, status.device_reason, status.last_error = "cpu", "no CUDA", "a long error " * 12
            mod.ui.panel.S3D_PT_main.draw(_Self(CheckingLayout(calls)), ctx)
    s.source, s.live_preview, status.preview_stage = "GREASE_PENCIL", True, "Live preview failed: a long reason " * 3
    mod.ui.panel.S3D_PT_main.draw(_Self(CheckingLayout(calls)), ctx)
    s.live_preview, status.preview_stage = False, ""
    saved = prefs.backend_python
    for env_running in (False, True):
        status.env_running, status.env_error = env_running, "" if env_running else "pip failed"
        mod.ui.preferences.S3DPreferences.draw(_Self(CheckingLayout(calls), prefs), ctx)
        prefs.backend_python = "/nonexistent/python"  # the panel's "no backend environment" box
        os.environ.pop("S3D_BACKEND_PYTHON", None)
        mod.ui.panel.S3D_PT_main.draw(_Self(CheckingLayout(calls)), ctx)
        problems.append(mod.ui.preferences.backend_python_problem(prefs))
    prefs.backend_python = saved
    report_extra["backend_python_problems"] = problems
    report_extra["backend_python_problem_ok"] = mod.ui.preferences.backend_python_problem(prefs)
    status.running = status.env_running = False
    status.last_error = status.device = ""
    s.source = "GREASE_PENCIL"
    return calls


def live_preview_step(mod, gp, scene) -> dict:
    """Live preview on, two strokes: the draft of the first is cancelled on the backend, the second's is
    applied to the one preview object; the draft job folders are gone; toggle off removes the preview."""
    import re

    glue = mod.scene.live_preview_blender
    s = scene.s3d
    s.source, s.gp_object, s.live_preview = "GREASE_PENCIL", gp, True
    drawing = gp.data.layers["Lines"].current_frame().drawing

    def tick_until(pred, limit_s):
        t0 = time.monotonic()
        while True:
            glue.tick(bpy.context)
            if pred() or time.monotonic() - t0 > limit_s:
                return pred()
            time.sleep(0.05)

    t = np.linspace(0.0, 1.0, 6)
    mod.scene.sketch_setup.add_stroke(drawing, np.c_[-0.02 + 0.04 * t, 0.06 + 0.005 * t, 0 * t], 0.0015)  # a brow line
    out = {"first_started": tick_until(lambda: glue.state().running is not None, 5.0)}
    first = glue.state().running
    mod.scene.sketch_setup.add_stroke(drawing, np.c_[-0.01 + 0.02 * t, -0.075 + 0 * t, 0 * t], 0.0015)  # a chin line
    glue.tick(bpy.context)
    out["first_cancel_asked"] = first.handle.cancel_event.is_set()
    t0 = time.monotonic()
    out["applied"] = tick_until(lambda: glue.state().counts["applied"] >= 1, 120.0)
    out["seconds_to_preview"] = round(time.monotonic() - t0, 2)
    first.handle.join(30)
    try:
        first.handle.result()
        out["first_outcome"] = "finished"
    except Exception as e:  # JobCancelled: "job <id> cancelled"
        out["first_outcome"] = f"{type(e).__name__}: {e}"
        m = re.search(r"job (\S+) ", str(e))
        if m:
            client = mod.transport.backend_process.backend_for(mod.ui.preferences.backend_config()).client()
            out["first_backend_state"] = client.status(m.group(1))["state"]
    obj = glue.preview_object()
    previews = [o.name for o in bpy.data.objects if o.get(glue.PREVIEW_PROP)]
    out.update({"preview_objects": previews, "preview_vertices": len(obj.data.vertices) if obj else 0,
                "preview_key_is_drawing": obj is not None and obj.get("s3d_preview_key") == glue.drawing_key(bpy.context),
                "counts": dict(glue.state().counts), "error": glue.state().last_error,
                "draft_folders_left": [r.out_dir for r in glue._Live.requests if Path(r.out_dir).exists()],
                "colour_attribute": bool(obj and obj.data.color_attributes.get("Col"))})
    s.live_preview = False
    out["after_off"] = [o.name for o in bpy.data.objects if o.get(glue.PREVIEW_PROP)]
    # the strokes stay out of the later steps' drawing
    drawing.remove_strokes(indices=[len(drawing.strokes) - 2, len(drawing.strokes) - 1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    for a in ("--zip", "--workdir", "--backend-python", "--weights", "--dead-python", "--recorded-job"):
        ap.add_argument(a, required=True)
    args = ap.parse_args(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:])
    work = Path(args.workdir)
    report: dict = {"steps": []}
    arrays: dict = {}

    def step(name):
        report["steps"].append(name)
        print(f"[scenario] {name}", flush=True)

    try:
        step("install")
        r = bpy.ops.extensions.package_install_files(filepath=args.zip, repo="user_default", enable_on_install=True)
        report["install_result"] = sorted(r)
        report["enabled"] = PKG in bpy.context.preferences.addons
        mod = sys.modules[PKG]
        report["module_file"] = mod.__file__
        report["torch_imported"] = "torch" in sys.modules
        prefs = bpy.context.preferences.addons[PKG].preferences
        prefs.backend_python = args.backend_python
        prefs.weights_dir = args.weights
        prefs.output_dir = str(work / "jobs")
        prefs.startup_timeout_s = 120.0
        scene = bpy.context.scene
        status = bpy.context.window_manager.s3d_status

        step("draw panel and preferences with an RNA-checking layout")
        report["draw_calls"] = sorted(set(draw_everything(mod, report)))

        step("poll without drawing")
        for o in list(bpy.data.objects):
            o.select_set(False)
        bpy.context.view_layer.objects.active = None
        report["generate_poll_without_input"] = bpy.ops.s3d.generate.poll()

        step("new sketch and draw")
        ts = scene.tool_settings
        ts.gpencil_sculpt.lock_axis, ts.gpencil_stroke_placement_view3d = "VIEW", "CURSOR"
        bpy.ops.s3d.new_sketch()
        report["drawing_plane_after"] = [ts.gpencil_sculpt.lock_axis, ts.gpencil_stroke_placement_view3d]
        ts.gpencil_sculpt.lock_axis = "VIEW"
        report["drawing_plane_changes"] = mod.scene.sketch_setup.set_drawing_plane(bpy.context)
        report["drawing_plane_changes_again"] = mod.scene.sketch_setup.set_drawing_plane(bpy.context)
        gp = bpy.context.active_object
        report["sketch"] = {"name": gp.name, "type": gp.type, "layers": [l.name for l in gp.data.layers],
                            "guide_locked": gp.data.layers["S3D Guide"].lock}
        strokes = draw_face(gp)
        for i, s in enumerate(strokes):
            arrays[f"stroke{i}"] = s
        report["generate_poll_with_drawing"] = bpy.ops.s3d.generate.poll()

        step("capture")
        doc = mod.scene.gp_capture.capture(gp, scene, "FRONT")
        report["captured"] = doc
        report["capture_hash"] = mod.scene.gp_capture.stroke_hash(doc)
        cam = bpy.data.objects.new("Front camera", bpy.data.cameras.new("Front camera"))
        scene.collection.objects.link(cam)
        cam.location, cam.rotation_euler = (0.0, -2.0, 0.0), (np.pi / 2, 0.0, 0.0)  # looks along +Y
        cam.data.type, cam.data.ortho_scale = "ORTHO", 0.4
        scene.camera = cam
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 512, 512, 100
        report["captured_camera"] = mod.scene.gp_capture.capture(gp, scene, "CAMERA")

        step("generate")
        s = scene.s3d
        s.resolution, s.views, s.seed = "64", 4, 3
        scene.cursor.location = (0.5, 0.0, 0.0)
        bpy.ops.ed.undo_push(message="before generate")
        report["before_generate"] = names()
        meshes_before = len(bpy.data.meshes)
        t0 = time.monotonic()
        report["generate_result"] = sorted(bpy.ops.s3d.generate())
        report["generate_seconds"] = round(time.monotonic() - t0, 2)
        head = bpy.context.active_object
        report["head"], head_arrays = describe_head(head)
        arrays.update({f"head_{k}": v for k, v in head_arrays.items()})
        report["status_device"] = status.device
        report["status_warning"] = status.last_warning
        report["head_warnings_prop"] = head.get("s3d_warnings")
        report["after_generate"] = names()
        report["backend_pid"] = mod.transport.backend_process.running_backends()[0].pid
        report["check_backend"] = sorted(bpy.ops.s3d.check_backend())

        step("undo")
        bpy.ops.ed.undo()
        report["after_undo"] = names()
        report["meshes_after_undo_equal"] = len(bpy.data.meshes) == meshes_before

        # memfile undo frees every Python reference to ID data: fetch them again
        scene = bpy.context.scene
        s = scene.s3d
        gp_name = report["sketch"]["name"]

        step("backend crash and restart")
        proc = mod.transport.backend_process.running_backends()[0]
        os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.5)
        report["generate_after_crash"] = sorted(bpy.ops.s3d.generate())
        report["restarts"] = proc.restarts
        report["backend_pid_after_restart"] = proc.pid
        report["after_restart_objects"] = names()
        head = bpy.context.active_object

        step("regenerate from edited mask")
        img = bpy.data.images[head["s3d_mask_image"]]
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
        px = px.reshape(h, w, 4)
        px[h - h // 4:, :, :3] = np.array([0, 0, 204]) / 255.0  # Blender rows go up: paint the image's top quarter as hair
        img.pixels.foreach_set(px.ravel())
        ids = mod.generation.mask_ids_from_image(img)
        report["painted_ids_top"] = int(np.bincount(ids[: h // 4].ravel(), minlength=19).argmax())
        old_mesh, loc = head.data.name, list(head.location)
        report["regenerate_poll"] = bpy.ops.s3d.regenerate_from_mask.poll()
        report["regenerate_result"] = sorted(bpy.ops.s3d.regenerate_from_mask())
        report["regenerate"] = {"same_object": bpy.context.active_object == head, "mesh_replaced": head.data.name != old_mesh,
                                "location_kept": list(head.location) == loc, "job_folder": head["s3d_job_folder"],
                                "seed": head["s3d_seed"]}

        step("variations")
        s.variations = 2
        before_var = set(names())
        report["variations_result"] = sorted(bpy.ops.s3d.variations())
        new = [bpy.data.objects[n] for n in sorted(set(names()) - before_var)]
        report["variations"] = [{"name": o.name, "x": o.location.x, "seed": o["s3d_seed"]} for o in new]

        step("target faces and quad remesh")
        report["min_max_faces"] = [mod.generation.MIN_FACES, mod.generation.MAX_FACES]
        s.resolution, s.max_faces = "192", 20000
        t0 = time.monotonic()
        report["target_result"] = sorted(bpy.ops.s3d.generate())
        head = bpy.context.active_object
        result = json.loads((Path(head["s3d_job_folder"]) / "result.json").read_text())
        report["target"] = {"faces": len(head.data.polygons), "seconds": round(time.monotonic() - t0, 2),
                            "result": {k: v for k, v in result.items() if "face" in k or k == "mesh"}}
        s.max_faces = 500
        report["target_too_small_poll"] = bpy.ops.s3d.generate.poll()
        s.resolution, s.max_faces, s.quad_remesh, s.texture = "64", 2000, True, True
        t0 = time.monotonic()
        report["quad_result"] = sorted(bpy.ops.s3d.generate())
        head = bpy.context.active_object
        sizes = np.empty(len(head.data.polygons), np.int32)
        head.data.polygons.foreach_get("loop_total", sizes)
        info, quad_arrays = describe_head(head)
        lab = head.data.attributes.get("s3d_label")
        report["quad"] = {"faces": len(sizes), "face_sizes": sorted({int(x) for x in sizes}),
                          "seconds": round(time.monotonic() - t0, 2), "color_attributes": info["color_attributes"],
                          "vertex_groups": info["vertex_groups"], "materials": info["materials"],
                          "label_attribute": lab is not None, "warnings": head.get("s3d_warnings"),
                          "uv_layers": [u.name for u in head.data.uv_layers],
                          "image_nodes": [n.image.name for m in head.data.materials for n in m.node_tree.nodes
                                          if n.type == "TEX_IMAGE" and n.image],
                          "texture_file": (Path(head["s3d_job_folder"]) / "texture.png").is_file()}
        arrays["quad_col"] = quad_arrays.get("col", np.zeros((0, 3), np.uint8))
        s.max_faces, s.quad_remesh, s.texture = 0, False, False

        step("symmetric head")
        from backend.symmetry import mirror_distance

        s.resolution, s.symmetric = "64", True
        report["symmetric_result"] = sorted(bpy.ops.s3d.generate())
        head = bpy.context.active_object
        co = np.empty(len(head.data.vertices) * 3, np.float32)
        head.data.vertices.foreach_get("co", co)
        tris = np.array([list(p.vertices) for p in head.data.polygons if len(p.vertices) == 3])
        report["symmetric_max_mm"] = float(mirror_distance(co.reshape(-1, 3), tris).max() * 1000.0)
        report["symmetric_option"] = json.loads((Path(head["s3d_job_folder"]) / "result.json").read_text())[
            "options"]["symmetric"]
        s.symmetric = False
        s.pick_hair, s.hair_color, s.pick_lips = True, (1.0, 0.0, 0.5), False
        report["picked_colours"] = mod.generation.build_request(
            bpy.context, mod.generation.GenerateSettings.from_scene(bpy.context), seed=1).options.get("colors")
        s.pick_hair = False

        step("async path (worker thread -> queue -> main-thread timer, ticked by hand)")
        gen = mod.generation
        before_async = names()
        gen.start_async(bpy.context, [gen.build_request(bpy.context, gen.GenerateSettings.from_scene(bpy.context), seed=9)])
        report["async_timer_registered"] = bpy.app.timers.is_registered(gen.JOBS.timer)
        report["async_running_during"] = bool(status.running)
        report["generate_poll_while_running"] = bpy.ops.s3d.generate.poll()
        ret, stages, t0 = 0.1, [], time.monotonic()
        while ret is not None and time.monotonic() - t0 < 90:
            time.sleep(0.05)
            ret = gen.JOBS.timer()
            if status.stage and (not stages or stages[-1] != status.stage):
                stages.append(status.stage)
        new_async = sorted(set(names()) - set(before_async))
        report["async"] = {"finished": ret is None, "new_objects": new_async, "stages": stages,
                           "running_after": bool(status.running), "progress": status.progress,
                           "seed": bpy.data.objects[new_async[0]]["s3d_seed"] if new_async else None,
                           "error": status.last_error}
        if bpy.app.timers.is_registered(gen.JOBS.timer):
            bpy.app.timers.unregister(gen.JOBS.timer)
        before_cancel = names()
        gen.start_async(bpy.context, [gen.build_request(bpy.context, gen.GenerateSettings.from_scene(bpy.context), seed=10)])
        gen.cancel_async()
        ret, t0 = 0.1, time.monotonic()
        while ret is not None and time.monotonic() - t0 < 60:
            time.sleep(0.05)
            ret = gen.JOBS.timer()
        report["async_cancel"] = {"finished": ret is None, "error": status.last_error, "unchanged": names() == before_cancel}
        if bpy.app.timers.is_registered(gen.JOBS.timer):
            bpy.app.timers.unregister(gen.JOBS.timer)
        report["env_dir"] = str(mod.ui.preferences.default_env_dir())

        step("live preview against the backend (ticked by hand)")
        report["live_preview"] = live_preview_step(mod, bpy.data.objects[gp_name], scene)

        step("job folders kept to the newest N, never one of a head in the file")
        jobs_root = mod.ui.preferences.job_root(bpy.context)
        n_real = len(mod.transport.job_folders.job_folders(jobs_root))  # the later tests read these: keep them all
        for i in range(3):
            (jobs_root / f"old_head_seed{i}_2020010{i + 1}-000000-000000").mkdir(parents=True)
        holder = bpy.data.objects.new("Old head", None)  # a head of the oldest folder, still in the file
        holder["s3d_job_folder"] = str(jobs_root / "old_head_seed0_20200101-000000-000000")
        scene.collection.objects.link(holder)
        in_use = sorted(str(o["s3d_job_folder"]) for o in bpy.data.objects if o.get("s3d_job_folder"))
        prefs.keep_job_folders = n_real
        removed = mod.generation.prune_jobs(bpy.context)
        prefs.keep_job_folders = 10
        bpy.data.objects.remove(holder)
        report["prune"] = {"removed": sorted(x.name for x in removed), "in_use": in_use,
                           "in_use_exist": all(Path(f).is_dir() for f in in_use),
                           "left": sorted(x.name for x in mod.transport.job_folders.job_folders(jobs_root))}

        step("dead backend")
        mod.transport.backend_process.stop_all()
        prefs.backend_python = args.dead_python
        before_dead = names()
        meshes_dead = len(bpy.data.meshes)
        try:
            bpy.ops.s3d.generate()
            report["dead_error"] = None
        except RuntimeError as e:
            report["dead_error"] = str(e)
        report["dead_scene_unchanged"] = names() == before_dead and len(bpy.data.meshes) == meshes_dead
        report["dead_status_error"] = status.last_error

        step("recorded multi-class job")
        obj = mod.scene.importer.import_job_folder(bpy.context, args.recorded_job, "Recorded", sketch_sha256="x")
        info, rec_arrays = describe_head(obj)
        report["recorded"] = info
        report["recorded_warnings"] = {"prop": obj.get("s3d_warnings"),
                                       "import_warnings": mod.generation.import_warnings([obj])}
        arrays.update({f"rec_{k}": v for k, v in rec_arrays.items()})

        step("save sketch blend")
        batch_in = work / "batch_in"
        batch_in.mkdir(exist_ok=True)
        gp = bpy.data.objects[gp_name]
        for o in list(bpy.data.objects):
            if o != gp:
                bpy.data.objects.remove(o)
        bpy.ops.wm.save_as_mainfile(filepath=str(batch_in / "drawn_face.blend"), copy=True)

        step("disable")
        prefs.backend_python = args.backend_python
        live = mod.transport.backend_process.backend_for(mod.ui.preferences.backend_config())
        live.client()
        pid = live.pid
        bpy.ops.preferences.addon_disable(module=PKG)
        time.sleep(0.3)
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        report["backend_alive_after_disable"] = alive
        report["operators_after_disable"] = hasattr(bpy.types, "S3D_OT_generate")
    except Exception:
        report["exception"] = traceback.format_exc()
    (work / "report.json").write_text(json.dumps(report, indent=1, default=str))
    np.savez(work / "arrays.npz", **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
