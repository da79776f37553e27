#!/usr/bin/env python3
"""PIL's width-3 lines as the published generator draws Path-X's paddles, for tests/test_pathfinder_retrieval.cpp.

A line from the centre (20, 20) of a 41 x 41 black "F" image to the head ceil(20 + 10 (cos t, sin t)) for every
whole degree t (70 distinct heads): one line per head, "hx hy" then the indices (row-major) of the lit pixels.

    python3 tests/golden/pathfinder/pil_wide_lines.py > tests/golden/pathfinder/pil-wide-lines.txt

Needs NumPy and Pillow (Debian: python3-numpy python3-pil).
"""
import math

import numpy as np
import PIL
from PIL import Image, ImageDraw

SIZE, CENTRE, LENGTH, WIDTH = 41, 20, 10, 3
heads = {}
for degrees in range(-180, 180):
    t = degrees * math.pi / 180
    head = (int(math.ceil(CENTRE + LENGTH * math.cos(t))), int(math.ceil(CENTRE + LENGTH * math.sin(t))))
    if head in heads:
        continue
    im = Image.new("F", (SIZE, SIZE), "black")
    ImageDraw.Draw(im).line([(CENTRE, CENTRE), head], fill="white", width=WIDTH)
    heads[head] = np.flatnonzero(np.array(im) > 0).tolist()
print("# PIL %s ImageDraw.line width %d from (%d, %d) on %d x %d: hx hy lit-pixel-indices" %
      (PIL.__version__, WIDTH, CENTRE, CENTRE, SIZE, SIZE))
for (hx, hy), lit in heads.items():
    print(hx, hy, *lit)
