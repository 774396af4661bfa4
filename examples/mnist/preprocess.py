#!/usr/bin/env python3
"""Reference photo -> 28x28 MNIST-style preprocessing (numpy + Pillow only).

This is the specification that the Rust server ports line by line. Every step
is deterministic and its parameters are the constants below.

Output contract (what the model in src/mnist/model.onnx expects):
float32 [28,28], values in [0,1], INK HIGH (white digit on black), the ink
bounding box's longer side scaled to 20 px, and the ink centre of mass at
(row 14.0, col 14.0) in pixel-index coordinates (pixel centres are integers),
exactly like the MNIST data.

Steps (coordinates: row/col indices, pixel centres at integers):

 1. load_grey: decode; apply the EXIF orientation; to grey in [0,1] with
    grey = (0.299 R + 0.587 G + 0.114 B) / 255 computed in float, except
    for colour JPEGs, decoded straight to their luma (Y / 255). An image
    with an alpha channel that is not fully opaque is composited over white
    if its mostly-opaque pixels (alpha >= 128) are dark on average (grey < 0.5),
    else over black (a drawing with a transparent background).
 2. resize by k = min(WORK_SHORT / shorter side, WORK_LONG / longer side)
    (up or down; new size floor(side * k + 0.5), at least 1), with the
    separable antialiased triangle filter of `resize` (bilinear when
    enlarging; a triangle as wide as the scale factor when shrinking).
 3. polarity: high-pass h = g - box_blur(g, POL_RADIUS) (window mean over
    the pixels inside the image); the ink is the side of the heavier tail:
    dark ink if sum(h^3) < 0 (negative skew), else light ink; light ink is
    inverted (g = 1 - g) so that from now on the ink is dark on light.
 4. background: bg = closing of g (max filter then min filter, square
    window 2*BG_RADIUS+1) removes the strokes. It is computed on g padded by
    2*BG_RADIUS px of point reflection (pad value 2*edge - mirror, see
    pad_odd: a lighting ramp or shadow that reaches the border continues
    beyond it, so the closing keeps it as background), then cropped back.
    d = clip((bg - g) / max(bg, BG_FLOOR), 0, 1) is the ink strength
    relative to the local paper brightness (this cancels uneven lighting).
 5. threshold: if max d < MIN_CONTRAST there is no ink: return None.
    Otsu on the histogram of d (OTSU_BINS bins over [0, max d]; see otsu);
    t = max(otsu, MIN_THRESHOLD * max d). mask = d > t.
 6. components (8-connected) of mask. Candidates: the components that do
    not touch the image border, if the largest of them has at least
    BORDER_RATIO times the area of the largest component overall (dark
    edges, shadows and vignetting touch the border); otherwise all of them.
    main = the largest candidate; give up (return None) if it has fewer than
    MIN_PIXELS pixels. Keep main and every candidate whose area >= KEEP_AREA *
    main's area and whose bounding box is at most KEEP_GAP * (longer side of
    main's box) away from main's box.
 7. ink: v = clip((d - lo) / max(hi - lo, 1e-6), 0, 1) with lo = LO_FRACTION * t
    and hi = the HI_PERCENTILE-th percentile of d over the kept pixels
    (numpy's default: linear interpolation between the sorted values; 50 =
    the median). Then v = 0 wherever no kept pixel lies in the square window
    of radius KEEP_DILATE around it (erases ink of dropped components).
 8. box = the kept pixels' bounding box, L = max(height, width) (in pixels,
    max - min + 1); s = BOX / L output pixels per working pixel. (cy, cx) =
    centre of mass of v.
 9. output pixel (i, j) samples the working image at
    (cy + (i - COM) / s, cx + (j - COM) / s) with the same separable triangle
    filter (width max(1, 1/s) working pixels; zeros outside the image).
10. divide by the maximum if it is below 1 (so that the strokes' core is 1),
    clip to [0, 1], float32.

CLI:
    preprocess.py IMAGE...                    print the 28x28 as ASCII art
    preprocess.py --model M.onnx IMAGE...     also classify with onnxruntime
    preprocess.py --model M.onnx --eval DIR   accuracy over DIR/labels.json
    --dump DIR                                also write each 28x28 as PNG (x8)
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageOps

WORK_SHORT = 128     # working size: shorter side, px ...
WORK_LONG = 384      # ... unless the longer side would exceed this
POL_RADIUS = 40      # box blur radius for the polarity high-pass (window 81)
BG_RADIUS = 15       # closing radius for the background (window 31)
BG_FLOOR = 0.1       # minimum background brightness used as divisor
OTSU_BINS = 256
MIN_CONTRAST = 0.08  # strongest ink must be >= 8% darker than its local background
MIN_THRESHOLD = 0.2  # threshold never below 20% of the strongest ink
MIN_PIXELS = 10      # fewer ink pixels than this in the main component: no digit
BORDER_RATIO = 0.25  # prefer components off the border if one has >= 25% of the largest's area
KEEP_AREA = 0.08     # keep components with >= 8% of the main one's area ...
KEEP_GAP = 0.3       # ... that lie within 30% of its box size from its box
KEEP_DILATE = 2      # ink farther than this (px, square window) from kept pixels is erased
LO_FRACTION = 0.5    # ink strength mapped to 0: LO_FRACTION * threshold
HI_PERCENTILE = 50   # ink strength mapped to 1: this percentile of d over the kept pixels
BOX = 20.0           # longer side of the ink box in the output, px
COM = 14.0           # where the centre of mass goes (row and col index)
OUT = 28


# --------------------------------------------------------------------------- 1

def load_grey(src):
    """Path or PIL image -> float64 [H,W] grey in [0,1] (step 1)."""
    im = src if isinstance(src, Image.Image) else Image.open(src)
    if im.format == "JPEG" and im.mode == "RGB":
        # The luma straight from the decoder (libjpeg's grey output): the
        # grey wanted here, without upsampling and converting the chroma,
        # most of a colour JPEG's decoding time. The Rust server does the
        # same (src/imaging/decode/jpeg.rs, decode_luma).
        im.draft("L", None)
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), np.float64) / 255.0
        grey = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]
        a = rgba[..., 3]
        if a.min() < 1.0:
            opaque = a >= 0.5
            fg = grey[opaque].mean() if opaque.any() else grey.mean()
            under = 1.0 if fg < 0.5 else 0.0
            grey = a * grey + (1.0 - a) * under
        return grey
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, np.float64)
        return np.clip(a / (65535.0 if a.max() > 255 else 255.0), 0, 1)
    if im.mode == "F":
        a = np.asarray(im, np.float64)
        return np.clip(a / 255.0 if a.max() > 1.0 else a, 0, 1)
    if im.mode == "L":
        return np.asarray(im, np.float64) / 255.0
    rgb = np.asarray(im.convert("RGB"), np.float64) / 255.0
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# --------------------------------------------------------------------------- helpers

def resample_matrix(n_in, centres, f):
    """Weights [len(centres), n_in] of the antialiased triangle filter.

    Output sample k is centred at input coordinate centres[k] (pixel centres at
    integers). f = input pixels per output pixel; the triangle has half-width
    w = max(1, f): weight(x) = max(0, 1 - |x - centre| / w). Each row is divided
    by the sum of its weights over ALL integer x (inside or outside the image),
    so pixels outside the image count as zeros (ink-free).
    """
    w = max(1.0, f)
    m = np.zeros((len(centres), n_in))
    for k, c in enumerate(centres):
        lo, hi = int(np.floor(c - w)), int(np.ceil(c + w))
        xs = np.arange(lo, hi + 1)
        wt = np.maximum(0.0, 1.0 - np.abs(xs - c) / w)
        total = wt.sum()
        if total <= 0:
            continue
        inside = (xs >= 0) & (xs < n_in)
        m[k, xs[inside]] = wt[inside] / total
    return m


def resize(a, out_h, out_w):
    """Resize [H,W] to [out_h,out_w]: image corners stay corners (step 2)."""
    h, w = a.shape
    fy, fx = h / out_h, w / out_w
    cy = (np.arange(out_h) + 0.5) * fy - 0.5
    cx = (np.arange(out_w) + 0.5) * fx - 0.5
    # edge pixels: renormalise over the pixels inside (no zero padding when resizing a photo)
    my = resample_matrix(h, cy, fy)
    mx = resample_matrix(w, cx, fx)
    my /= np.maximum(my.sum(1, keepdims=True), 1e-12)
    mx /= np.maximum(mx.sum(1, keepdims=True), 1e-12)
    return my @ a @ mx.T


def box_blur(a, r):
    """Mean over the (2r+1)^2 window, counting only the pixels inside the image."""
    def along(x, axis):
        x = np.moveaxis(x, axis, 0)
        n = x.shape[0]
        c = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, 0)], 0)
        i = np.arange(n)
        lo, hi = np.clip(i - r, 0, n), np.clip(i + r + 1, 0, n)
        s = (c[hi] - c[lo]) / (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))
        return np.moveaxis(s, 0, axis)
    return along(along(a, 0), 1)


def max_filter(a, r):
    """Max over the (2r+1)^2 window (pixels inside the image only)."""
    return _minmax(a, r, np.maximum)


def min_filter(a, r):
    return _minmax(a, r, np.minimum)


def _minmax(a, r, op):
    out = a
    for axis in (0, 1):
        x = out
        n = x.shape[axis]
        res = x.copy()
        for k in range(1, r + 1):
            if k >= n:
                break
            sl_a = [slice(None)] * 2
            sl_b = [slice(None)] * 2
            sl_a[axis], sl_b[axis] = slice(k, None), slice(None, n - k)
            # res[i] = op(res[i], x[i+k]) and res[i] = op(res[i], x[i-k])
            res[tuple(sl_b)] = op(res[tuple(sl_b)], x[tuple(sl_a)])
            res[tuple(sl_a)] = op(res[tuple(sl_a)], x[tuple(sl_b)])
        out = res
    return out


def pad_odd(a, p):
    """Pad [H,W] by p px on every side with point reflection about the edge pixels:
    row -k (k=1..p) = 2*row[0] - row[min(k, H-1)]; same at the bottom and for columns
    (rows first, then columns of the row-padded array)."""
    for axis in (0, 1):
        a = np.moveaxis(a, axis, 0)
        n = a.shape[0]
        k = np.minimum(np.arange(1, p + 1), n - 1)
        top = 2 * a[0] - a[k]            # top[k-1] is row -k
        bot = 2 * a[n - 1] - a[n - 1 - k]  # bot[k-1] is row n-1+k
        a = np.concatenate([top[::-1], a, bot], 0)
        a = np.moveaxis(a, 0, axis)
    return a


def otsu(values, bins, vmax):
    """Otsu threshold of values in [0, vmax]; returns the upper edge of the best lower class."""
    hist = np.histogram(values, bins=bins, range=(0.0, vmax))[0].astype(np.float64)
    centres = (np.arange(bins) + 0.5) * vmax / bins
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mt = m0[-1]
    valid = (w0 > 0) & (w1 > 0)
    between = np.zeros(bins)
    between[valid] = (mt * w0[valid] / w0[-1] - m0[valid]) ** 2 / (w0[valid] * w1[valid])
    k = int(np.argmax(between))  # first maximum
    return (k + 1) * vmax / bins


def components(mask):
    """8-connected components: (labels [H,W] int, areas list, boxes list of (r0,c0,r1,c1)).

    Labels are numbered 1.. in raster order of their first pixel.
    """
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    areas, boxes = [], []
    for r0 in range(h):
        for c0 in np.nonzero(mask[r0] & (labels[r0] == 0))[0]:
            if labels[r0, c0]:
                continue
            lab = len(areas) + 1
            labels[r0, c0] = lab
            stack = [(r0, int(c0))]
            area, box = 0, [r0, int(c0), r0, int(c0)]
            while stack:
                r, c = stack.pop()
                area += 1
                box = [min(box[0], r), min(box[1], c), max(box[2], r), max(box[3], c)]
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not labels[rr, cc]:
                            labels[rr, cc] = lab
                            stack.append((rr, cc))
            areas.append(area)
            boxes.append(tuple(box))
    return labels, areas, boxes


def box_gap(a, b):
    """Distance between two boxes (r0,c0,r1,c1): max of the row and column gaps, 0 if they overlap."""
    gr = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    gc = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return max(gr, gc)


# --------------------------------------------------------------------------- pipeline

def preprocess_grey(g, debug=None):
    """Grey [H,W] in [0,1] -> float32 [28,28] (ink high), or None if no ink is found."""
    # 2. working size
    h, w = g.shape
    k = min(WORK_SHORT / min(h, w), WORK_LONG / max(h, w))
    wh, ww = max(1, int(np.floor(h * k + 0.5))), max(1, int(np.floor(w * k + 0.5)))
    g = resize(g, wh, ww)

    # 3. polarity
    hp = g - box_blur(g, POL_RADIUS)
    light_ink = float(np.sum(hp ** 3)) > 0.0
    if light_ink:
        g = 1.0 - g

    # 4. background and relative ink strength
    p = 2 * BG_RADIUS
    bg = min_filter(max_filter(pad_odd(g, p), BG_RADIUS), BG_RADIUS)[p:-p, p:-p]
    d = np.clip((bg - g) / np.maximum(bg, BG_FLOOR), 0.0, 1.0)

    # 5. threshold
    dmax = float(d.max())
    if dmax < MIN_CONTRAST:
        return None
    t = max(otsu(d.ravel(), OTSU_BINS, dmax), MIN_THRESHOLD * dmax)
    mask = d > t

    # 6. components
    labels, areas, boxes = components(mask)
    if not areas:
        return None
    H, W = mask.shape
    inner = [i for i, b in enumerate(boxes) if b[0] > 0 and b[1] > 0 and b[2] < H - 1 and b[3] < W - 1]
    cand = list(range(len(areas)))
    if inner and max(areas[i] for i in inner) >= BORDER_RATIO * max(areas):
        cand = inner
    big = max(cand, key=lambda i: (areas[i], -i))   # largest; the first one on ties
    if areas[big] < MIN_PIXELS:
        return None
    bb = boxes[big]
    side = max(bb[2] - bb[0] + 1, bb[3] - bb[1] + 1)
    keep_ids = [i + 1 for i in cand
                if i == big or (areas[i] >= KEEP_AREA * areas[big] and box_gap(boxes[i], bb) <= KEEP_GAP * side)]
    kept = np.isin(labels, keep_ids)

    # 7. ink image
    hi = float(np.percentile(d[kept], HI_PERCENTILE))
    lo = LO_FRACTION * t
    v = np.clip((d - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    v = v * max_filter(kept.astype(np.float64), KEEP_DILATE)

    # 8. box, scale, centre of mass
    rows, cols = np.nonzero(kept)
    L = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    s = BOX / L
    total = v.sum()
    ri, ci = np.mgrid[0:v.shape[0], 0:v.shape[1]]
    cy, cx = float((v * ri).sum() / total), float((v * ci).sum() / total)

    # 9. resample into 28x28
    grid = np.arange(OUT, dtype=np.float64)
    my = resample_matrix(v.shape[0], cy + (grid - COM) / s, 1.0 / s)
    mx = resample_matrix(v.shape[1], cx + (grid - COM) / s, 1.0 / s)
    out = my @ v @ mx.T

    # 10. strokes' core to 1
    m = out.max()
    if 0 < m < 1:
        out = out / m
    if debug is not None:
        debug.update(light_ink=light_ink, threshold=t, hi=hi, box=L, scale=s, com=(cy, cx),
                     n_components=len(areas), kept=len(keep_ids), work=(wh, ww))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def preprocess(src, debug=None):
    """Path or PIL image -> float32 [28,28] in [0,1], ink high; None if no ink found."""
    return preprocess_grey(load_grey(src), debug)


# --------------------------------------------------------------------------- CLI

def ascii_art(x):
    chars = " .:-=+*#%@"
    return "\n".join("".join(chars[min(9, int(v * 10))] * 2 for v in row) for row in x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*")
    ap.add_argument("--model", help="ONNX model to classify with (onnxruntime)")
    ap.add_argument("--eval", metavar="DIR", help="directory with labels.json ({file: label})")
    ap.add_argument("--dump", metavar="DIR", help="write each 28x28 result as PNG (x8) here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    sess = None
    if args.model:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])

    def classify(x):
        if x is None:
            return None, None
        logits = sess.run(["logits"], {"input": x.reshape(1, 1, 28, 28)})[0][0]
        return int(np.argmax(logits)), logits

    if args.dump:
        os.makedirs(args.dump, exist_ok=True)

    def dump(name, x):
        if args.dump and x is not None:
            im = Image.fromarray((x * 255 + 0.5).astype(np.uint8), "L").resize((224, 224), Image.NEAREST)
            im.save(os.path.join(args.dump, os.path.splitext(os.path.basename(name))[0] + ".png"))

    if args.eval:
        if sess is None:
            sys.exit("--eval needs --model")
        with open(os.path.join(args.eval, "labels.json")) as f:
            labels = json.load(f)
        ok, wrong = 0, []
        for name in sorted(labels):
            x = preprocess(os.path.join(args.eval, name))
            dump(name, x)
            pred, _ = classify(x)
            if pred == labels[name]:
                ok += 1
            else:
                wrong.append((name, labels[name], pred))
        n = len(labels)
        if not args.quiet:
            for name, want, got in wrong:
                print(f"wrong: {name} label {want} predicted {got}")
        print(f"accuracy {ok}/{n} = {ok / n:.4f}")
        return

    for path in args.images:
        dbg = {}
        x = preprocess(path, dbg)
        dump(path, x)
        if x is None:
            print(f"{path}: no digit found")
            continue
        line = path
        if sess is not None:
            pred, logits = classify(x)
            line += f": {pred}  logits {np.round(logits, 2).tolist()}"
        print(line)
        if not args.quiet:
            print(f"  {dbg}")
            print(ascii_art(x))


if __name__ == "__main__":
    main()
