"""Framing for drawings of a whole animal: the head framed from the first mask, not the drawing.

A quick doodle of a cat often draws the whole animal, lying or sitting, with the head small at one end.
The first framing pass (backend/align.py ``framing_transform``) fits the whole drawing into the canonical
content box, so the head comes out a third of its usual size; the cat sketch network, trained on such
drawings with the body as background (training/syncat/quick_drawings.py), labels the head alone. This
module detects that case from the first mask (:func:`head_share`) and frames the head from that mask
(:func:`reframe_head_mask`), per label set (:data:`HEAD_MASK_REFRAMING`).
"""
from __future__ import annotations

import numpy as np

from backend.align import FramingTransform, content_box, frame_mask
from backend.labels import CAT, CELEBAMASK_HQ, LabelSet

#: Per label set name: when the first mask's head covers under :data:`MAX_HEAD_SHARE` of the drawing's
#: content box, the head is framed from that mask. On for cats, whose quick doodles often draw the whole
#: animal (the cat sketch network is trained to leave the body out, training/syncat/quick_drawings.py); off
#: for people, whose label set has neck and cloth.
HEAD_MASK_REFRAMING: dict[str, bool] = {CELEBAMASK_HQ.name: False, CAT.name: True}
#: Largest share of the drawing's content box (area) the first mask's head box may cover before the drawing
#: is read as a whole body: midway between what the cat sketch network gives on SynCat test sketches of heads
#: (100 of them, stored styles: 0.52-0.94) and on the same cats redrawn whole (50, benchmarks/
#: quick_cat_doodles.py ``body`` drawings: 0.14-0.38); a real doodle of a cat lying on its side gives 0.21.
MAX_HEAD_SHARE = 0.45


def head_share(first: FramingTransform, framed_mask: np.ndarray) -> float | None:
    """Area of the head box of a first-pass mask ``(S, S)`` ids (non-background, :func:`backend.align.content_box`)
    over the area of the drawing's content box, both in ``first``'s framed square; None without content."""
    return _head_box_and_share(first, framed_mask)[1]


def _head_box_and_share(first: FramingTransform, framed_mask: np.ndarray) -> tuple[list[float] | None, float | None]:
    """The first mask's head box (framed pixels) and :func:`head_share`; ``(None, None)`` without content."""
    box = content_box(framed_mask > 0)
    if box is None or first.content_box is None:
        return None, None
    x0, y0, x1, y1 = first.content_box
    ink = max(x1 - x0, 1.0) * max(y1 - y0, 1.0) * first.scale ** 2
    return box, (box[2] - box[0]) * (box[3] - box[1]) / ink


def reframe_head_mask(first: FramingTransform, framed_mask: np.ndarray,
                      labels: LabelSet = CELEBAMASK_HQ) -> tuple[np.ndarray, FramingTransform] | None:
    """Whole-body drawings: frame the head from the first-pass mask instead of the drawing.

    A drawing of the whole animal (a cat lying with its head at one end) is framed by its content box, so
    the head comes out small; the sketch network, trained on such drawings with the body as background
    (training/syncat/quick_drawings.py), labels the head alone. When the head box of ``framed_mask``
    (``(S, S)`` ids of ``labels`` in ``first``'s framed square) covers less than :data:`MAX_HEAD_SHARE` of the
    content box (:func:`head_share`), that mask is framed as a label-map input is
    (:func:`backend.align.frame_mask`: content box, then eye and mouth landmarks). The mask is resampled, not
    predicted again: on the sketch zoomed to the head the pen lines are several times wider than any
    training drawing's.

    Returns:
        ``(mask (S, S) uint8 ids, FramingTransform from the input with method "head_mask")``, or None when
        the set's switch is off (:data:`HEAD_MASK_REFRAMING`), the first framing was not automatic, or the
        head is large enough.
    """
    if not (HEAD_MASK_REFRAMING.get(labels.name, False) and first.auto_framed):
        return None
    box, share = _head_box_and_share(first, framed_mask)
    if share is None or share >= MAX_HEAD_SHARE:
        return None
    mask, rel = frame_mask(framed_mask, first.output_size, True, labels=labels)
    r, s = rel.scale, first.scale
    matrix = [[r * s, 0.0, r * first.matrix[0][2] + rel.matrix[0][2]],
              [0.0, r * s, r * first.matrix[1][2] + rel.matrix[1][2]]]
    head_in = [round((box[0] - first.matrix[0][2]) / s, 2), round((box[1] - first.matrix[1][2]) / s, 2),
               round((box[2] - first.matrix[0][2]) / s, 2), round((box[3] - first.matrix[1][2]) / s, 2)]
    return mask, FramingTransform(matrix, first.input_size, first.output_size, first.content_box,
                                  first.canonical_box, True, "head_mask",
                                  {"head_box": head_in, "head_share": round(share, 3)})
