#!/usr/bin/env python3
"""Render the sample photos in examples/images/ from TEST-split digits.

Uses tests/tools/make_photos.py (style "paper": dark ink on light paper, RGB)
on fixed digits of tests/data/mnist-test-sample.bin.gz. For each digit it
takes the first generator seed (0, 1, 2, ...) whose layout looks like a
typical snapshot (squarish image, digit at least 45% of the height and not
near the border; see good_layout), shrinks the image to fit MAX_SIDE px and
saves it (< 60 KB). The choice looks at the layout only, not at the model.
With --model, checks that preprocess.py + the ONNX model classify every file
correctly (exit status 1 otherwise).

    python3 examples/mnist/make_example_images.py [--model src/mnist/model.onnx]
"""
import argparse
import importlib.util
import io
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# file name -> index in the 2000-digit TEST sample
EXAMPLES = {
    "seven.jpg": 0,   # label 7
    "two.png": 1,     # label 2
    "one.jpg": 2,     # label 1
    "zero.jpg": 3,    # label 0
    "four.png": 4,    # label 4
}
MAX_SIDE = 240
MAX_BYTES = 60_000


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def good_layout(info):
    W, H = info["size"]
    x, y, w, h = info["digit_box"]
    m = 0.08
    return (0.75 <= W / H <= 1.35 and h >= 0.45 * H
            and x >= m * W and y >= m * H and x + w <= (1 - m) * W and y + h <= (1 - m) * H)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "examples", "images"))
    ap.add_argument("--model", help="check the results with this ONNX model")
    args = ap.parse_args()

    mp = load_module("make_photos", os.path.join(REPO, "tests", "tools", "make_photos.py"))
    digits, labels = mp.load_sample(mp.DEFAULT_SAMPLE)
    os.makedirs(args.out, exist_ok=True)
    written = {}
    for name, idx in EXAMPLES.items():
        for seed in range(1000):
            info = {}
            im, _ = mp.make_photo(digits[idx], np.random.default_rng([seed, 3, idx]), "paper", info)
            if good_layout(info):
                break
        im.thumbnail((MAX_SIDE, MAX_SIDE))
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        side = MAX_SIDE
        while True:
            buf = io.BytesIO()
            im.save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {"optimize": True}))
            if buf.tell() < MAX_BYTES:
                break
            side = int(side * 0.85)
            im.thumbnail((side, side))
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(buf.getvalue())
        written[name] = int(labels[idx])
        print(f"{name}: label {labels[idx]}, seed {seed}, {im.size[0]}x{im.size[1]}, {buf.tell()} bytes")

    if args.model:
        import onnxruntime as ort
        pp = load_module("preprocess", os.path.join(HERE, "preprocess.py"))
        sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
        bad = 0
        for name, label in written.items():
            x = pp.preprocess(os.path.join(args.out, name))
            pred = None if x is None else int(np.argmax(sess.run(["logits"], {"input": x.reshape(1, 1, 28, 28)})[0]))
            print(f"{name}: label {label} predicted {pred}")
            bad += pred != label
        if bad:
            sys.exit(f"{bad} example(s) misclassified")


if __name__ == "__main__":
    main()
