"""Sketch (or mask) -> coloured, labelled head mesh: the one ``generate`` function behind CLI and server.

Stages (docs/design.md section 1; S3D, CVPRW 2025, with pix2pix3D's mask-to-3D generator):

``intake`` (image or stroke JSON -> normalised sketch; or a label map) -> ``framing`` (content box onto
the canonical framing) -> ``sketch_to_mask`` (SketchToMask U-Net, argmax ids) -> ``planes``
(MaskEncoder with z from the seed, TriplaneSynthesis: computed **once** per job) -> ``density_grid``
(coarse to fine) -> ``mesh`` (marching cubes, largest component, Taubin, decimation, metres) ->
``vertex_colors`` (K band-rendered views, visibility-tested cosine blend; semantic class per vertex) ->
``export`` (mesh files, mask.png in the input's pixel frame, mask_color.png, views/*.png: shaded
renders of the finished mesh from the same K cameras, result.json).

Progress: ``progress(stage, fraction)`` is called at the start of each stage and after it with the
overall fraction 0..1. Cancel: ``cancel()`` returns True to abandon the job; it is checked between
stages and between the levels of the grid and the views, raising :class:`JobCancelled`.

Seeds: z comes from ``Mask2Triplane.sample_z(seed)`` and every other random choice (band-rendering
jitter) from ``numpy.random.default_rng(seed)``, so sketch + seed + weights fix the mesh.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backend.errors import CodedError
from backend.labels import LABEL_NAMES, NUM_CLASSES

#: Stages and their share of a typical CPU job's time (for the progress fraction).
STAGES: tuple[tuple[str, float], ...] = (
    ("load_models", 0.02), ("intake", 0.02), ("sketch_to_mask", 0.08), ("planes", 0.05),
    ("density_grid", 0.33), ("mesh", 0.10), ("vertex_colors", 0.32), ("export", 0.08),
)
RESOLUTIONS = (64, 128, 192, 256)
#: Decimation budget range (faces); fewer than MIN_FACES leaves no usable head (1 used to give 0 vertices).
MIN_FACES, MAX_FACES = 1_000, 5_000_000
MESH_FORMATS = ("ply", "glb", "obj")
QUERY_CHUNK = 131_072  # points per decoder call on a GPU: bounded memory (about 60 MB at the lite width)
#: points per decoder call on the CPU: the hidden activations (16 k x 64 floats = 4 MB) stay in cache;
#: measured (s3d bench, docs/performance.md) 1.5-2x faster decoding than 131 072-point chunks on 2 cores
QUERY_CHUNK_CPU = 16_384


class PipelineError(CodedError, RuntimeError):
    """A job that cannot finish. ``code`` is stable (intake, weights, mesh, device codes pass through)."""


class JobCancelled(PipelineError):
    """The job was cancelled between stages."""

    def __init__(self, message: str = "the job was cancelled"):
        super().__init__("cancelled", message)


@dataclass
class GenerateOptions:
    """Options of one job (CLI flags and the HTTP API's ``options`` object).

    Attributes:
        seed: the job's one seed (z and all jitter).
        resolution: marching-cubes grid cells a side (64, 128, 192 or 256).
        views: number of rendered views for the vertex colours and views/*.png (4..12).
        formats: mesh files to write: any of ``ply``, ``glb``, ``obj``.
        no_frame: skip auto-framing (inputs already in the canonical framing, such as SynHead views).
        from_mask: the input is a label map (CelebAMask-HQ ids or palette colours), not a sketch.
        smooth_iterations: Taubin smoothing iterations (0 = off).
        max_faces: decimation budget in faces, ``MIN_FACES``..``MAX_FACES`` (0 or None = off).
        view_resolution: pixels a side of the preview renders views/*.png (the shaded mesh).
        color_resolution: pixels a side of the radiance-field views the vertex colours come from.
    """

    seed: int = 0
    resolution: int = 128
    views: int = 6
    formats: tuple[str, ...] = ("ply",)
    no_frame: bool = False
    from_mask: bool = False
    smooth_iterations: int = 5
    max_faces: int | None = 200_000
    view_resolution: int = 256
    color_resolution: int = 128

    def validate(self) -> "GenerateOptions":
        """Check ranges; return self.

        Raises:
            PipelineError: ``bad_option`` with the option and its allowed values.
        """
        from backend.vertex_colors import MAX_VIEWS, MIN_VIEWS

        def whole(v: Any) -> bool:  # bool is an int subclass: true / false are not numbers here
            return isinstance(v, int) and not isinstance(v, bool)

        if not whole(self.seed) or not 0 <= self.seed < 2 ** 63:
            raise PipelineError("bad_option", f"seed must be a whole number 0..2^63-1, not {self.seed!r}")
        if not whole(self.resolution) or self.resolution not in RESOLUTIONS:
            raise PipelineError("bad_option", f"resolution must be one of {RESOLUTIONS}, not {self.resolution!r}")
        if not whole(self.views) or not MIN_VIEWS <= self.views <= MAX_VIEWS:
            raise PipelineError("bad_option", f"views must be {MIN_VIEWS}..{MAX_VIEWS}, not {self.views!r}")
        fmts = tuple(self.formats) if isinstance(self.formats, (list, tuple)) else ()
        if not fmts or any(not isinstance(f, str) or f not in MESH_FORMATS for f in fmts) or len(set(fmts)) != len(fmts):
            raise PipelineError("bad_option", f"formats must be a non-empty list from {MESH_FORMATS}, not {list(fmts)}")
        self.formats = fmts
        if not whole(self.view_resolution) or not 32 <= self.view_resolution <= 1024:
            raise PipelineError("bad_option", f"view_resolution must be 32..1024 pixels, not {self.view_resolution!r}")
        if not whole(self.color_resolution) or not 32 <= self.color_resolution <= 512:
            raise PipelineError("bad_option", f"color_resolution must be 32..512 pixels, not {self.color_resolution!r}")
        if not whole(self.smooth_iterations) or not 0 <= self.smooth_iterations <= 50:
            raise PipelineError("bad_option", f"smooth_iterations must be 0..50, not {self.smooth_iterations!r}")
        if self.max_faces is not None and (not whole(self.max_faces) or not (
                self.max_faces == 0 or MIN_FACES <= self.max_faces <= MAX_FACES)):
            raise PipelineError("bad_option", f"max_faces must be 0 (no decimation) or {MIN_FACES}..{MAX_FACES}, "
                                f"not {self.max_faces!r}")
        for name in ("no_frame", "from_mask"):
            if not isinstance(getattr(self, name), bool):
                raise PipelineError("bad_option", f"{name} must be true or false, not {getattr(self, name)!r}")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GenerateOptions":
        """Build from the HTTP API's ``options`` object (unknown keys are an error).

        Raises:
            PipelineError: ``bad_option``.
        """
        if not isinstance(d, dict):
            raise PipelineError("bad_option", "options must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise PipelineError("bad_option", f"unknown options {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if "formats" in d:
            if not isinstance(d["formats"], (list, tuple)):
                raise PipelineError("bad_option", "formats must be a list such as [\"ply\", \"glb\"]")
            d["formats"] = tuple(d["formats"])
        return cls(**d).validate()


@dataclass
class ModelBundle:
    """The loaded networks and their cards: one copy shared by every job of a process.

    Attributes:
        mask2triplane: :class:`backend.models.mask2triplane.Mask2Triplane` in eval mode.
        sketch2mask: :class:`backend.models.sketch2mask.SketchToMask` or None when only masks are served.
        cards: ``{name: model card}``; device / device_reason: where they run and why.
    """

    mask2triplane: Any
    sketch2mask: Any
    cards: dict[str, dict]
    device: str
    device_reason: str
    weights_dir: str
    sketch2mask_error: dict | None = None

    def weights_sha256(self) -> dict[str, str]:
        """Model name -> sha256 of its safetensors file, as its card states it (verified at load)."""
        return {name: card.get("sha256") for name, card in self.cards.items()}


def load_models(weights_dir: str | Path | None = None, device: str = "auto", need_sketch: bool = True) -> ModelBundle:
    """Load and verify the bundled (or given) weights onto the chosen device.

    Args:
        weights_dir: folder with ``mask2triplane_lite`` and ``sketch2mask_lite`` (default: bundled
            ``weights/`` or ``$S3D_WEIGHTS_DIR``).
        device: ``auto`` | ``cpu`` | ``cuda`` (backend.device.choose_device).
        need_sketch: if False, a missing sketch network is recorded, not raised (mask-only jobs).

    Raises:
        PipelineError: ``weights_missing`` / ``weights_corrupt`` / ``weights_mismatch`` (names the file),
            ``device_unavailable``.
    """
    from backend.device import DeviceError, choose_device
    from backend.models.loading import load_mask2triplane, load_sketch2mask
    from backend.weights import WeightsError, resolve_weights_dir

    wdir = resolve_weights_dir(weights_dir)
    try:
        choice = choose_device(device)
    except DeviceError as e:
        raise PipelineError(e.code, str(e)) from None
    except ValueError as e:
        raise PipelineError("bad_option", str(e)) from None
    try:
        m2t, m2t_card = load_mask2triplane(wdir, choice.device)
    except WeightsError as e:
        raise PipelineError(e.code, str(e)) from None
    cards = {m2t_card.get("name", "mask2triplane"): m2t_card}
    s2m, s2m_error = None, None
    try:
        s2m, s2m_card = load_sketch2mask(wdir, choice.device)
        cards[s2m_card.get("name", "sketch2mask")] = s2m_card
    except WeightsError as e:
        if need_sketch:
            raise PipelineError(e.code, str(e)) from None
        s2m_error = {"code": e.code, "message": str(e)}
    return ModelBundle(m2t, s2m, cards, choice.device, choice.reason, str(wdir), s2m_error)


@dataclass
class _Progress:
    callback: Callable[[str, float], None] | None
    cancel: Callable[[], bool] | None
    timings: dict[str, float] = field(default_factory=dict)
    done: float = 0.0
    stage: str = ""
    t0: float = 0.0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise JobCancelled(f"the job was cancelled during '{self.stage}'")

    def start(self, stage: str) -> None:
        self.check_cancel()
        self.stage = stage
        self.t0 = time.perf_counter()
        if self.callback:
            self.callback(stage, min(self.done, 1.0))

    def end(self) -> None:
        self.timings[self.stage] = round(time.perf_counter() - self.t0, 4)
        self.done += dict(STAGES).get(self.stage, 0.0)
        if self.callback:
            self.callback(self.stage, min(self.done, 1.0))


class FieldQuery:
    """Chunked, gradient-free queries of one job's tri-plane field (planes computed once).

    Call with ``(N, 3)`` float32 box coordinates; returns numpy arrays ``sigma (N,)``, ``rgb (N, 3)``
    and optionally ``semantic (N, 19)``.
    """

    def __init__(self, model: Any, planes: Any, device: str, chunk: int | None = None):
        if chunk is None:
            chunk = QUERY_CHUNK_CPU if str(device).startswith("cpu") else QUERY_CHUNK
        self.model, self.planes, self.device, self.chunk = model, planes, device, chunk
        self.points = 0

    def __call__(self, xyz: np.ndarray, semantic: bool = False, rgb: bool = True) -> dict[str, np.ndarray]:
        import torch

        xyz = np.ascontiguousarray(xyz, dtype=np.float32)
        n = len(xyz)
        self.points += n
        sig = np.empty(n, np.float32)
        col = np.empty((n, 3), np.float32) if rgb else None
        sem = np.empty((n, NUM_CLASSES), np.float32) if semantic else None
        with torch.inference_mode():
            for a in range(0, n, self.chunk):
                x = torch.from_numpy(xyz[a:a + self.chunk]).to(self.device)[None]
                out = self.model.query(self.planes, x)
                sig[a:a + len(x[0])] = out["sigma"][0, :, 0].float().cpu().numpy()
                if rgb:
                    col[a:a + len(x[0])] = out["rgb"][0].float().cpu().numpy()
                if semantic:
                    sem[a:a + len(x[0])] = out["semantic"][0].float().cpu().numpy()
        res = {"sigma": sig}
        if rgb:
            res["rgb"] = col
        if semantic:
            res["semantic"] = sem
        return res

    def density(self, xyz: np.ndarray) -> np.ndarray:
        """``(N, 3)`` -> ``(N,)`` float32 sigma."""
        return self(xyz, rgb=False)["sigma"]


def _sketch_to_mask(net: Any, sketch512: np.ndarray, device: str, mirror_average: bool | None = None) -> np.ndarray:
    """SketchToMask on a framed ``(512, 512)`` uint8 sketch -> ``(512, 512)`` uint8 label ids (argmax; mirror
    averaged when the card says so or as ``mirror_average`` says, :meth:`SketchToMask.predict_ids`)."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(sketch512.astype(np.float32) / 255.0)[None, None].to(device)
        return net.predict_ids(x, mirror_average)[0].to(torch.uint8).cpu().numpy()


def predict_mask_with_refined_framing(net: Any, image: np.ndarray, sketch512: np.ndarray, transform: Any,
                                      device: str = "cpu", mirror_average: bool | None = None
                                      ) -> tuple[np.ndarray, np.ndarray, Any]:
    """The sketch -> mask step of :func:`generate`, shared with ``s3d-eval``'s real-sketch checks so both
    see the same mask: predict on the first-pass framing, and when that framing was automatic, reframe
    from the first mask's eyes and mouth (or head box; :func:`backend.align.refine_with_landmarks`)
    and predict again.

    Args:
        net: a loaded :class:`SketchToMask`.
        image: the normalised input sketch ``(H, W)`` uint8, dark on white (``load_sketch(...).image``).
        sketch512, transform: its first-pass framing, ``backend.align.frame_sketch(image, 512)``.
        mirror_average: None = the card's setting.

    Returns:
        ``(sketch (512, 512) uint8, label ids (512, 512) uint8, FramingTransform)`` of the final pass.
    """
    from backend.align import refine_with_landmarks, resample_sketch

    mask512 = _sketch_to_mask(net, sketch512, device, mirror_average)
    if transform.auto_framed:
        refined = refine_with_landmarks(transform, mask512)
        if refined is not None:
            transform = refined
            sketch512 = resample_sketch(image, transform)
            mask512 = _sketch_to_mask(net, sketch512, device, mirror_average)
    return sketch512, mask512, transform


def _as_input(source: Any) -> tuple[Any, str]:
    """Normalise a job input to something the intake functions read, and a display name."""
    if isinstance(source, (str, Path)):
        return source, Path(source).name
    return source, "input"


def input_sha256(source: Any) -> str | None:
    """sha256 of the job's input: the file's bytes, the uploaded bytes, the stroke JSON (sorted keys,
    compact) or the array's bytes; None when it cannot be read."""
    import hashlib
    import json

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


def generate(source: Any, out_dir: str | Path, options: GenerateOptions | None = None,
             models: ModelBundle | None = None, weights_dir: str | Path | None = None, device: str = "auto",
             progress: Callable[[str, float], None] | None = None,
             cancel: Callable[[], bool] | None = None, input_name: str | None = None) -> dict[str, Any]:
    """Run one job: a sketch (or, with ``options.from_mask``, a label map) -> files in ``out_dir``.

    Args:
        source: path to an image / stroke JSON / mask, image bytes, a stroke dict, or an ``np.ndarray``.
        out_dir: output folder; the job writes into a private folder beside it and moves its complete set
            of files in when done (backend/job_output.py); a failed job leaves no folder behind.
        options: :class:`GenerateOptions` (defaults: seed 0, resolution 128, 6 views, PLY).
        models: a loaded :class:`ModelBundle` (the server keeps one); else loaded from ``weights_dir``.
        device: ``auto`` | ``cpu`` | ``cuda`` when ``models`` is None.
        progress: ``progress(stage, fraction 0..1)``; cancel: returns True to stop between stages.

    Returns:
        The result dict also written to ``result.json`` (docs/contracts.md section 6).

    Raises:
        PipelineError: with a stable code: intake codes (``image_unreadable``, ``image_blank``,
            ``strokes_*``, ``mask_id_out_of_range``, ...), ``framing_no_content``, weights codes,
            ``empty_surface`` / ``surface_fills_box`` / ``degenerate_surface``, ``bad_option``;
            ``output_busy`` (another live job writes into ``out_dir``), ``output_not_writable`` /
            ``disk_full`` / ``output_write_failed`` (no files are left), ``out_of_memory`` (suggests a lower resolution);
            :class:`JobCancelled` (code ``cancelled``).
    """
    from backend.job_output import JobOutput, OutputError

    options = (options or GenerateOptions()).validate()  # before any folder is touched
    try:
        # the job writes into a private folder beside out_dir that is moved into place whole when complete
        with JobOutput(out_dir) as out:
            result = _generate(source, out.tmp, options, models, weights_dir, device, progress, cancel, input_name)
            out.commit()
        if progress:
            progress("done", 1.0)
        return result
    except OutputError as e:
        raise PipelineError(e.code, str(e)) from None
    except PipelineError:
        raise
    except BaseException as e:
        if not _is_out_of_memory(e):
            raise
        res = options.resolution if isinstance(options, GenerateOptions) else GenerateOptions().resolution
        lower = [r for r in RESOLUTIONS if r < res]
        hint = (f"try a lower resolution (--resolution {lower[-1]})" if lower else
                "close other programs, lower view_resolution / color_resolution, or use the CPU")
        raise PipelineError("out_of_memory", f"out of memory at grid resolution {res} ({type(e).__name__}: "
                            f"{str(e)[:200]}); {hint}") from None


def _is_out_of_memory(e: BaseException) -> bool:
    """True for host or GPU allocation failures (numpy MemoryError, torch's OutOfMemoryError / allocator errors)."""
    if isinstance(e, MemoryError):
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                            or "not enough memory" in msg)


def _output_error(tmp_dir: Path, e: OSError) -> PipelineError:
    """A write failure in the job's temporary folder as a coded error that names the destination."""
    from backend.job_output import output_error

    err = output_error(tmp_dir, e)
    return PipelineError(err.code, str(err))


def _generate(source: Any, out_dir: str | Path, options: GenerateOptions | None, models: ModelBundle | None,
              weights_dir: str | Path | None, device: str, progress: Callable[[str, float], None] | None,
              cancel: Callable[[], bool] | None, input_name: str | None) -> dict[str, Any]:
    """:func:`generate` without the out-of-memory translation."""
    import torch

    from backend import export
    from backend.coords import BOX_SIZE_M, metres_to_box
    from backend.align import (
        FramingError,
        frame_mask,
        frame_sketch,
        unframe_mask,
    )
    from backend.input_limits import load_mask_checked, load_sketch_checked
    from backend.mesh import MeshError, density_grid, extract_mesh, vertex_classes
    from backend.previews import render_previews
    from backend.sketch.intake import IntakeError
    from backend.vertex_colors import (
        RasterMesh,
        blend_vertex_colors,
        render_views,
        standard_views,
        vertex_normals,
    )

    options = (options or GenerateOptions()).validate()
    out_dir = Path(out_dir)  # the job's private temporary folder (backend.job_output)
    prog = _Progress(progress, cancel)
    t_start = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    source, name = _as_input(source)
    name = input_name or name

    prog.start("load_models")
    if models is None:
        models = load_models(weights_dir, device, need_sketch=not options.from_mask)
    if not options.from_mask and models.sketch2mask is None:
        err = models.sketch2mask_error or {"code": "weights_missing", "message": "the sketch network is not loaded"}
        raise PipelineError(err["code"], err["message"])
    dev = models.device
    prog.end()

    # --- intake and framing
    prog.start("intake")
    try:
        if options.from_mask:
            mask_in = load_mask_checked(source)
            mask512, transform = frame_mask(mask_in, 512, auto_frame=not options.no_frame)
            input_info = {"kind": "mask", "size": [int(mask_in.shape[1]), int(mask_in.shape[0])], "name": name}
            sketch512 = None
        else:
            sk = load_sketch_checked(source)
            sketch512, transform = frame_sketch(sk.image, 512, auto_frame=not options.no_frame)
            input_info = {"kind": sk.kind, "size": list(sk.size), "mode": sk.source_mode, "name": name,
                          "notes": sk.notes}
    except (IntakeError, FramingError) as e:
        raise PipelineError(e.code, str(e)) from None
    prog.end()

    # --- sketch -> mask
    prog.start("sketch_to_mask")
    if sketch512 is not None:
        # with a second framing pass that aligns the first mask's eyes and mouth with the canonical ones
        sketch512, mask512, transform = predict_mask_with_refined_framing(models.sketch2mask, sk.image, sketch512,
                                                                          transform, dev)
    mask_input_frame = mask_in if options.from_mask else unframe_mask(mask512, transform)
    # --- issue 37: intake record and mask plausibility warnings (backend/mask_plausibility.py)
    from backend.mask_plausibility import check_mask
    intake_info = {"kind": "mask"} if options.from_mask else sk.intake
    mask_warnings = [] if options.from_mask else check_mask(mask_input_frame, sk.image).warnings
    # --- end issue 37
    prog.end()

    # --- tri-planes, once per job
    prog.start("planes")
    m2t = models.mask2triplane
    with torch.inference_mode():
        z = m2t.sample_z(options.seed, 1, dev)
        planes = m2t.planes_from_mask(torch.from_numpy(mask512.astype(np.int64))[None].to(dev), z)
    field_q = FieldQuery(m2t, planes, dev)
    level = float(m2t.surface_sigma)
    prog.end()

    # --- density grid and mesh
    prog.start("density_grid")
    try:
        grid = density_grid(field_q.density, options.resolution, level, levels=3 if options.resolution >= 128 else 2,
                            cancel=prog.check_cancel)
    except MeshError as e:
        raise PipelineError(e.code, str(e)) from None
    prog.end()

    prog.start("mesh")
    try:
        mesh = extract_mesh(grid, options.smooth_iterations, options.max_faces or None)
    except MeshError as e:
        raise PipelineError(e.code, str(e)) from None
    prog.end()

    # --- vertex colours and classes
    prog.start("vertex_colors")
    vb = metres_to_box(mesh.vertices).astype(np.float32)
    normals = vertex_normals(vb.astype(np.float64), mesh.faces)
    at_vertices = field_q(vb, semantic=True)
    labels = vertex_classes(at_vertices["semantic"], mesh.faces)
    views = standard_views(options.views)
    raster_mesh = RasterMesh(vb, mesh.faces)
    renders = []
    for v in views:  # one at a time so that cancel is honoured between views
        prog.check_cancel()
        renders += render_views(raster_mesh, None, field_q, [v], options.color_resolution, rng=rng)
    rgb, seen = blend_vertex_colors(vb.astype(np.float64), normals, renders, at_vertices["rgb"])
    prog.end()

    # --- export: a job that fails here takes back the files it wrote, so no incomplete set is left
    prog.start("export")
    files: list[str] = []
    try:
        files += export.write_mesh_files(out_dir, list(options.formats), mesh.vertices, mesh.faces, rgb, labels,
                                         normals)
        files += export.write_mask_files(out_dir, mask_input_frame)
        if sketch512 is not None:
            export.atomic_write_bytes(out_dir / "sketch_framed.png", export.png_bytes(sketch512))
            files.append("sketch_framed.png")
        prog.check_cancel()
        view_imgs = render_previews(raster_mesh, None, normals, rgb, views, options.view_resolution)
        files += export.write_view_files(out_dir, view_imgs)
    except OSError as e:  # the temporary folder is removed by generate's JobOutput
        raise _output_error(out_dir, e) from None
    prog.end()

    input_info["sha256"] = input_sha256(source)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    result = {
        "api": 1,
        "input": input_info,
        "seed": options.seed,
        "sketch_sha256": input_info["sha256"],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "device": models.device,
        "device_reason": models.device_reason,
        "weights": {n: {"sha256": c.get("sha256"), "profile": c.get("profile")} for n, c in models.cards.items()},
        "framing": transform.to_dict(),
        "intake": intake_info,  # issue 37
        "warnings": mask_warnings,  # issue 37: [{"code", "message"}], shown by the add-on
        "timings_s": dict(prog.timings, total=round(time.perf_counter() - t_start, 4)),
        "vertex_count": int(len(mesh.vertices)),
        "face_count": int(len(mesh.faces)),
        "bbox_m": {"min": lo.round(5).tolist(), "max": hi.round(5).tolist(), "size": (hi - lo).round(5).tolist()},
        "class_vertex_counts": {LABEL_NAMES[i]: int(counts[i]) for i in range(NUM_CLASSES) if counts[i] > 0},
        "mesh": dict(mesh.stats, iso_level=level, grid_points_evaluated=grid.evaluated,
                     grid_points_dense=int((options.resolution + 1) ** 3), field_points_queried=int(field_q.points)),
        "vertex_colors": {"views": [r.view.name for r in renders], "vertices_seen": float((seen > 0).mean()),
                          "color_resolution": options.color_resolution, "preview_resolution": options.view_resolution},
        "views": {r.view.name: r.view.camera_dict(options.view_resolution, BOX_SIZE_M / 2) for r in renders},
        "frame": {"units": "metres", "up": "+Z", "face_towards": "-Y", "box_size_m": BOX_SIZE_M},
        "files": sorted(files + ["result.json"]),
    }
    try:
        export.write_result(out_dir, result)
    except OSError as e:
        raise _output_error(out_dir, e) from None
    return result
