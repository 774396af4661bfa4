"""The bundled MNIST model served the way a user writes it first: Flask,
Pillow's resize to 28x28, onnxruntime. No photo clean-up (no polarity
check, no background removal, no centring): the quickest thing that works
on MNIST-like input, the baseline bench/mnist.sh measures
`modelarts-init mnist` against.

    OMP_NUM_THREADS=1 gunicorn -k gevent -w 2 -b 127.0.0.1:8081 app:app

    POST /        multipart field "images" -> {"mnist_result": d}
    GET  /health  {"health": "true"}

The model is $MNIST_MODEL, else ../../src/mnist/model.onnx (the file the
Rust server embeds).
"""

import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.environ.get("MNIST_MODEL", os.path.join(HERE, "..", "..", "src", "mnist", "model.onnx"))

session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
app = Flask(__name__)


@app.post("/")
def predict():
    image = Image.open(request.files["images"].stream).convert("L").resize((28, 28))
    # MNIST digits are white on black, photos dark on light
    x = 1.0 - np.asarray(image, dtype=np.float32) / 255.0
    logits = session.run(None, {"input": x.reshape(1, 1, 28, 28)})[0]
    return jsonify(mnist_result=int(logits.argmax()))


@app.get("/health")
def health():
    return jsonify(health="true")
