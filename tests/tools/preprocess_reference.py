#!/usr/bin/env python3
"""Run the reference preprocessing (examples/mnist/preprocess.py) on images
and write its 28x28 outputs as JSON, so that the Rust port
(src/imaging/preprocess/) can be compared with it value by value.

    python3 tests/tools/preprocess_reference.py --out REF.json \
        [--edge-cases DIR] [--pillow-png DIR] IMAGE_OR_DIR...

IMAGE_OR_DIR: image files, or directories whose *.jpg/*.jpeg/*.png are used
(sorted by name).
--edge-cases DIR: first write synthetic edge cases into DIR and include them
    (RGBA with a transparent background, dark and light ink; LA; a palette
    image with transparency; light-on-dark; 16-bit grey (both of the 16-bit
    scaling rules) and 16-bit RGB PNGs; a blank and an all-black image, which
    give None; a tiny 5x5; a very wide 2000x60; a digit cut by the border).
--pillow-png DIR: for every JPEG, also write Pillow's decoded pixels as a
    lossless PNG into DIR and include it: JPEG decoders differ by a few grey
    levels, so the PNG copy compares the port with the same input pixels,
    while the JPEG itself shows the end-to-end difference.

Output: {"preprocess_py": path, "cases": [{"name", "path", "mode", "size":
[w, h], "output": 784 floats (row-major) or null, "debug": {...}}]}.
Needs numpy and Pillow only.
"""
import argparse
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..", "..", "examples", "mnist")))
import preprocess as pp  # noqa: E402


def draw_digit(w, h, box, width, ink, paper, mode="L"):
    """A '2'-like stroke drawn with lines and an arc inside box (x0, y0, x1, y1)."""
    im = Image.new(mode, (w, h), paper)
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    d.arc([x0, y0, x1, y0 + bh * 0.55], 180, 20, fill=ink, width=width)
    d.line([(x1 - bw * 0.05, y0 + bh * 0.35), (x0, y1)], fill=ink, width=width)
    d.line([(x0, y1), (x1, y1)], fill=ink, width=width)
    return im


def write_png16_rgb(path, arr):
    """uint16 [H,W,3] -> a 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def make_edge_cases(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(12345)
    paths = []

    def save(im, name):
        p = os.path.join(out, name)
        im.save(p)
        paths.append(p)

    # drawing-app style: ink colour everywhere, alpha = coverage
    cov = np.asarray(draw_digit(160, 160, (40, 30, 120, 130), 12, 255, 0), np.uint8)
    rgb = np.zeros((160, 160, 3), np.uint8)
    save(Image.fromarray(np.dstack([rgb + 20, cov]), "RGBA"), "edge_rgba_dark_ink_transparent.png")
    save(Image.fromarray(np.dstack([rgb + 240, cov]), "RGBA"), "edge_rgba_light_ink_transparent.png")
    save(Image.fromarray(np.dstack([cov * 0 + 30, cov]), "LA"), "edge_la_transparent.png")
    # palette image with a transparent background entry
    pal = Image.fromarray((cov > 127).astype(np.uint8), "P")
    pal.putpalette([255, 255, 255, 10, 10, 90] + [0] * 762)
    pal.info["transparency"] = 0
    save(pal, "edge_palette_transparency.png")
    # light ink on a dark board, and the same as dark on light (RGB)
    base = np.asarray(draw_digit(200, 150, (70, 25, 140, 125), 10, 255, 0), np.float64) / 255
    ramp = np.linspace(0, 1, 200)[None, :] * 0.15
    noise = rng.normal(0, 0.02, (150, 200))
    light = np.clip(0.15 + ramp + 0.7 * base + noise, 0, 1)
    save(Image.fromarray((np.dstack([light] * 3) * 255 + 0.5).astype(np.uint8), "RGB"), "edge_light_on_dark.png")
    save(Image.fromarray(((1 - np.dstack([light] * 3)) * 255 + 0.5).astype(np.uint8), "RGB"), "edge_dark_on_light.png")
    # 16-bit grey: full range (divided by 65535) and low values (divided by 255)
    g16 = np.clip(0.85 - 0.7 * base + noise * 0.5, 0, 1)
    save(Image.fromarray((g16 * 65535 + 0.5).astype(np.uint16)), "edge_grey16.png")
    save(Image.fromarray((g16 * 255 + 0.5).astype(np.uint16)), "edge_grey16_low.png")
    p = os.path.join(out, "edge_rgb16.png")
    write_png16_rgb(p, (np.dstack([g16, g16 * 0.9, g16 * 0.8]) * 65535 + 0.5).astype(np.uint16))
    paths.append(p)
    # nothing to find
    save(Image.new("RGB", (120, 90), (200, 190, 180)), "edge_blank.png")
    save(Image.new("L", (64, 64), 0), "edge_black.png")
    # tiny 5x5 with a dark L shape
    t = np.full((5, 5), 230, np.uint8)
    t[1:4, 1] = 20
    t[3, 1:4] = 20
    save(Image.fromarray(t, "L"), "edge_tiny5x5.png")
    # very wide strip with the digit somewhere
    wide = draw_digit(2000, 60, (1300, 8, 1335, 52), 6, (30, 30, 60), (220, 215, 200), "RGB")
    save(wide, "edge_wide2000x60.png")
    # digit cut by the left border, plus a small speck
    cut = draw_digit(150, 150, (-20, 20, 60, 120), 10, 10, 235)
    ImageDraw.Draw(cut).ellipse([120, 120, 124, 124], fill=60)
    save(cut, "edge_cut_by_border.png")
    return paths


def list_images(args):
    out = []
    for a in args:
        if os.path.isdir(a):
            out += [os.path.join(a, f) for f in sorted(os.listdir(a))
                    if f.lower().endswith((".jpg", ".jpeg", ".png"))]
        else:
            out.append(a)
    return out


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*")
    ap.add_argument("--out", required=True)
    ap.add_argument("--edge-cases", metavar="DIR")
    ap.add_argument("--pillow-png", metavar="DIR")
    args = ap.parse_args()

    paths = make_edge_cases(args.edge_cases) if args.edge_cases else []
    paths += list_images(args.images)
    if args.pillow_png:
        os.makedirs(args.pillow_png, exist_ok=True)
        for p in list(paths):
            if p.lower().endswith((".jpg", ".jpeg")):
                q = os.path.join(args.pillow_png, os.path.basename(p) + ".pillow.png")
                Image.open(p).save(q)
                paths.append(q)

    cases = []
    for p in paths:
        im = Image.open(p)
        mode, size = im.mode, list(im.size)
        dbg = {}
        x = pp.preprocess(p, dbg)
        cases.append({
            "name": os.path.basename(p), "path": os.path.abspath(p), "mode": mode, "size": size,
            "output": None if x is None else [float(v) for v in x.ravel()],
            "debug": {k: jsonable(v) for k, v in dbg.items()},
        })
        print(f"{os.path.basename(p)}: {mode} {size[0]}x{size[1]} -> "
              f"{'None' if x is None else 'ok'} {dbg}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump({"preprocess_py": os.path.abspath(pp.__file__), "cases": cases}, f)
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
