"""Sketch (or mask) -> coloured, labelled head mesh: the one ``generate`` function behind CLI and server.

Stages (docs/design.md section 1; S3D, CVPRW 2025, with pix2pix3D's mask-to-3D generator), each a function
of backend/stages.py over small typed values, called in order by :func:`generate`:

``load_models`` -> ``intake`` (image or stroke JSON -> normalised sketch aligned onto the canonical framing,
or a label map) -> ``sketch_to_mask`` (SketchToMask U-Net, argmax ids, landmark reframing) -> ``planes``
(MaskEncoder with z from the seed, TriplaneSynthesis: computed **once** per job) -> ``density_grid``
(coarse to fine) -> ``mesh`` (marching cubes, largest component, Taubin, decimation, metres) ->
``vertex_colors`` (normals; K band-rendered views, visibility-tested cosine blend; semantic class per
vertex) -> ``export`` (mesh files, mask.png in the input's pixel frame, mask_color.png, views/*.png:
shaded renders of the finished mesh from the same K cameras) -> result.json.

Progress: ``progress(stage, fraction)`` is called at the start of each stage and after it with the
overall fraction 0..1; ``stage`` is a :class:`Stage`, a ``str`` whose value is the name on the wire (the
server's job status, the add-on's labels). Cancel: ``cancel()`` returns True to abandon the job; it is
checked between stages and between the levels of the grid and the views, raising :class:`JobCancelled`.

Errors: every stage raises its own coded error; :func:`backend.errors.as_pipeline_error` turns them into
:class:`PipelineError` once, around the whole job.

Seeds: z comes from ``Mask2Triplane.sample_z(seed)`` and every other random choice (band-rendering
jitter) from ``numpy.random.default_rng(seed)``, so sketch + seed + weights fix the mesh.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Iterator

from backend import stages
from backend.errors import CodedError, JobCancelled, PipelineError, as_pipeline_error
from backend.labels import CELEBAMASK_HQ, LabelSet, label_set
from backend.options import MAX_FACES, MESH_FORMATS, MIN_FACES, RESOLUTIONS, GenerateOptions
from backend.field_query import QUERY_CHUNK, QUERY_CHUNK_CPU, FieldQuery
from backend.stages import input_sha256, predict_mask_with_refined_framing

__all__ = ["CodedError", "FieldQuery", "GenerateOptions", "JobCancelled", "MAX_FACES", "MESH_FORMATS", "MIN_FACES",
           "ModelBundle", "PipelineError", "QUERY_CHUNK", "QUERY_CHUNK_CPU", "RESOLUTIONS", "STAGES", "Stage",
           "generate", "input_sha256", "load_models", "predict_mask_with_refined_framing"]


class Stage(StrEnum):
    """The stages a job reports; the values are the stage names on the wire (server job status, add-on)."""

    LOAD_MODELS = "load_models"
    INTAKE = "intake"
    SKETCH_TO_MASK = "sketch_to_mask"
    PLANES = "planes"
    DENSITY_GRID = "density_grid"
    MESH = "mesh"
    VERTEX_COLORS = "vertex_colors"
    EXPORT = "export"
    DONE = "done"


#: Stages and their share of a typical CPU job's time (for the progress fraction).
STAGES: tuple[tuple[Stage, float], ...] = (
    (Stage.LOAD_MODELS, 0.02), (Stage.INTAKE, 0.02), (Stage.SKETCH_TO_MASK, 0.08), (Stage.PLANES, 0.05),
    (Stage.DENSITY_GRID, 0.33), (Stage.MESH, 0.10), (Stage.VERTEX_COLORS, 0.32), (Stage.EXPORT, 0.08),
)


@dataclass
class ModelBundle:
    """The loaded networks and their cards: one copy shared by every job of a process.

    Attributes:
        mask2triplane: :class:`backend.models.mask2triplane.Mask2Triplane` in eval mode.
        sketch2mask: :class:`backend.models.sketch2mask.SketchToMask` or None when only masks are served.
        cards: ``{name: model card}``; device / device_reason: where they run and why.
        subject / labels: the subject (``human`` | ``cat``) and the :class:`LabelSet` of the networks.
    """

    mask2triplane: Any
    sketch2mask: Any
    cards: dict[str, dict]
    device: str
    device_reason: str
    weights_dir: str
    sketch2mask_error: dict | None = None
    #: The job subject the networks serve (``human`` | ``cat``) and their label set (backend/labels.py).
    subject: str = "human"
    labels: LabelSet = CELEBAMASK_HQ

    def weights_sha256(self) -> dict[str, str]:
        """Model name -> sha256 of its safetensors file, as its card states it (verified at load)."""
        return {name: card.get("sha256") for name, card in self.cards.items()}


def load_models(weights_dir: str | Path | None = None, device: str = "auto", need_sketch: bool = True,
                subject: str = "human") -> ModelBundle:
    """Load and verify the bundled (or given) weights of ``subject`` onto the chosen device.

    Args:
        weights_dir: folder with the subject's networks (``backend.models.loading.SUBJECT_WEIGHTS``:
            ``<kind>_lite`` for humans, ``<kind>_cat_lite`` for cats; default: bundled ``weights/`` or
            ``$S3D_WEIGHTS_DIR``).
        device: ``auto`` | ``cpu`` | ``cuda`` (backend.device.choose_device).
        need_sketch: if False, a missing sketch network is recorded, not raised (mask-only jobs).
        subject: ``human`` | ``cat``: which networks, and the label set their cards must serve.

    Raises:
        PipelineError: ``weights_missing`` / ``weights_corrupt`` / ``weights_mismatch`` (names the file; for
            cats the sentence says where the bundled cat networks are and how to train them),
            ``device_unavailable``, ``bad_option`` (an unknown subject or device).
    """
    from backend.device import DeviceError, choose_device
    from backend.models.loading import SUBJECT_WEIGHTS
    from backend.weights import WeightsError, resolve_weights_dir

    if subject not in SUBJECT_WEIGHTS:
        raise PipelineError("bad_option", f"subject must be one of {sorted(SUBJECT_WEIGHTS)}, not {subject!r}")
    wdir = resolve_weights_dir(weights_dir)
    try:
        choice = choose_device(device)
    except DeviceError as e:  # not a CodedError: its code is a class attribute
        raise PipelineError(e.code, str(e)) from None
    except ValueError as e:
        raise PipelineError("bad_option", str(e)) from None
    names = SUBJECT_WEIGHTS[subject]
    with as_pipeline_error():
        m2t, m2t_card = _load_subject_model("mask2triplane", names, wdir, choice.device, subject)
        cards = {m2t_card.get("name", "mask2triplane"): m2t_card}
        s2m, s2m_error = None, None
        try:
            s2m, s2m_card = _load_subject_model("sketch2mask", names, wdir, choice.device, subject)
            cards[s2m_card.get("name", "sketch2mask")] = s2m_card
        except WeightsError as e:
            if need_sketch:
                raise
            s2m_error = {"code": e.code, "message": str(e)}
    return ModelBundle(m2t, s2m, cards, choice.device, choice.reason, str(wdir), s2m_error, subject,
                       label_set(names["label_set"]))


def _load_subject_model(kind: str, names: dict[str, str], wdir: Path, device: str, subject: str):
    """``load_model`` of the subject's ``kind`` network; a missing cat network gets a ``weights_missing``
    sentence saying that the bundled ``weights/`` folder holds the cat networks and how to train them (a
    custom weights folder made for humans lacks them)."""
    from backend.models.loading import load_model
    from backend.weights import WeightsError

    try:
        return load_model(kind, wdir, device, names[kind], names["label_set"])
    except WeightsError as e:
        if subject != "cat" or e.code != "weights_missing":
            raise
        raise WeightsError("weights_missing", f"the cat network {names[kind]}.safetensors / {names[kind]}.json is "
                           f"missing in {wdir} ({e}): copy the cat networks from the bundled weights/ folder into "
                           "it, or train them as docs/models.md section \"Cats\" says and export them under "
                           "these names") from None


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

    @contextmanager
    def stage_of(self, stage: Stage) -> Iterator[None]:
        """Report ``stage`` at its start and end and time it; a stage that raises reports no end."""
        self.check_cancel()
        self.stage = stage.value
        self.t0 = time.perf_counter()
        if self.callback:
            self.callback(stage, min(self.done, 1.0))
        yield
        self.timings[stage.value] = round(time.perf_counter() - self.t0, 4)
        self.done += dict(STAGES).get(stage, 0.0)
        if self.callback:
            self.callback(stage, min(self.done, 1.0))


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
        progress: ``progress(stage, fraction 0..1)`` with a :class:`Stage` (a str); cancel: returns True to
            stop between stages.

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
    from backend.job_output import JobOutput

    options = (options or GenerateOptions()).validate()  # before any folder is touched
    try:
        with as_pipeline_error():
            # the job writes into a private folder beside out_dir that is moved into place whole when complete
            with JobOutput(out_dir) as out:
                result = _run_stages(source, out.tmp, options, models, weights_dir, device,
                                     _Progress(progress, cancel), input_name)
                out.commit()
        if progress:
            progress(Stage.DONE, 1.0)
        return result
    except PipelineError:
        raise
    except BaseException as e:
        if not _is_out_of_memory(e):
            raise
        lower = [r for r in RESOLUTIONS if r < options.resolution]
        hint = (f"try a lower resolution (--resolution {lower[-1]})" if lower else
                "close other programs, lower view_resolution / color_resolution, or use the CPU")
        raise PipelineError("out_of_memory", f"out of memory at grid resolution {options.resolution} "
                            f"({type(e).__name__}: {str(e)[:200]}); {hint}") from None


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


def _models_for(options: GenerateOptions, models: ModelBundle | None, weights_dir: str | Path | None,
                device: str) -> ModelBundle:
    """``models`` when they serve the job's subject, else the subject's weights loaded for this job (from
    ``models``' folder and device when given); PipelineError when a sketch job has no sketch network."""
    if models is None or models.subject != options.subject:  # a bundle of the other subject: load this one's
        if models is not None:
            weights_dir, device = models.weights_dir, models.device
        models = load_models(weights_dir, device, need_sketch=not options.from_mask, subject=options.subject)
    if not options.from_mask and models.sketch2mask is None:
        err = models.sketch2mask_error or {"code": "weights_missing", "message": "the sketch network is not loaded"}
        raise PipelineError(err["code"], err["message"])
    return models


def _run_stages(source: Any, tmp_dir: Path, options: GenerateOptions, models: ModelBundle | None,
                weights_dir: str | Path | None, device: str, prog: _Progress,
                input_name: str | None) -> dict[str, Any]:
    """The stages of :func:`generate` in order, writing into the job's private folder ``tmp_dir``."""
    t_start = time.perf_counter()
    name = Path(source).name if isinstance(source, (str, Path)) else "input"
    with prog.stage_of(Stage.LOAD_MODELS):
        models = _models_for(options, models, weights_dir, device)
    with prog.stage_of(Stage.INTAKE):
        sketch = stages.intake(source, input_name or name, options.from_mask, options.no_frame, models.labels)
    with prog.stage_of(Stage.SKETCH_TO_MASK):
        mask = stages.sketch_to_mask(sketch, models.sketch2mask, models.device, options.draft, models.labels)
    with prog.stage_of(Stage.PLANES):
        planes = stages.planes(mask, models.mask2triplane, options.seed, models.device, options.symmetric,
                               options.colors)
    with prog.stage_of(Stage.DENSITY_GRID):
        grid = stages.density_grid(planes, options.resolution, prog.check_cancel)
    with prog.stage_of(Stage.MESH):
        head = stages.mesh(grid, options.smooth_iterations, options.max_faces, options.symmetric)
    with prog.stage_of(Stage.VERTEX_COLORS):
        head, views = stages.vertex_colors(head, planes, options.views, options.color_resolution, options.seed,
                                           prog.check_cancel)
        head = stages.colour_picks(head, options.colors, planes.colour_code)
    with prog.stage_of(Stage.EXPORT):
        outputs = stages.export(Path(tmp_dir), head, mask, views, options.formats, options.view_resolution,
                                prog.check_cancel, options.texture or None, models.labels)
    timings = dict(prog.timings, total=round(time.perf_counter() - t_start, 4))
    result = stages.result_record(source, sketch, mask, planes, head, views, outputs, options, models, timings)
    try:
        from backend.export import write_result

        write_result(Path(tmp_dir), result)
    except OSError as e:
        from backend.job_output import output_error

        raise output_error(Path(tmp_dir), e) from None
    return result
