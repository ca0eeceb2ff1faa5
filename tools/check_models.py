#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks the generated models against an independent implementation: writes random inputs
(batch 2) as .npy, runs ONNX Runtime through `lipsync model run`, runs the NumPy forward pass of
tools/lipsync_models.py (written from MODEL.md, float64) on the same inputs with the weights
read from the ONNX initializers by name, and compares.

Tolerance: max |ort - numpy| / max |numpy| <= 1e-4 (see TOLERANCE below for why). Tiny models
and the demo UNet are always checked; --full adds unet328.onnx and audio_encoder.onnx (the NumPy
UNet-328 at 320x320 takes tens of seconds). Exits 1 if any model is above the tolerance, 2 on
a usage or run error.

Usage: /usr/bin/python3 tools/check_models.py --models models --lipsync build/lipsync [--full]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lipsync_models as L  # noqa: E402

# ONNX Runtime computes in float32 (unit roundoff 6e-8) with its own summation order, blocking
# and FMA use; the NumPy pass is float64. Over ~60 layers with dot products of up to 9*512
# terms the relative error measured here is about 1e-6 (see docs/MODELS.md); 1e-4 leaves two
# orders of margin for other CPUs and ORT builds, while a wrong stride, padding, concat order,
# weight layout or resize mode gives errors of 1e-2 and more.
TOLERANCE = 1e-4

TINY = ["unet_tiny.onnx", "audio_encoder_tiny.onnx", "unet_demo.onnx"]
FULL = ["unet328.onnx", "audio_encoder.onnx"]


def model_inputs(lipsync, path):
    """Input names in the model's order, parsed from `lipsync model info`."""
    out = subprocess.run([lipsync, "model", "info", path], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("lipsync model info %s failed: %s" % (path, out.stderr.strip()))
    names = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "input":
            names.append(parts[1])
    return names


def random_inputs(name, batch, rng):
    """Inputs in the ranges the pipeline feeds: crops in [0,1], encoder features >= 0 with
    the occasional zero row, normalized mels in [-4,4]."""
    if name.startswith("audio_encoder"):
        return {"mel_spectrogram": rng.uniform(-4, 4, (batch, 1, 80, 16)).astype(np.float32)}
    vis = rng.uniform(0, 1, (batch, 6, 320, 320)).astype(np.float32)
    vis[:, 3:, 5:310, 5:315] = 0  # masked half, as MODEL.md's preprocessing makes it
    aud = np.abs(rng.normal(0, 2.0, (batch, 16, 512))).astype(np.float32)
    aud[0, :3] = 0  # rows before the start of the audio are zero
    return {"input": vis, "audio": aud.reshape(batch, 32, 16, 16)}


def reference(name, weights, inputs):
    if name.startswith("audio_encoder"):
        return L.encoder_forward(weights, inputs["mel_spectrogram"])
    if name == "unet_demo.onnx":
        return L.demo_forward(weights, inputs["input"], inputs["audio"])
    return L.unet_forward(weights, inputs["input"], inputs["audio"])


def run_ort(lipsync, path, order, inputs, tmp):
    cmd = [lipsync, "model", "run", path]
    for n in order:
        p = os.path.join(tmp, n + ".npy")
        np.save(p, inputs[n])
        cmd += ["--in", p]
    out = os.path.join(tmp, "out.npy")
    cmd += ["--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return np.load(out)


def check(models, lipsync, name, batch=2, seed=1):
    """Returns a dict: name, max_abs, rel, ref_max, shape, numpy_s, ok."""
    path = os.path.join(models, name)
    rng = np.random.default_rng(seed)
    inputs = random_inputs(name, batch, rng)
    order = model_inputs(lipsync, path)
    if sorted(order) != sorted(inputs):
        raise RuntimeError("%s has inputs %s, expected %s" % (path, order, sorted(inputs)))
    with tempfile.TemporaryDirectory(prefix="check_models_") as tmp:
        got = run_ort(lipsync, path, order, inputs, tmp)
    t0 = time.time()
    ref = reference(name, L.load_weights(path), inputs)
    dt = time.time() - t0
    if got.shape != ref.shape:
        raise RuntimeError("%s: ORT output shape %s, NumPy %s" % (name, got.shape, ref.shape))
    err = float(np.abs(got.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    rel = err / max(scale, 1e-12)
    return {"name": name, "max_abs": err, "rel": rel, "ref_max": scale, "shape": got.shape,
            "numpy_s": dt, "ok": rel <= TOLERANCE}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="models", help="directory of the generated models")
    ap.add_argument("--lipsync", default="build/lipsync", help="the lipsync binary")
    ap.add_argument("--full", action="store_true", help="also unet328 and audio_encoder")
    ap.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    args = ap.parse_args()
    if not os.access(args.lipsync, os.X_OK):
        print("check_models: %s is not an executable (build it with make)" % args.lipsync,
              file=sys.stderr)
        return 2
    names = TINY + (FULL if args.full else [])
    bad = 0
    for n in names:
        if not os.path.isfile(os.path.join(args.models, n)):
            print("check_models: %s missing in %s (run make models)" % (n, args.models),
                  file=sys.stderr)
            return 2
        try:
            r = check(args.models, args.lipsync, n, args.batch)
        except RuntimeError as e:
            print("check_models: %s" % e, file=sys.stderr)
            return 2
        bad += not r["ok"]
        print("%-24s out %-18s max|ref| %9.4g  max abs err %.3g  rel %.3g  (tol %.0e)  %s"
              "  [numpy %.1f s]" % (n, "x".join(map(str, r["shape"])), r["ref_max"],
                                    r["max_abs"], r["rel"], TOLERANCE,
                                    "ok" if r["ok"] else "FAIL", r["numpy_s"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
