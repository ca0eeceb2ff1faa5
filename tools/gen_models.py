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

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lipsync_models as L  # noqa: E402


def build_all(quiet=False):
    """Returns [(file name, ModelProto, calibration or None)] in writing order."""
    enc = L.build_encoder()
    cal = L.calibrate_demo(L.load_weights(enc))
    if not quiet:
        print("demo calibration (audio_encoder.onnx features projected on the speech direction):"
              " silence %.2f, near-silence noise %.2f, loud signals %.2f..%.2f (median %.2f);"
              " threshold %.2f, scale %.2f"
              % (cal["e_silence"], cal["e_quiet"], cal["e_loud_min"], cal["e_loud_max"],
                 cal["e_loud_median"], cal["threshold"], cal["scale"]))
    return [("unet328.onnx", L.build_unet(), None),
            ("audio_encoder.onnx", enc, None),
            ("unet_tiny.onnx", L.build_unet(L.UNET_TINY, L.SEED_UNET_TINY), None),
            ("audio_encoder_tiny.onnx", L.build_encoder(L.ENC_TINY, L.SEED_ENC_TINY), None),
            ("unet_demo.onnx", L.build_demo_unet(cal), cal)]


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, model, _ in build_all(args.quiet):
        data = model.SerializeToString()
        write_atomic(os.path.join(args.out, name), data)
        if not args.quiet:
            print("%-24s %10d params  %7.3f GMAC/frame  %6.2f MB"
                  % (name, L.param_count(model), L.conv_macs(model) / 1e9, len(data) / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
