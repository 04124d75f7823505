"""Drawings on paper -> clean dark-on-white sketches: the image half of sketch intake.

A scan or photo of a drawing brings things the sketch network never saw in training: a grey or tinted
paper, uneven light (a vignette, a shadow across the sheet), the scanner's edge or the sheet's border, a
handwritten number in a margin, JPEG noise and tonal graphite shading. Read as ink, grey paper becomes
hair and a border stretches the framing over the whole sheet. :func:`clean_paper` removes these, one
measured step at a time, each a no-op on a clean digital line drawing:

1. ``flatten``: a smooth paper-brightness surface (a robust low-order fit to a large grey closing) is
   divided out, so the paper is uniformly white whatever its tint or lighting;
2. ``scanner_edges``: dark groups in the outer band of the image that lie along an edge (the scanner
   bed, a shadow) or are long straight lines parallel to it (the sheet's border) become paper;
3. ``denoise``: when the paper's pixel noise (JPEG, grain) is measurable, non-local-means denoising
   (median 3 on very large images);
4. ``tonal``: when much of the picture is grey shading rather than lines, light shading is lifted to
   paper so the dark strokes and the edges of dark masses remain (the network was trained on lines);
5. ``paper_white``: whatever is as light as the paper (its level minus three times its grain) becomes
   exactly white;
6. ``margin_marks``: small ink groups in the margins, away from the main drawing (labels, numbers,
   signatures, dust), become paper.

The measurements and parameters of every step go into the returned ``info`` dict (``result.json``'s
``intake``), and :func:`debug_strip` draws the stages side by side. The tone steps (1, 3, 4, 5) are
backend/sketch/paper_tone.py, the removal steps (2, 6) backend/sketch/paper_marks.py, the working copy
they share backend/sketch/paper_work.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from backend.sketch.paper_marks import margin_marks, scanner_edges
from backend.sketch.paper_tone import denoise, flatten, paper_white, tonal
from backend.sketch.paper_work import to_u8, work


@dataclass
class PaperResult:
    """Output of :func:`clean_paper`.

    Attributes:
        grey: ``(H, W)`` float64 in [0, 1], dark strokes on white, same frame as the input.
        info: JSON-ready ``{"steps": [names that changed the image], step name: {measurements}, ...}``.
        stages: ``[(name, (H', W') uint8)]`` snapshots after each step (only with ``keep_stages``;
            downscaled to the working size).
    """

    grey: np.ndarray
    info: dict
    stages: list[tuple[str, np.ndarray]] = field(default_factory=list)


def clean_paper(grey: np.ndarray, keep_stages: bool = False) -> PaperResult:
    """Flatten the paper and remove scanner edges, margin marks, noise and light shading.

    Args:
        grey: ``(H, W)`` float in [0, 1], dark strokes on a light background (invert light-on-dark
            drawings first), any size and aspect ratio.
        keep_stages: also return a snapshot of each stage (for :func:`debug_strip`).

    Returns:
        :class:`PaperResult`. A clean digital drawing (white paper, no marks) comes back unchanged.

    Raises:
        ValueError: ``grey`` is not a 2-D array.
    """
    g = np.asarray(grey, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"clean_paper needs a (H, W) grey image, not shape {g.shape}")
    g = np.clip(g, 0.0, 1.0)
    h, w = g.shape
    info: dict = {"steps": [], "size": [int(w), int(h)]}
    stages: list[tuple[str, np.ndarray]] = []

    def snap(name: str) -> None:
        if keep_stages:
            stages.append((name, to_u8(work(g))))

    snap("input")
    for name, step in (("flatten", flatten), ("scanner_edges", scanner_edges), ("denoise", denoise),
                       ("tonal", tonal), ("paper_white", paper_white), ("margin_marks", margin_marks)):
        g, info[name] = step(g)
        _mark(info, name)
        snap(name)
    return PaperResult(g, info, stages)


def debug_strip(stages: list[tuple[str, np.ndarray]], tile: int = 256) -> np.ndarray:
    """The stages of :func:`clean_paper` side by side, each letterboxed into a ``tile`` square and
    captioned: ``(tile + 18, tile * len(stages))`` uint8 grey."""
    tiles = []
    for name, im in stages:
        h, w = im.shape
        s = tile / max(h, w)
        small = cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        t = np.full((tile + 18, tile), 255, np.uint8)
        y0, x0 = 18 + (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
        t[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        cv2.putText(t, name, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        t[:, -1] = 160
        tiles.append(t)
    return np.hstack(tiles) if tiles else np.full((tile + 18, tile), 255, np.uint8)


def _mark(info: dict, step: str) -> None:
    if info[step].get("applied"):
        info["steps"].append(step)


def main(argv: list[str] | None = None) -> int:
    """``python -m backend.sketch.paper SKETCH [DEBUG_PNG]``: print the intake record of an image sketch
    as JSON and, with ``DEBUG_PNG``, write the strip of its clean-up stages (e.g. ``intake_debug.png``).

    Returns the exit code: 0, or 2 when the image cannot be read (the intake's coded error is printed).
    """
    import argparse
    import json
    import sys

    from PIL import Image

    from backend.sketch.intake import IntakeError, load_sketch

    p = argparse.ArgumentParser(prog="python -m backend.sketch.paper", description=main.__doc__.splitlines()[0])
    p.add_argument("sketch")
    p.add_argument("debug_png", nargs="?")
    args = p.parse_args(argv)
    try:
        sk = load_sketch(args.sketch, keep_stages=bool(args.debug_png))
    except IntakeError as e:
        print(f"error [{e.code}]: {e}", file=sys.stderr)
        return 2
    print(json.dumps(sk.intake, indent=1))
    if args.debug_png and sk.stages:
        Image.fromarray(debug_strip(sk.stages)).save(args.debug_png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
