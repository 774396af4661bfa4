#!/usr/bin/env python3
"""Python side of bench/mnist.sh (run with the examples/python-mnist venv).

    mnist_py.py photo OUT.jpg
        Last-resort bench photo when neither examples/images/seven.jpg nor
        tests/data (for tests/tools/make_photos.py) exists: a "7" drawn with
        a pen-like stroke on uneven, grainy paper, blurred, saved as JPEG
        (deterministic).

    mnist_py.py infer IMAGE [--model M.onnx] [--seconds S]
        Per-image timings in ONE thread (onnxruntime intra/inter-op threads 1;
        run it with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for numpy), each
        stage timed on its own with timeit (best of 5 repeats, per call):
          decode      Image.open(bytes) + load(): JPEG/PNG decoding alone
          load_grey   decode + EXIF + to grey float64 (preprocess.py step 1)
          preprocess_img  preprocess() on the decoded image: steps 1-10
                      without the decoding (what the Rust preprocess does)
          preprocess  preprocess_grey(): steps 2-10 on the decoded grey image
          total_pre   preprocess(Image.open(bytes)): decode + steps 1-10
          ort         session.run on the 28x28, batch 1 (inference alone)
          end_to_end  total_pre + ort + argmax: what one request computes
        Prints one line per stage: "name best_us median_us loops", then the
        prediction, as "predicted D".
"""
import argparse
import io
import os
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def photo(out):
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(7)
    W, H = 320, 240
    # stroke coverage drawn at 4x, then downscaled (anti-aliased)
    s = 4
    cov = Image.new("L", (W * s, H * s), 0)
    d = ImageDraw.Draw(cov)
    pts = [(120, 62), (198, 58), (204, 64), (170, 120), (150, 178)]
    d.line([(x * s, y * s) for x, y in pts], fill=255, width=9 * s, joint="curve")
    d.line([(150 * s, 118 * s), (192 * s, 116 * s)], fill=255, width=7 * s)  # the bar of a 7
    cov = np.asarray(cov.resize((W, H), Image.LANCZOS), np.float32) / 255.0
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    light = 1.0 - 0.3 * (xx / W) - 0.15 * (yy / H)
    paper = np.array([0.86, 0.84, 0.78], np.float32)
    ink = np.array([0.08, 0.10, 0.35], np.float32)
    img = (paper * (1 - cov[..., None]) + ink * cov[..., None]) * light[..., None]
    img = np.clip(img + 0.025 * rng.standard_normal((H, W, 1)), 0, 1)
    im = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(0.8))
    im.save(out, "JPEG", quality=80)


def infer(path, model, seconds):
    sys.path.insert(0, os.path.join(REPO, "examples", "mnist"))
    import numpy as np
    import onnxruntime as ort
    from PIL import Image
    import preprocess as pp

    data = open(path, "rb").read()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def decode():
        im = Image.open(io.BytesIO(data))
        im.load()
        return im

    im = decode()
    grey = pp.load_grey(im)
    x = pp.preprocess_grey(grey)
    if x is None:
        print("predicted none (no digit found)")
        return
    x4 = x.reshape(1, 1, 28, 28)

    def run_ort():
        return sess.run(["logits"], {"input": x4})

    def end_to_end():
        y = pp.preprocess(Image.open(io.BytesIO(data)))
        return int(np.argmax(sess.run(["logits"], {"input": y.reshape(1, 1, 28, 28)})[0][0]))

    stages = [
        ("decode", decode),
        ("load_grey", lambda: pp.load_grey(decode())),
        ("preprocess_img", lambda: pp.preprocess(im)),
        ("preprocess", lambda: pp.preprocess_grey(grey)),
        ("total_pre", lambda: pp.preprocess(Image.open(io.BytesIO(data)))),
        ("ort", run_ort),
        ("end_to_end", end_to_end),
    ]
    for name, fn in stages:
        t = timeit.Timer(fn)
        n, _ = t.autorange()                       # loops lasting >= 0.2 s
        per = max(1, int(n * seconds / 5 / 0.2))   # about `seconds` in all
        runs = sorted(v / per for v in t.repeat(repeat=5, number=per))
        print(f"{name} {runs[0] * 1e6:.1f} {runs[2] * 1e6:.1f} {per}", flush=True)
    print(f"predicted {end_to_end()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("photo")
    p.add_argument("out")
    p = sub.add_parser("infer")
    p.add_argument("image")
    p.add_argument("--model", default=os.path.join(REPO, "src", "mnist", "model.onnx"))
    p.add_argument("--seconds", type=float, default=2.0, help="time per stage (default 2)")
    a = ap.parse_args()
    if a.cmd == "photo":
        photo(a.out)
    else:
        infer(a.image, a.model, a.seconds)


if __name__ == "__main__":
    main()
