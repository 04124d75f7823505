"""Draw this project's example sketch: a frontal head as stroke JSON, and its PNG rendering.

The strokes are written by hand here (control points in the normalised input frame, x right, y down,
smoothed with Catmull-Rom splines), placed like SynHead's clean sketches (crown near the top, chin at
about two thirds of the height, neck and shoulders below): face outline, hair with a fringe and a few
flow lines, ears, brows, eyes with irises, nose, lips, neck and shoulders. The PNG is drawn by
backend.sketch.raster.rasterize_strokes, the same rasteriser inference uses.

Run: ``python examples/make_example_sketch.py`` (writes examples/head_front.{json,png} and
examples/head_long_hair.{json,png}, the same face with long hair).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WIDTH = 0.0045  # stroke width, fraction of the image height (about 2.3 px at 512)


def catmull_rom(points: list[tuple[float, float]], per_segment: int = 8, closed: bool = False) -> list[list[float]]:
    """A smooth polyline through the control points (uniform Catmull-Rom)."""
    p = np.asarray(points, dtype=np.float64)
    if closed:
        p = np.vstack([p[-1], p, p[0], p[1]])
    else:
        p = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for t in np.linspace(0.0, 1.0, per_segment, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(p[-2])
    return np.round(np.asarray(out), 5).tolist()


def mirror(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Mirror control points about the vertical centre line x = 0.5."""
    return [(round(1.0 - x, 5), y) for x, y in points]


def head_strokes() -> list[dict]:
    s: list[dict] = []

    def add(group: str, pts, width: float = WIDTH, closed: bool = False, both_sides: bool = False):
        s.append({"group": group, "width": width, "points": catmull_rom(pts, closed=closed)})
        if both_sides:
            s.append({"group": group, "width": width, "points": catmull_rom(mirror(pts), closed=closed)})

    # hair: outer silhouette over the crown, the fringe / hairline, a few flow lines
    add("hair", [(0.31, 0.46), (0.295, 0.36), (0.315, 0.25), (0.37, 0.165), (0.44, 0.125), (0.5, 0.117),
                 (0.56, 0.125), (0.63, 0.165), (0.685, 0.25), (0.705, 0.36), (0.69, 0.46)])
    add("hair", [(0.332, 0.39), (0.34, 0.31), (0.375, 0.25), (0.43, 0.225), (0.47, 0.245), (0.52, 0.22),
                 (0.585, 0.235), (0.635, 0.28), (0.66, 0.33), (0.668, 0.39)])
    add("hair_flow", [(0.46, 0.14), (0.41, 0.18), (0.37, 0.24), (0.345, 0.31)], WIDTH * 0.7)
    add("hair_flow", [(0.52, 0.14), (0.58, 0.17), (0.63, 0.23), (0.655, 0.30)], WIDTH * 0.7)
    add("hair_flow", [(0.49, 0.15), (0.47, 0.19), (0.46, 0.23)], WIDTH * 0.7)
    # face outline: temple, cheek, jaw, chin (both sides as one stroke)
    add("face_outline", [(0.327, 0.37), (0.33, 0.45), (0.345, 0.53), (0.38, 0.6), (0.43, 0.648), (0.5, 0.668),
                         (0.57, 0.648), (0.62, 0.6), (0.655, 0.53), (0.67, 0.45), (0.673, 0.37)])
    # ears: outer rim and the inner fold
    add("ear", [(0.328, 0.385), (0.305, 0.375), (0.29, 0.395), (0.288, 0.43), (0.297, 0.47), (0.315, 0.495),
                (0.334, 0.5)], both_sides=True)
    add("ear", [(0.318, 0.405), (0.304, 0.42), (0.305, 0.45), (0.318, 0.468)], WIDTH * 0.7, both_sides=True)
    # brows
    add("brow", [(0.37, 0.352), (0.395, 0.338), (0.43, 0.333), (0.465, 0.343)], WIDTH * 1.4, both_sides=True)
    # eyes: upper lid, lower lid, iris
    add("eye", [(0.385, 0.392), (0.405, 0.378), (0.428, 0.374), (0.45, 0.38), (0.466, 0.392)], both_sides=True)
    add("lid", [(0.387, 0.393), (0.408, 0.401), (0.43, 0.402), (0.452, 0.398), (0.466, 0.392)], WIDTH * 0.8,
        both_sides=True)
    for cx in (0.427, 0.573):
        ring = [(cx + 0.0105 * np.cos(a), 0.388 + 0.0105 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 9)[:-1]]
        s.append({"group": "iris", "width": WIDTH * 0.8, "points": catmull_rom(ring, closed=True)})
        s.append({"group": "iris", "width": 0.011, "points": [[round(cx, 5), 0.388]]})
    # nose: one side of the bridge, the wings and the base
    add("nose", [(0.483, 0.395), (0.478, 0.43), (0.47, 0.46)], WIDTH * 0.7)
    add("nose", [(0.468, 0.455), (0.458, 0.47), (0.464, 0.484), (0.48, 0.488), (0.5, 0.494), (0.52, 0.488),
                 (0.536, 0.484), (0.542, 0.47), (0.532, 0.455)])
    # lips: mouth line, upper lip with the cupid's bow, lower lip
    add("lips", [(0.445, 0.553), (0.47, 0.556), (0.5, 0.555), (0.53, 0.556), (0.555, 0.553)])
    add("lips", [(0.445, 0.553), (0.47, 0.539), (0.49, 0.535), (0.5, 0.539), (0.51, 0.535), (0.53, 0.539),
                 (0.555, 0.553)])
    add("lips", [(0.452, 0.557), (0.475, 0.572), (0.5, 0.577), (0.525, 0.572), (0.548, 0.557)])
    # neck and shoulders
    add("neck", [(0.405, 0.62), (0.41, 0.7), (0.405, 0.79)], both_sides=True)
    add("shoulders", [(0.405, 0.79), (0.33, 0.825), (0.22, 0.86), (0.12, 0.91), (0.07, 0.97), (0.06, 0.995)],
        both_sides=True)
    add("shoulders", [(0.405, 0.815), (0.45, 0.85), (0.5, 0.862), (0.55, 0.85), (0.595, 0.815)])
    return s


def long_hair_strokes() -> list[dict]:
    """The same face with long hair falling past the ears to the shoulders, and no fringe."""
    keep = [st for st in head_strokes() if st["group"] not in ("hair", "hair_flow", "ear")]
    s: list[dict] = []

    def add(group: str, pts, width: float = WIDTH, both_sides: bool = False):
        s.append({"group": group, "width": width, "points": catmull_rom(pts)})
        if both_sides:
            s.append({"group": group, "width": width, "points": catmull_rom(mirror(pts))})

    # outer silhouette: crown, then down past the face to the shoulders on both sides
    add("hair", [(0.23, 0.78), (0.25, 0.62), (0.27, 0.45), (0.285, 0.3), (0.33, 0.2), (0.41, 0.135), (0.5, 0.118),
                 (0.59, 0.135), (0.67, 0.2), (0.715, 0.3), (0.73, 0.45), (0.75, 0.62), (0.77, 0.78)])
    # parting and the inner edge framing the face
    add("hair", [(0.48, 0.14), (0.44, 0.2), (0.38, 0.26), (0.345, 0.33), (0.33, 0.42), (0.335, 0.52),
                 (0.35, 0.6), (0.36, 0.7), (0.33, 0.78)], both_sides=False)
    add("hair", [(0.48, 0.14), (0.55, 0.2), (0.62, 0.26), (0.655, 0.33), (0.67, 0.42), (0.665, 0.52),
                 (0.65, 0.6), (0.64, 0.7), (0.67, 0.78)])
    add("hair_flow", [(0.42, 0.17), (0.35, 0.25), (0.31, 0.38), (0.3, 0.55), (0.29, 0.7)], WIDTH * 0.7,
        both_sides=True)
    add("hair_flow", [(0.45, 0.16), (0.4, 0.22), (0.37, 0.3)], WIDTH * 0.7)
    return s + keep


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE.parent))
    from PIL import Image

    from backend.sketch.raster import rasterize_strokes
    from backend.weights import atomic_write_text

    doc = {"version": 1, "frame": "normalized", "width": 512, "height": 512, "strokes": head_strokes(),
           "comment": "S3D for Blender example: a frontal head drawn as strokes by examples/make_example_sketch.py"}
    docs = {"head_front": doc,
            "head_long_hair": dict(doc, strokes=long_hair_strokes(),
                                   comment="S3D for Blender example: the same face with long hair")}
    for name, d in docs.items():
        atomic_write_text(HERE / f"{name}.json", json.dumps(d, indent=None, separators=(",", ":")) + "\n")
        Image.fromarray(rasterize_strokes(d, 512)).save(HERE / f"{name}.png", optimize=True)
        print(f"wrote {HERE / (name + '.json')} ({len(d['strokes'])} strokes) and {HERE / (name + '.png')}")


if __name__ == "__main__":
    main()
