"""The bundled MNIST model served the way Python model servers usually are:
Flask + onnxruntime + Pillow + numpy, run by gunicorn with gevent workers,
wrapped by modelarts-init:

    modelarts-init -- gunicorn -k gevent -w 2 --keep-alive 200 -b 127.0.0.1:8081 app:app

Routes:

    POST /        multipart field "images" (a JPEG or PNG photo of one digit)
                  -> {"mnist_result": d}; 422 {"error": "no_digit"} if no ink
                  is found, 400 if the field is missing or not an image
    GET  /health  {"health": "true"} once the model is loaded (modelarts-init
                  answers /health itself in front of it)

The photo -> 28x28 preprocessing is examples/mnist/preprocess.py, imported
as is (the specification that the Rust server ports). It is looked up:
  1. next to this file (a container image copies preprocess.py here),
  2. in $MNIST_PREPROCESS_DIR,
  3. in ../mnist (this repository's layout).
The model is $MNIST_MODEL, else model.onnx next to this file, else
../../src/mnist/model.onnx (the file the Rust server embeds).

One compute thread per gunicorn worker: onnxruntime runs one intra-op
thread, and numpy's BLAS (OpenBLAS) is limited to one thread unless
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS say otherwise. With -w N workers on N
cores that is one thread per core. numpy's default, one OpenBLAS thread per
core in every worker, oversubscribes the cores and its threads spin: on
2 cores with -w 2 that made the server about 3x slower (bench/mnist.sh: 38
req/s instead of 122).
"""

import io
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))

# Before numpy is imported: OpenBLAS reads these once, at load time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _find_preprocess_dir():
    for d in (HERE, os.environ.get("MNIST_PREPROCESS_DIR"), os.path.join(HERE, "..", "mnist")):
        if d and os.path.isfile(os.path.join(d, "preprocess.py")):
            return os.path.abspath(d)
    raise ImportError("preprocess.py not found next to app.py, in $MNIST_PREPROCESS_DIR or in ../mnist")


def _find_model():
    for p in (os.environ.get("MNIST_MODEL"), os.path.join(HERE, "model.onnx"),
              os.path.join(HERE, "..", "..", "src", "mnist", "model.onnx")):
        if p and os.path.isfile(p):
            return os.path.abspath(p)
    raise FileNotFoundError("model.onnx not found: set MNIST_MODEL")


_pp_dir = _find_preprocess_dir()
if _pp_dir not in sys.path:
    sys.path.insert(0, _pp_dir)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

from preprocess import preprocess  # noqa: E402  (examples/mnist/preprocess.py)

MODEL_PATH = _find_model()
_opts = ort.SessionOptions()
_opts.intra_op_num_threads = int(os.environ.get("MNIST_ORT_THREADS", "1"))
_opts.inter_op_num_threads = 1
session = ort.InferenceSession(MODEL_PATH, _opts, providers=["CPUExecutionProvider"])

# Decompression-bomb guard like the Rust server's --max-pixels default:
# Pillow warns past MAX_IMAGE_PIXELS, and the warning is made an error.
Image.MAX_IMAGE_PIXELS = 40_000_000
warnings.simplefilter("error", Image.DecompressionBombWarning)

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024 + 64 * 1024


def _error(status, code, message):
    return jsonify(error=code, message=message), status


def classify(data):
    """Image bytes -> digit, or None if no digit is found (raises on bad images)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format not in ("JPEG", "PNG"):
            raise ValueError(f"unsupported image format {im.format}; send a JPEG or PNG")
        x = preprocess(im)
    if x is None:
        return None
    logits = session.run(["logits"], {"input": x.reshape(1, 1, 28, 28)})[0][0]
    return int(np.argmax(logits))


@app.post("/")
def predict():
    f = request.files.get("images")
    if f is None:
        return _error(400, "no_image", 'no field named "images" in the form (curl -F images=@digit.jpg)')
    data = f.read()
    if not data:
        return _error(400, "empty_image", 'the "images" field is empty')
    try:
        digit = classify(data)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        return _error(413, "too_many_pixels", str(e))
    except (UnidentifiedImageError, ValueError, OSError) as e:
        return _error(400, "corrupt_image", f"cannot decode the image: {e}")
    if digit is None:
        return _error(422, "no_digit", "no digit found in the image")
    return jsonify(mnist_result=digit)


@app.get("/health")
def health():
    return jsonify(health="true")
