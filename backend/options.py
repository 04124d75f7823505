"""The options of one job (:class:`GenerateOptions`: CLI flags and the HTTP API's ``options`` object)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.errors import PipelineError

RESOLUTIONS = (64, 128, 192, 256)
#: Decimation budget range (faces); fewer than MIN_FACES leaves no usable head (a budget of 1 leaves 0 vertices).
MIN_FACES, MAX_FACES = 1_000, 5_000_000
MESH_FORMATS = ("ply", "glb", "obj")
#: What a job makes (the ``subject`` option): its networks and label set (backend/models/loading.py
#: ``SUBJECT_WEIGHTS``).
SUBJECTS = ("human", "cat")
#: Texture sides (pixels) the ``texture`` option accepts.
TEXTURE_SIZES = (256, 512, 1024, 2048, 4096)


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
        smooth_iterations: Taubin smoothing iterations (0 = off; 30 keeps the roughness of SynHead heads
            within 1.5x of their ground truth's, docs/mesh.md).
        max_faces: decimation budget in faces, ``MIN_FACES``..``MAX_FACES`` (0 or None = off).
        view_resolution: pixels a side of the preview renders views/*.png (the shaded mesh).
        color_resolution: pixels a side of the radiance-field views the vertex colours come from.
        symmetric: make the head mirror-symmetric about its vertical mid-plane (the field is averaged
            with its mirror image, left/right labels kept right).
        colors: colours an artist picks, ``{"hair" | "skin" | "eyes" | "lips": "#rrggbb"}`` (sRGB), applied
            per class on the vertex colours, keeping their shading (backend/colour_picks.py); None = off.
        texture: side in pixels (a power of two, ``TEXTURE_SIZES``) of a colour texture baked from the vertex
            colours (backend/texture.py): ``texture.png``, UVs and a material in ``mesh.obj`` (+ ``mesh.mtl``)
            and ``mesh.glb``; needs ``obj`` or ``glb`` in ``formats``. None or 0 = off.
        draft: a live-preview head: the sketch network predicts once per framing pass, without the mirror
            average its card asks for (half its time; the add-on's live preview sets it).
        subject: ``human`` (CelebAMask-HQ networks ``<kind>_lite``) or ``cat`` (seg2cat networks
            ``<kind>_cat_lite``; mask inputs in seg2cat ids or palette; ``colors`` are refused).
    """

    seed: int = 0
    resolution: int = 128
    views: int = 6
    formats: tuple[str, ...] = ("ply",)
    no_frame: bool = False
    from_mask: bool = False
    smooth_iterations: int = 30
    max_faces: int | None = 200_000
    view_resolution: int = 256
    color_resolution: int = 128
    symmetric: bool = False
    colors: dict | None = None
    texture: int | None = None
    draft: bool = False
    subject: str = "human"

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
        if self.texture is not None and self.texture != 0:
            if not whole(self.texture) or self.texture not in TEXTURE_SIZES:
                raise PipelineError("bad_option", f"texture must be 0 (off) or one of {TEXTURE_SIZES} pixels, "
                                    f"not {self.texture!r}")
            if not {"obj", "glb"} & set(fmts):
                raise PipelineError("bad_option", "texture needs obj or glb in formats (PLY has no standard "
                                    "texture coordinates), e.g. formats [\"ply\", \"glb\"] / --format ply,glb")
        if self.subject not in SUBJECTS:
            raise PipelineError("bad_option", f"subject must be one of {list(SUBJECTS)}, not {self.subject!r}")
        if self.colors is not None and self.subject != "human":
            raise PipelineError("bad_option", f"colour picks (colors, --hair-color ...) name human classes (hair, "
                                f"skin, eyes, lips) and are not available for subject {self.subject!r}; leave "
                                "them out for cats")
        if self.colors is not None:
            from backend.colour_picks import parse_picks

            try:
                parse_picks(self.colors)
            except ValueError as e:
                raise PipelineError("bad_option", str(e)) from None
        for name in ("no_frame", "from_mask", "symmetric", "draft"):
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
