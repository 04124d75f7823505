"""The small typed values the stages of a job pass on (backend/stages.py): Sketch, Mask, Planes,
HeadMesh, ColourViews, Outputs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.field_query import FieldQuery


@dataclass
class Sketch:
    """The job's input after intake and first-pass alignment.

    Attributes:
        image: the normalised sketch ``(H, W)`` uint8, dark on white; None for a mask input.
        framed: ``image`` aligned onto the canonical framing, ``(512, 512)`` uint8; None for a mask input.
        mask: a mask input's label ids in its own pixels ``(H, W)`` uint8; None for a sketch.
        mask_framed: ``mask`` aligned, ``(512, 512)`` uint8; None for a sketch.
        transform: the alignment (``backend.align.FramingTransform``).
        info: result.json's ``input`` record; intake: its ``intake`` record.
    """

    image: np.ndarray | None
    framed: np.ndarray | None
    mask: np.ndarray | None
    mask_framed: np.ndarray | None
    transform: Any
    info: dict
    intake: dict


@dataclass
class Mask:
    """Label ids (CelebAMask-HQ) of the job: ``framed (512, 512)`` uint8 for the generator and ``input``
    ``(H, W)`` uint8 in the input's pixels (mask.png); ``sketch_framed`` is the final framed sketch (None for
    a mask input), ``transform`` the final alignment, ``warnings`` the plausibility warnings."""

    framed: np.ndarray
    input: np.ndarray
    sketch_framed: np.ndarray | None
    transform: Any
    warnings: list[dict]


@dataclass
class Planes:
    """The job's tri-plane field (computed once): ``field`` answers point queries; ``level`` is the surface
    density (iso level)."""

    field: FieldQuery
    level: float
    #: The job's named colours with a colour-code generator (backend/models/colour_code.py): group ->
    #: sRGB ``(3,)`` float in [0, 1], the albedo of the seed's code with the artist's picks; None with a
    #: cVAE generator.
    colour_code: dict[str, np.ndarray] | None = None


@dataclass
class HeadMesh:
    """The head in the head frame: ``vertices (V, 3)`` float metres, ``faces (F, 3)`` int; after
    :func:`vertex_colors` also ``normals (V, 3)`` float64 unit, ``labels (V,)`` class ids and
    ``colours (V, 3)`` linear RGB in [0, 1]. ``stats``: clean-up numbers; ``grid_evaluated``: field points
    per grid level."""

    vertices: np.ndarray
    faces: np.ndarray
    stats: dict
    grid_evaluated: list[int]
    normals: np.ndarray | None = None
    labels: np.ndarray | None = None
    colours: np.ndarray | None = None

    def box_vertices(self) -> np.ndarray:
        """``(V, 3)`` float32 normalised box coordinates (backend/coords.py), where the field lives."""
        from backend.coords import metres_to_box

        return metres_to_box(self.vertices).astype(np.float32)


@dataclass
class ColourViews:
    """The views the vertex colours came from (``backend.vertex_colors.OrthoView``) and the share of vertices
    at least one of them saw."""

    views: list
    vertices_seen: float


@dataclass
class Outputs:
    """Files the job wrote into its folder (relative paths, result.json not yet among them); ``texture``:
    result.json's record of the baked texture (None without one)."""

    files: list[str]
    texture: dict | None = None
