#!/usr/bin/env python3
"""Hostile uploads for the mnist server's memory tests (tests/it/mnist.rs).

    make_hostile_images.py OUT_DIR
    make_hostile_images.py OUT_DIR --big

The second form writes only big-noise.jpg: a 4600x3450 progressive JPEG of
random colour noise, about 9.7 MB, just under the default
--max-image-bytes (10 MiB): the largest upload a client may send.

The first writes, into OUT_DIR, small files that decode to huge images, and prints
one line per file: "name width height". Every file is a valid image (or a
valid header), made with zlib and Pillow only; deterministic.

  png-bomb-16k-rgba.png   16384x16384 RGBA, 8-bit, all zeros: about 1 MB of
                          deflate that inflates to 1 GiB (the issue's bomb)
  png-header-100k.png     a PNG header that declares 100000x100000 and
                          holds no pixel
  jpeg-header-65500.jpg   a JPEG frame header of 65500x65500, one empty scan
  png-palette-trns-6k.png 6000x6000 1-bit palette with transparency: 36 MP,
                          under the pixel limit, but it expands to RGBA
                          (144 MB): over the default decode memory
  png-rgba16-6k.png       6000x6000 16-bit RGBA: 36 MP, 144 MB even with its
                          samples cut to 8 bits
  jpeg-prog444-6k.jpg     6000x6000 progressive 4:4:4 colour JPEG: its
                          coefficients alone are 216 MB
  jpeg-many-scans.jpg     a progressive JPEG with its last scan repeated
                          until it has 2000 scans
  png-palette-5k.png      5000x5000 1-bit palette, no transparency: RGB,
                          75 MB, admitted (blank: no digit)
  png-grey16-5k.png       5000x5000 16-bit grey: 50 MB, admitted
  jpeg-prog420-5k.jpg     5000x5000 progressive 4:2:0 JPEG: about 100 MB
                          with its coefficients, admitted
"""
import io
import os
import struct
import sys
import zlib

from PIL import Image


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, bit_depth, colour, row_bytes, extra=b"", with_data=True):
    """A PNG of all-zero rows (each `row_bytes` long), deflated row by row."""
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)), extra]
    if with_data:
        z = zlib.compressobj(9)
        row = bytes(1 + row_bytes)  # filter byte 0, then zeros
        parts = [z.compress(row) for _ in range(height)]
        parts.append(z.flush())
        out.append(chunk(b"IDAT", b"".join(parts)))
    out.append(chunk(b"IEND", b""))
    return b"".join(out)


def jpeg_header(width, height):
    """SOI, a baseline 3-component frame header, one scan header, EOI."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0])
    sos = bytes([3, 1, 0, 2, 0, 3, 0, 0, 63, 0])
    seg = lambda m, d: bytes([0xFF, m]) + struct.pack(">H", len(d) + 2) + d
    return b"\xFF\xD8" + seg(0xC0, sof) + seg(0xDA, sos) + b"\xFF\xD9"


def jpeg(size, subsampling, progressive=True):
    im = Image.new("RGB", (size, size), (200, 190, 180))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=75, progressive=progressive, subsampling=subsampling)
    return buf.getvalue()


def many_scans(data, scans):
    """`data` (a progressive JPEG) with its last scan repeated."""
    last = data.rindex(b"\xFF\xDA")
    end = data.rindex(b"\xFF\xD9")
    have = data.count(b"\xFF\xDA")
    return data[:end] + data[last:end] * (scans - have) + data[end:]


def big_noise(out):
    import numpy as np

    noise = np.random.default_rng(2).integers(0, 256, (3450, 4600, 3), dtype=np.uint8)
    path = os.path.join(out, "big-noise.jpg")
    Image.fromarray(noise).save(path, "JPEG", quality=80, progressive=True)
    print("big-noise.jpg", 4600, 3450, os.path.getsize(path))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    if sys.argv[2:] == ["--big"]:
        return big_noise(out)
    palette = chunk(b"PLTE", bytes([255, 255, 255, 0, 0, 0]))
    small = Image.new("RGB", (64, 64), (200, 190, 180))
    buf = io.BytesIO()
    small.save(buf, "JPEG", progressive=True)
    files = {
        "png-bomb-16k-rgba.png": (png(16384, 16384, 8, 6, 16384 * 4), 16384, 16384),
        "png-header-100k.png": (png(100_000, 100_000, 8, 0, 0, with_data=False), 100_000, 100_000),
        "jpeg-header-65500.jpg": (jpeg_header(65500, 65500), 65500, 65500),
        "png-palette-trns-6k.png": (png(6000, 6000, 1, 3, 750, palette + chunk(b"tRNS", b"\x00")), 6000, 6000),
        "png-rgba16-6k.png": (png(6000, 6000, 16, 6, 6000 * 8), 6000, 6000),
        "jpeg-prog444-6k.jpg": (jpeg(6000, 0), 6000, 6000),
        "jpeg-many-scans.jpg": (many_scans(buf.getvalue(), 2000), 64, 64),
        "png-palette-5k.png": (png(5000, 5000, 1, 3, 625, palette), 5000, 5000),
        "png-grey16-5k.png": (png(5000, 5000, 16, 0, 10000), 5000, 5000),
        "jpeg-prog420-5k.jpg": (jpeg(5000, 2), 5000, 5000),
    }
    for name, (data, w, h) in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(name, w, h, len(data))


if __name__ == "__main__":
    main()
