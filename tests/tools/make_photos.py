#!/usr/bin/env python3
"""Deterministic generator of photo-like images of handwritten digits.

The digits are real MNIST TEST-split digits, read from the committed sample
tests/data/mnist-test-sample.bin.gz (2000 x 784 raw uint8, ink high) with their
labels from the JSON next to it. Each digit is upscaled smoothly (bicubic, then
a soft threshold so strokes look like ink, not like blocky pixels), rotated a
little, placed off-centre on a simulated sheet of paper / board with uneven
lighting, texture and noise, blurred, and saved as JPEG or PNG in RGB, RGBA or
grey mode.

    python3 tests/tools/make_photos.py --out DIR --count N --seed S \
        [--sample tests/data/mnist-test-sample.bin.gz] [--style any|paper] \
        [--indexes 0,17,...]

Writes DIR/photo_NNNN.{jpg,png} and DIR/labels.json ({"photo_0000.jpg": 7, ...}).
Needs only numpy and Pillow. The same arguments always give the same files
(per-image generators seeded with (seed, n); same numpy/Pillow versions).

Digit choice: the sample's 2000 indexes are shuffled with the seed and used in
that order (wrapping after 2000), so a run uses distinct digits spread over the
whole sample; none of them was used for training (they are TEST digits).
"""
import argparse
import gzip
import json
import os

import numpy as np
from PIL import Image, ImageFilter

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SAMPLE = os.path.normpath(os.path.join(HERE, "..", "data", "mnist-test-sample.bin.gz"))


def load_sample(path):
    with gzip.open(path, "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8)
    digits = raw.reshape(-1, 28, 28)
    jpath = path[: -len(".bin.gz")] + ".json" if path.endswith(".bin.gz") else None
    labels = None
    if jpath and os.path.exists(jpath):
        with open(jpath) as f:
            labels = json.load(f)["labels"]
    return digits, labels


def smooth_noise(rng, h, w, cells):
    """Low-frequency noise in [-1, 1]: a coarse random grid upscaled bicubically."""
    gh, gw = max(2, int(round(h / cells))), max(2, int(round(w / cells)))
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    up = np.asarray(Image.fromarray(g, "F").resize((w, h), Image.BICUBIC), np.float32)
    m = np.abs(up).max()
    return up / m if m > 0 else up


def render_coverage(d28, rng, digit_h):
    """Ink coverage in [0,1] (float32) of one 28x28 digit, upscaled to about digit_h px tall."""
    a = d28.astype(np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.05)
    y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, 28)
    x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, 28)
    a = a[y0:y1, x0:x1]
    k = digit_h / max(ys.max() - ys.min() + 1, 1)
    w, h = max(2, int(round(a.shape[1] * k))), max(2, int(round(a.shape[0] * k)))
    up = np.asarray(Image.fromarray(a, "F").resize((w, h), Image.BICUBIC), np.float32)
    # soft threshold: crisp but anti-aliased stroke edges; the level varies the stroke width
    level = rng.uniform(0.22, 0.55)
    soft = rng.uniform(0.06, 0.18)
    cov = np.clip((up - level) / soft + 0.5, 0.0, 1.0)
    # a little edge softening proportional to the upscale factor
    cov_im = Image.fromarray((cov * 255 + 0.5).astype(np.uint8), "L")
    cov_im = cov_im.filter(ImageFilter.GaussianBlur(radius=float(max(0.3, 0.15 * k))))
    # rotation (<= 12 degrees)
    cov_im = cov_im.rotate(float(rng.uniform(-12, 12)), resample=Image.BICUBIC, expand=True, fillcolor=0)
    cov = np.asarray(cov_im, np.float32) / 255.0
    ys, xs = np.nonzero(cov > 0.02)
    return cov[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


def make_photo(d28, rng, style="any", info=None):
    """Return a PIL image (mode RGB, RGBA or L) of the digit, and the format to save it in.

    If info is a dict, a few of the drawn parameters are stored in it.
    """
    info = {} if info is None else info
    W = int(rng.integers(60, 401))
    H = int(rng.integers(60, 401))
    if rng.random() < 0.3:  # a good share of squarish images too
        H = int(np.clip(W * rng.uniform(0.8, 1.25), 60, 400))
    short = min(W, H)
    digit_h = short * rng.uniform(0.38, 0.8)
    cov = render_coverage(d28, rng, digit_h)
    ch, cw = cov.shape
    f = min(1.0, (H - 4) / ch, (W - 4) / cw)
    if f < 1.0:
        cov = np.clip(np.asarray(Image.fromarray(cov, "F").resize(
            (max(2, int(cw * f)), max(2, int(ch * f))), Image.BICUBIC), np.float32), 0, 1)
        ch, cw = cov.shape
    # off-centre placement anywhere inside (2 px margin)
    oy = int(rng.integers(2, H - ch - 1)) if H - ch - 1 > 2 else (H - ch) // 2
    ox = int(rng.integers(2, W - cw - 1)) if W - cw - 1 > 2 else (W - cw) // 2
    C = np.zeros((H, W), np.float32)
    C[oy: oy + ch, ox: ox + cw] = cov
    # pen pressure: ink density varies slowly along the strokes
    C *= 1.0 - rng.uniform(0.0, 0.35) * (0.5 + 0.5 * smooth_noise(rng, H, W, 20))

    dark_ink = style == "paper" or rng.random() < 0.6
    info.update(size=[W, H], digit_box=[int(ox), int(oy), int(cw), int(ch)], dark_ink=bool(dark_ink))
    tint = rng.uniform(-0.06, 0.06, 3)
    if dark_ink:
        paper = rng.uniform(0.68, 0.98) + tint
        kind = rng.random()
        if kind < 0.45:    # black / dark grey pen
            ink = np.full(3, rng.uniform(0.0, 0.25)) + rng.uniform(-0.03, 0.03, 3)
        elif kind < 0.8:   # blue pen
            ink = np.array([rng.uniform(0.0, 0.2), rng.uniform(0.05, 0.25), rng.uniform(0.35, 0.6)])
        else:              # pencil / faded marker
            ink = np.full(3, rng.uniform(0.2, 0.4))
    else:                  # chalk / white pen on a dark board or paper
        paper = rng.uniform(0.04, 0.32) + tint
        if rng.random() < 0.4:
            paper = paper * np.array([0.7, 1.0, 0.8])  # green board
        ink = np.full(3, rng.uniform(0.72, 1.0)) + rng.uniform(-0.04, 0.04, 3)
    paper = np.clip(paper, 0, 1)
    ink = np.clip(ink, 0, 1)

    # albedo: paper texture (low frequency) + ink
    tex = rng.uniform(0.0, 0.06) * smooth_noise(rng, H, W, rng.uniform(3, 12))
    albedo = (paper[None, None, :] * (1 + tex[..., None])) * (1 - C[..., None]) + ink[None, None, :] * C[..., None]

    # lighting: linear gradient + vignetting + optional soft shadow edge
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    yy, xx = yy / (H - 1) - 0.5, xx / (W - 1) - 0.5
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx + np.sin(ang) * yy) / 0.7071 * 0.5 + 0.5  # 0..1
    light = 1.0 - rng.uniform(0.0, 0.45) * ramp
    light *= 1.0 - rng.uniform(0.0, 0.45) * np.clip((xx ** 2 + yy ** 2) / 0.5, 0, 1)
    if rng.random() < 0.2:
        ang2 = rng.uniform(0, 2 * np.pi)
        dist = np.cos(ang2) * xx + np.sin(ang2) * yy - rng.uniform(-0.3, 0.3)
        width = rng.uniform(0.05, 0.2)
        light *= 1.0 - rng.uniform(0.15, 0.35) * (1 / (1 + np.exp(-dist / width * 4)))
    light *= rng.uniform(0.8, 1.15)
    img = albedo * light[..., None]

    # sensor grain (mostly luminance, some colour)
    grain = rng.uniform(0.0, 0.035)
    img = img + grain * rng.standard_normal((H, W, 1)) + 0.4 * grain * rng.standard_normal((H, W, 3))
    img = np.clip(img, 0, 1)
    im = Image.fromarray((img * 255 + 0.5).astype(np.uint8), "RGB")
    if rng.random() < 0.7:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.4) * max(1.0, short / 200))))

    if style == "paper":
        return im, "jpg" if rng.random() < 0.6 else "png"
    m = rng.random()
    if m < 0.5:
        return im, "jpg" if rng.random() < 0.6 else "png"
    if m < 0.75:
        return im.convert("L"), "jpg" if rng.random() < 0.6 else "png"
    if rng.random() < 0.75:   # opaque RGBA photo
        im = im.convert("RGBA")
    else:                     # drawing-app style: ink colour, alpha = coverage, transparent background
        rgb = np.broadcast_to((ink * 255 + 0.5).astype(np.uint8), (H, W, 3))
        alpha = (np.clip(C, 0, 1) * 255 + 0.5).astype(np.uint8)
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    return im, "png"


def save(im, path, fmt, rng):
    if fmt == "jpg":
        im.save(path, "JPEG", quality=int(rng.integers(30, 96)))
    else:
        im.save(path, "PNG", optimize=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", default=DEFAULT_SAMPLE)
    ap.add_argument("--labels", help="labels JSON (default: the .json next to --sample)")
    ap.add_argument("--style", choices=["any", "paper"], default="any",
                    help="'paper': dark ink on light paper, RGB only")
    ap.add_argument("--indexes", help="comma-separated sample indexes to use instead of the shuffled order")
    ap.add_argument("--meta", action="store_true",
                    help="also write meta.json: per file the sample index and some drawn parameters")
    args = ap.parse_args()

    digits, labels = load_sample(args.sample)
    if args.labels:
        with open(args.labels) as f:
            labels = json.load(f)["labels"]
    if labels is None:
        raise SystemExit("no labels: pass --labels")
    if args.indexes:
        order = [int(v) for v in args.indexes.split(",")]
        args.count = len(order)
    else:
        order = np.random.default_rng([args.seed, 1]).permutation(len(digits))
    os.makedirs(args.out, exist_ok=True)
    out, meta = {}, {}
    for n in range(args.count):
        idx = int(order[n % len(order)])
        rng = np.random.default_rng([args.seed, 2, n])
        info = {"index": idx}
        im, fmt = make_photo(digits[idx], rng, args.style, info)
        name = f"photo_{n:04d}.{fmt}"
        save(im, os.path.join(args.out, name), fmt, rng)
        out[name] = int(labels[idx])
        info.update(mode=im.mode, format=fmt)
        meta[name] = info
    with open(os.path.join(args.out, "labels.json"), "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    if args.meta:
        with open(os.path.join(args.out, "meta.json"), "w") as f:
            json.dump(meta, f, indent=0, sort_keys=True)
            f.write("\n")
    print(f"wrote {args.count} images and labels.json to {args.out}")


if __name__ == "__main__":
    main()
