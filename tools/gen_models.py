#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the generated models lipsync uses for development, tests, benchmarks and the demo:

  unet328.onnx            UNet-328 of MODEL.md, seeded weights (BatchNorm folded)
  audio_encoder.onnx      the audio encoder of MODEL.md, seeded weights
  unet_tiny.onnx          UNet I/O and topology with few channels, for fast tests
  audio_encoder_tiny.onnx encoder I/O and topology with few channels
  unet_demo.onnx          UNet I/O; paints a mouth opening that follows the audio energy

The output is byte-identical from run to run (fixed seeds, no timestamps, fixed names), so the
files can be compared and cached. Usage: /usr/bin/python3 tools/gen_models.py --out models
"""

import argparse
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lipsync_models as L  # noqa: E402


NAMES = ["unet328.onnx", "audio_encoder.onnx", "unet_tiny.onnx", "audio_encoder_tiny.onnx",
         "unet_demo.onnx"]


def build_all(quiet=False, only=None):
    """Returns [(file name, ModelProto)] in writing order, all models or those in `only`."""
    want = set(only or NAMES)
    out = []
    if "unet328.onnx" in want:
        out.append(("unet328.onnx", L.build_unet()))
    enc = L.build_encoder() if want & {"audio_encoder.onnx", "unet_demo.onnx"} else None
    if "audio_encoder.onnx" in want:
        out.append(("audio_encoder.onnx", enc))
    if "unet_tiny.onnx" in want:
        out.append(("unet_tiny.onnx", L.build_unet(L.UNET_TINY, L.SEED_UNET_TINY)))
    if "audio_encoder_tiny.onnx" in want:
        out.append(("audio_encoder_tiny.onnx", L.build_encoder(L.ENC_TINY, L.SEED_ENC_TINY)))
    if "unet_demo.onnx" not in want:
        return out
    # The demo's mouth threshold is calibrated on what audio_encoder.onnx makes of real mels.
    cal = L.calibrate_demo(L.load_weights(enc))
    if not quiet:
        print("demo calibration (audio_encoder.onnx features projected on the speech direction):"
              " silence %.2f, near-silence noise %.2f, loud signals %.2f..%.2f (median %.2f);"
              " threshold %.2f, scale %.2f"
              % (cal["e_silence"], cal["e_quiet"], cal["e_loud_min"], cal["e_loud_max"],
                 cal["e_loud_median"], cal["threshold"], cal["scale"]))
    out.append(("unet_demo.onnx", L.build_demo_unet(cal)))
    return out


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--quiet", action="store_true", help="print nothing but errors")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(NAMES))
    args = ap.parse_args()
    only = [n for n in args.only.split(",") if n]
    for n in only:
        if n not in NAMES:
            ap.error("--only: unknown model '%s' (expected one of %s)" % (n, ", ".join(NAMES)))
    os.makedirs(args.out, exist_ok=True)
    for name, model in build_all(args.quiet, only):
        data = model.SerializeToString()
        write_atomic(os.path.join(args.out, name), data)
        if not args.quiet:
            print("%-24s %10d params  %7.3f GMAC/frame  %6.2f MB"
                  % (name, L.param_count(model), L.conv_macs(model) / 1e9, len(data) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
