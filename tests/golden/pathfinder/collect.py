#!/usr/bin/env python3
"""Per-image statistics of the published Pathfinder generator, for lsbench's KS comparison.

Runs the published generator (drewlinsley/pathfinder: snakes.py and snakes2.py, unmodified, from the folder
given) with the parameters LRA's data records (../shared/spec/lra.md, "Pathfinder and Path-X") and writes one
line per image: mean intensity (0..255), share of pixels > 0, > 64 and > 128, as `lsbench data stats
pathfinder` computes them (tasks/pathfinder.cpp, image_statistics).

The generator was written for scipy.misc.imresize / imsave, which SciPy no longer has; the published
repository's own stand-ins resize float images in PIL's "F" mode, which is not what made LRA's images. They
are replaced here by what SciPy did: byte-scale the array by its own minimum and maximum (scipy.misc.bytescale),
then PIL's 8-bit Lanczos resize, or the byte-scaled image as saved. matplotlib and scipy are imported by the
generator but not used on this path; stand-ins are installed when they are missing.

    git -C /work/.mirror/drewlinsley+pathfinder/repo show HEAD:snakes.py > /tmp/pf/snakes.py   (and snakes2.py)
    python3 tests/golden/pathfinder/collect.py /tmp/pf --size 32 --count 1000 --seed 2 > stats-32.tsv
    python3 tests/golden/pathfinder/collect.py /tmp/pf --size 128 --count 1000 --seed 3 > stats-128.tsv

Needs NumPy, OpenCV and Pillow (Debian: python3-numpy python3-opencv python3-pil).
"""
import argparse
import contextlib
import os
import random
import sys
import tempfile
import types


def stub_missing(name):
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def bytescale(a, np):
    lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / (hi - lo if hi > lo else 1.0)
    return ((a - lo) * scale).clip(0, 255).__add__(0.5).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("generator_dir", help="folder holding the published snakes.py and snakes2.py")
    ap.add_argument("--size", type=int, choices=(32, 128), required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=2)
    a = ap.parse_args()

    for name in ("matplotlib", "matplotlib.pyplot", "scipy", "scipy.ndimage"):
        stub_missing(name)
    import numpy as np
    import cv2
    import PIL
    from PIL import Image

    sys.path.insert(0, os.path.abspath(a.generator_dir))
    import snakes
    import snakes2

    def imresize(arr, size, interp="lanczos"):
        arr = np.asarray(arr)
        data = arr if arr.dtype == np.uint8 else bytescale(arr, np)
        return np.array(Image.fromarray(data, "L").resize((size[1], size[0]), resample=Image.LANCZOS))

    lines = []

    def imsave(path, arr):  # the image as scipy.misc.imsave wrote it, measured instead of written
        px = bytescale(np.asarray(arr, dtype=np.float64), np).astype(np.float64)
        n = px.size
        lines.append("%.6f\t%.6f\t%.6f\t%.6f" % (px.mean(), (px > 0).sum() / n, (px > 64).sum() / n,
                                                 (px > 128).sum() / n))

    snakes._imresize = snakes2._imresize = imresize
    snakes2._imsave = imsave

    small = a.size == 32
    args = types.SimpleNamespace(
        window_size=[a.size, a.size], padding=1, antialias_scale=2, seed_distance=7 if small else 20,
        marker_radius=1.5 if small else 3, contour_length=14, distractor_length=4,
        num_distractor_snakes=5 if small else 8, snake_contrast_list=[2.0] if small else [0.9],
        paddle_contrast_list=[0.75] if small else [1.0], use_single_paddles=False,
        max_target_contour_retrial=4, max_distractor_contour_retrial=4, max_paddle_retrial=2,
        continuity=1.0 if small else 1.8, paddle_length=2 if small else 5, paddle_thickness=0.5 if small else 1.5,
        paddle_margin_list=[1] if small else [2, 3], segmentation_task=False,
        segmentation_task_double_circle=False, pause_display=False, save_images=True, save_metadata=False,
        n_images=a.count, batch_id=0)
    np.random.seed(a.seed)
    random.seed(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        args.contour_path = tmp
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            snakes2.from_wrapper(args)

    print("# published Pathfinder generator (drewlinsley/pathfinder snakes2.py), per-image statistics")
    print("# size %d, contour length 14, %d images, seed %d; NumPy %s, OpenCV %s, Pillow %s" %
          (a.size, a.count, a.seed, np.__version__, cv2.__version__, PIL.__version__))
    print("# made by tests/golden/pathfinder/collect.py; columns: mean, share > 0, share > 64, share > 128")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
