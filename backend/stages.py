"""The stages of one job as plain functions over small typed values (docs/design.md section 1).

:func:`backend.pipeline.generate` calls them in order::

    intake -> Sketch -> sketch_to_mask -> Mask -> planes -> Planes -> density_grid -> mesh -> HeadMesh
           -> vertex_colors -> HeadMesh (normals, labels, colours) + ColourViews -> export -> Outputs
           -> result_record -> result.json

Each stage raises its own module's coded error (``IntakeError``, ``FramingError``, ``MeshError``,
``OutputError``, all :class:`backend.errors.CodedError`); the pipeline turns them into
``PipelineError`` in one place. ``check_cancel`` arguments are called between units of work and raise
``JobCancelled``.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backend.field_query import FieldQuery
from backend.labels import CELEBAMASK_HQ, LabelSet
from backend.result_record import input_sha256, result_record  # noqa: F401  (the last stage)
from backend.stage_values import ColourViews, HeadMesh, Mask, Outputs, Planes, Sketch

#: Side of the framed sketch and mask the networks see, pixels.
FRAMED_SIZE = 512


def intake(source: Any, name: str, from_mask: bool, no_frame: bool, labels: LabelSet = CELEBAMASK_HQ) -> Sketch:
    """Read the input (path, bytes, stroke dict or array) and align it onto the canonical framing; a mask
    input is read in ``labels``' ids or palette and framed with its landmarks (backend/align.py).

    Raises:
        IntakeError / StrokeError: unreadable, blank or over-limit input; FramingError: no content.
    """
    from backend.align import frame_mask, frame_sketch
    from backend.input_limits import load_mask_checked, load_sketch_checked

    if from_mask:
        mask_in = load_mask_checked(source, labels)
        mask512, transform = frame_mask(mask_in, FRAMED_SIZE, auto_frame=not no_frame, labels=labels)
        info = {"kind": "mask", "size": [int(mask_in.shape[1]), int(mask_in.shape[0])], "name": name}
        return Sketch(None, None, mask_in, mask512, transform, info, {"kind": "mask"})
    sk = load_sketch_checked(source)
    sketch512, transform = frame_sketch(sk.image, FRAMED_SIZE, auto_frame=not no_frame)
    info = {"kind": sk.kind, "size": list(sk.size), "mode": sk.source_mode, "name": name, "notes": sk.notes}
    return Sketch(sk.image, sketch512, None, None, transform, info, sk.intake)


def _predict_ids(net: Any, sketch512: np.ndarray, device: str, mirror_average: bool | None = None) -> np.ndarray:
    """SketchToMask on a framed ``(512, 512)`` uint8 sketch -> ``(512, 512)`` uint8 label ids (argmax; mirror
    averaged when the card says so or as ``mirror_average`` says, :meth:`SketchToMask.predict_ids`)."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(sketch512.astype(np.float32) / 255.0)[None, None].to(device)
        return net.predict_ids(x, mirror_average)[0].to(torch.uint8).cpu().numpy()


def predict_mask_with_refined_framing(net: Any, image: np.ndarray, sketch512: np.ndarray, transform: Any,
                                      device: str = "cpu", mirror_average: bool | None = None,
                                      labels: LabelSet = CELEBAMASK_HQ) -> tuple[np.ndarray, np.ndarray, Any]:
    """The sketch -> mask step of :func:`backend.pipeline.generate`, shared with ``s3d-eval``'s real-sketch
    checks so both see the same mask: predict on the first-pass framing, and when that framing was
    automatic, reframe from the first mask's eyes and mouth (or head box;
    :func:`backend.align.refine_with_landmarks`) and predict again; for a whole-body drawing (the first mask's
    head small in the drawing, label sets with the switch on) the first mask itself is framed to the head
    (:func:`backend.whole_body_framing.reframe_head_mask`).

    Args:
        net: a loaded :class:`SketchToMask`.
        image: the normalised input sketch ``(H, W)`` uint8, dark on white (``load_sketch(...).image``).
        sketch512, transform: its first-pass framing, ``backend.align.frame_sketch(image, 512)``.
        mirror_average: None = the card's setting.
        labels: the network's label set; sets with landmark classes and reframing on are reframed
            (``backend.align_landmarks.LANDMARK_CLASSES`` and ``LANDMARK_REFRAMING``).

    Returns:
        ``(sketch (512, 512) uint8, label ids (512, 512) uint8, FramingTransform)`` of the final pass.
    """
    from backend.align import refine_with_landmarks, resample_sketch
    from backend.whole_body_framing import reframe_head_mask

    mask512 = _predict_ids(net, sketch512, device, mirror_average)
    head = reframe_head_mask(transform, mask512, labels)
    if head is not None:  # a whole-body drawing: its head is framed from this mask, not predicted again
        mask512, transform = head
        return resample_sketch(image, transform), mask512, transform
    if transform.auto_framed:
        refined = refine_with_landmarks(transform, mask512, labels=labels)
        if refined is not None:
            transform = refined
            sketch512 = resample_sketch(image, transform)
            mask512 = _predict_ids(net, sketch512, device, mirror_average)
    return sketch512, mask512, transform


def sketch_to_mask(sketch: Sketch, net: Any, device: str, draft: bool = False,
                   labels: LabelSet = CELEBAMASK_HQ) -> Mask:
    """Label ids (in ``labels``) for the job: the sketch network's (with the landmark reframing), or a mask
    input as is, plus the plausibility warnings (backend/mask_plausibility.py) for sketches. ``draft``: one
    prediction per pass, without the card's mirror average (half the network's time, for live previews)."""
    from backend.align import unframe_mask
    from backend.mask_plausibility import check_mask

    if sketch.mask is not None:
        return Mask(sketch.mask_framed, sketch.mask, None, sketch.transform, [])
    framed, ids, transform = predict_mask_with_refined_framing(net, sketch.image, sketch.framed, sketch.transform,
                                                                device, False if draft else None, labels)
    ids_input = unframe_mask(ids, transform)
    return Mask(ids, ids_input, framed, transform, check_mask(ids_input, sketch.image, labels).warnings)


def planes(mask: Mask, m2t: Any, seed: int, device: str, symmetric: bool = False, colors: dict | None = None) -> Planes:
    """The tri-planes of ``mask`` with z from ``seed`` (``Mask2Triplane.sample_z``), once per job; with
    ``symmetric`` the field is queried mirror-symmetrised (``Mask2Triplane.query_symmetric``). With a
    colour-code generator, z comes from the seed's colour code with the artist's ``colors`` (``#rrggbb`` per
    group, already validated) set in it, and the code is kept on the result for :func:`colour_picks`."""
    import torch

    code = None
    with torch.inference_mode():
        if getattr(m2t, "colour_mapping", None) is not None:
            from backend.models.colour_code import CODE_GROUPS, group_index, with_picks

            picked = {g: hex_to_srgb(v) for g, v in (colors or {}).items() if g in CODE_GROUPS}
            z = m2t.z_from_colours(with_picks(m2t.sample_colour_code(seed, 1), picked)).to(device)
            albedo = with_picks(m2t.sample_colour_albedo(seed, 1), picked)
            code = {g: albedo[0, group_index(g)].numpy().astype(np.float64) for g in CODE_GROUPS}
        else:
            z = m2t.sample_z(seed, 1, device)
        p = m2t.planes_from_mask(torch.from_numpy(mask.framed.astype(np.int64))[None].to(device), z)
    return Planes(FieldQuery(m2t, p, device, symmetric=symmetric), float(m2t.surface_sigma), code)


def hex_to_srgb(value: str) -> tuple[float, float, float]:
    """``#rrggbb`` -> sRGB floats in [0, 1]."""
    return tuple(int(value[i:i + 2], 16) / 255.0 for i in (1, 3, 5))


def density_grid(planes: Planes, resolution: int, check_cancel: Callable[[], None]) -> Any:
    """The coarse-to-fine density grid (``backend.mesh.DensityGrid``) at ``resolution`` cells a side.

    Raises:
        MeshError: the field has no surface in the box.
    """
    from backend.mesh import density_grid as sample_grid

    return sample_grid(planes.field.density, resolution, planes.level, levels=3 if resolution >= 128 else 2,
                       cancel=check_cancel)


def mesh(grid: Any, smooth_iterations: int, max_faces: int | None, symmetric: bool = False) -> HeadMesh:
    """Marching cubes, largest component, Taubin smoothing and decimation (``max_faces`` 0/None = off);
    ``symmetric``: the grid is mirror-symmetric and the mesh stays so through the smoothing.

    Raises:
        MeshError: ``empty_surface`` / ``surface_fills_box`` / ``degenerate_surface``.
    """
    from backend.mesh import extract_mesh

    m = extract_mesh(grid, smooth_iterations, max_faces or None, symmetric)
    return HeadMesh(m.vertices, m.faces, m.stats, grid.evaluated)


def colour_picks(head: HeadMesh, colors: dict | None, code: dict[str, np.ndarray] | None = None) -> HeadMesh:
    """Named colours on the head's vertex colours (backend/colour_picks.py): each group of the job's colour
    ``code`` (sRGB, :attr:`Planes.colour_code`; groups the view did not show are skipped), then the artist's
    ``colors`` (``#rrggbb``, already validated by ``GenerateOptions``) over them. Unchanged when both are
    empty."""

    from backend.colorspace import srgb_to_linear
    from backend.colour_picks import PICK_GROUPS, apply_picks, parse_picks
    from backend.models.colour_code import ABSENT_COLOUR

    picks = {g: srgb_to_linear(np.asarray(c, np.float64)) for g, c in (code or {}).items()
             if g in PICK_GROUPS and not np.all(np.asarray(c) == ABSENT_COLOUR)}
    picks.update(parse_picks(colors or {}))
    if not picks:
        return head
    return replace(head, colours=apply_picks(head.colours, head.labels, picks))


def vertex_colors(head: HeadMesh, planes: Planes, views: int, color_resolution: int, seed: int,
                  check_cancel: Callable[[], None]) -> tuple[HeadMesh, ColourViews]:
    """Normals, semantic labels and colours per vertex: colours blended from ``views`` band-rendered views of
    the field (jitter from ``numpy.random.default_rng(seed)``), labels from the semantic field."""
    from backend.mesh import vertex_classes
    from backend.vertex_colors import (
        RasterMesh,
        blend_vertex_colors,
        render_views,
        standard_views,
        vertex_normals,
    )

    rng = np.random.default_rng(seed)
    vb = head.box_vertices()
    normals = vertex_normals(vb.astype(np.float64), head.faces)
    at_vertices = planes.field(vb, semantic=True)
    labels = vertex_classes(at_vertices["semantic"], head.faces)
    raster_mesh = RasterMesh(vb, head.faces)
    renders = []
    for v in standard_views(views):  # one at a time so that cancel is honoured between views
        check_cancel()
        renders += render_views(raster_mesh, None, planes.field, [v], color_resolution, rng=rng)
    rgb, seen = blend_vertex_colors(vb.astype(np.float64), normals, renders, at_vertices["rgb"])
    return (replace(head, normals=normals, labels=labels, colours=rgb),
            ColourViews([r.view for r in renders], float((seen > 0).mean())))


def export(out_dir: Path, head: HeadMesh, mask: Mask, colour_views: ColourViews, formats: tuple[str, ...],
           view_resolution: int, check_cancel: Callable[[], None], texture_size: int | None = None,
           labels: LabelSet = CELEBAMASK_HQ) -> Outputs:
    """Write the mesh files, mask.png / mask_color.png (``labels``' palette), sketch_framed.png and
    views/*.png into ``out_dir``; with ``texture_size`` also texture.png and the UVs
    (``backend.texture.job_texture``).

    Raises:
        OutputError: a write failed (names the destination; backend.job_output.output_error).
    """
    from backend import export as files_out
    from backend.job_output import output_error
    from backend.previews import render_previews
    from backend.texture import job_texture
    from backend.vertex_colors import RasterMesh

    files: list[str] = []
    baked = job_texture(head.vertices, head.faces, head.normals, head.colours, texture_size)
    check_cancel()
    try:
        files += files_out.write_mesh_files(out_dir, list(formats), head.vertices, head.faces, head.colours,
                                            head.labels, head.normals, baked[0] if baked else None)
        files += files_out.write_mask_files(out_dir, mask.input, labels)
        if mask.sketch_framed is not None:
            files_out.atomic_write_bytes(out_dir / "sketch_framed.png", files_out.png_bytes(mask.sketch_framed))
            files.append("sketch_framed.png")
        check_cancel()
        view_imgs = render_previews(RasterMesh(head.box_vertices(), head.faces), None, head.normals, head.colours,
                                    colour_views.views, view_resolution)
        files += files_out.write_view_files(out_dir, view_imgs)
    except OSError as e:  # the temporary folder is removed by generate's JobOutput
        raise output_error(out_dir, e) from None
    return Outputs(files, baked[1] if baked else None)
