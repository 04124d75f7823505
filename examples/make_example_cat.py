"""Draw this project's example cat sketch: a frontal cat face as stroke JSON, and its PNG rendering.

The strokes are written by hand here (control points in the normalised input frame, x right, y down,
smoothed with the Catmull-Rom splines of examples/make_example_sketch.py), placed like SynCat's clean
sketches (docs/syncat.md: the median content box of SynCat drawings is centred at (0.49, 0.555), about
0.86 wide and high, ear tips near the top, chest lines at the bottom): head outline with cheek fur, two
triangular ears with their inner lines, almond eyes with slit pupils, the nose pad, the mouth, three
whiskers a side and the neck / chest. The PNG is drawn by backend.sketch.raster.rasterize_strokes, the
same rasteriser inference uses.

Run: ``python examples/make_example_cat.py`` (writes examples/cat_front.{json,png}); then, once cat
weights exist (docs/models.md, "Cats"): ``s3d generate examples/cat_front.json --subject cat --out out/cat``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_example_sketch import WIDTH, catmull_rom, mirror


def cat_strokes() -> list[dict]:
    """The cat's strokes: ``[{"group", "width", "points": [[x, y], ...]}, ...]`` in the normalised frame."""
    s: list[dict] = []

    def add(group: str, pts, width: float = WIDTH, closed: bool = False, both_sides: bool = False, smooth=True):
        def line(p):
            return catmull_rom(p, closed=closed) if smooth else [[round(x, 5), round(y, 5)] for x, y in p]

        s.append({"group": group, "width": width, "points": line(pts)})
        if both_sides:
            s.append({"group": group, "width": width, "points": line(mirror(pts))})

    # head outline: crown between the ears, cheeks with tufts of fur, chin (one stroke, both sides)
    add("head", [(0.25, 0.33), (0.2, 0.42), (0.165, 0.52), (0.15, 0.6), (0.175, 0.66), (0.16, 0.69), (0.21, 0.73),
                 (0.28, 0.78), (0.37, 0.815), (0.5, 0.83), (0.63, 0.815), (0.72, 0.78), (0.79, 0.73), (0.84, 0.69),
                 (0.825, 0.66), (0.85, 0.6), (0.835, 0.52), (0.8, 0.42), (0.75, 0.33)])
    add("head", [(0.36, 0.27), (0.43, 0.255), (0.5, 0.252), (0.57, 0.255), (0.64, 0.27)])
    # ears: outer triangle (straight edges) and the inner fold line
    add("ear", [(0.25, 0.335), (0.2, 0.14), (0.36, 0.272)], WIDTH * 1.1, both_sides=True, smooth=False)
    add("ear", [(0.245, 0.3), (0.22, 0.19), (0.31, 0.27)], WIDTH * 0.7, both_sides=True)
    # eyes: almond outlines and slit pupils
    add("eye", [(0.3, 0.47), (0.33, 0.435), (0.375, 0.425), (0.415, 0.44), (0.43, 0.475), (0.4, 0.5),
                (0.355, 0.505), (0.315, 0.492)], closed=True, both_sides=True)
    add("pupil", [(0.367, 0.433), (0.362, 0.465), (0.367, 0.497)], WIDTH * 2.2, both_sides=True)
    # nose pad: an inverted triangle with rounded corners, then the philtrum and the mouth ("w")
    add("nose", [(0.465, 0.575), (0.5, 0.57), (0.535, 0.575), (0.52, 0.595), (0.5, 0.61), (0.48, 0.595)],
        closed=True)
    add("mouth", [(0.5, 0.61), (0.5, 0.64)], WIDTH * 0.9, smooth=False)
    add("mouth", [(0.5, 0.64), (0.475, 0.66), (0.445, 0.663), (0.42, 0.65)], both_sides=True)
    # whiskers: three a side, fanning out from the whisker pads
    for y0, y1 in ((0.62, 0.575), (0.635, 0.64), (0.65, 0.7)):
        add("whiskers", [(0.42, y0), (0.28, (2 * y0 + y1) / 3), (0.06, y1)], WIDTH * 0.6, both_sides=True)
    # neck and chest fur below the chin
    add("neck", [(0.27, 0.78), (0.25, 0.88), (0.2, 0.97)], both_sides=True)
    add("neck", [(0.44, 0.86), (0.47, 0.9), (0.5, 0.88), (0.53, 0.91), (0.56, 0.87)], WIDTH * 0.7)
    return s


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from PIL import Image

    from backend.sketch.raster import rasterize_strokes
    from backend.weights import atomic_write_text

    doc = {"version": 1, "frame": "normalized", "width": 512, "height": 512, "strokes": cat_strokes(),
           "comment": "S3D for Blender example: a frontal cat face drawn as strokes by examples/make_example_cat.py "
                      "(generate with --subject cat)"}
    atomic_write_text(HERE / "cat_front.json", json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    Image.fromarray(rasterize_strokes(doc, 512)).save(HERE / "cat_front.png", optimize=True)
    print(f"wrote {HERE / 'cat_front.json'} ({len(doc['strokes'])} strokes) and {HERE / 'cat_front.png'}")


if __name__ == "__main__":
    main()
