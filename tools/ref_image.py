#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""ref_image.py: an independent NumPy implementation of the visual pre- and post-processing of
MODEL.md (OpenCV INTER_CUBIC resize semantics, the 320 ROI, the mask, CHW float, paste-back). The
C image module is checked against it (tests/test_image.c runs it and compares .npy files). It
imports NumPy only, so it runs wherever the tests run; `selftest` compares it with cv2 when cv2
happens to be installed.

Commands (arrays are .npy; images are HxWx3 uint8 BGR unless said):
  resize IN OUT W H          INTER_CUBIC resize of IN to WxH (IN may be float32 holding 0..255)
  preprocess IN OUT [--rgb]  IN (N,328,328,3) crops -> OUT float32 (N,6,320,320); --rgb: IN is RGB
  paste FRAME CROP OUT3 X1 Y1 X2 Y2 OUT
                             exact paste-back: OUT3 float32 (3,320,320) into CROP (328x328x3),
                             resized to the rect and written over FRAME; OUT is the new frame
  selftest                   compares resize with cv2.resize on random images, if cv2 exists
  fixtures DIR               writes PNG/JPEG files in colour types and modes lipsync does not
                             produce itself (grey, RGBA, palette, 16-bit, progressive, CMYK), each
                             NAME.png/.jpg with NAME.npy = the expected HxWx3 BGR decode (PIL)

OpenCV's 8-bit INTER_CUBIC, reproduced here from its documented algorithm:
  * source coordinate of output pixel d: f = float((d + 0.5) * (src/dst) - 0.5), i = floor(f),
    t = f - i; taps i-1..i+2, indices clamped to the image (BORDER_REPLICATE);
  * Keys cubic weights with A = -0.75 computed in float32, w3 = 1 - w0 - w1 - w2, then each
    weight rounded half-to-even to a short in units of 1/2048 (INTER_RESIZE_COEF_BITS = 11);
  * horizontal pass in integers; vertical pass sum(beta * row) in integers, then
    (sum + 2^21) >> 22 saturated to 0..255 (OpenCV's FixedPtCast; its SIMD path computes the same
    sum in float and rounds to nearest, which differs only on exact .5 ties).
"""
import sys

import numpy as np

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS
A = np.float32(-0.75)


def cubic_weights(t):
    """t: float32 array of fractional offsets -> int64 array (..., 4) of fixed-point weights."""
    t = t.astype(np.float32)
    one = np.float32(1)
    x = t + one
    w0 = ((A * x - np.float32(5) * A) * x + np.float32(8) * A) * x - np.float32(4) * A
    w1 = ((A + np.float32(2)) * t - (A + np.float32(3))) * t * t + one
    u = one - t
    w2 = ((A + np.float32(2)) * u - (A + np.float32(3))) * u * u + one
    w3 = one - w0 - w1 - w2
    w = np.stack([w0, w1, w2, w3], axis=-1).astype(np.float32)
    return np.rint(w * np.float32(COEF_SCALE)).astype(np.int64)


def taps(src_n, dst_n):
    """Per output index: clamped source indices (dst_n, 4) and fixed-point weights (dst_n, 4)."""
    scale = 1.0 / (float(dst_n) / float(src_n))
    d = np.arange(dst_n, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)
    i = np.floor(f).astype(np.int64)
    t = f - i.astype(np.float32)
    idx = i[:, None] + np.arange(-1, 3)[None, :]
    return np.clip(idx, 0, src_n - 1), cubic_weights(t)


def resize_cubic(img, w, h):
    """OpenCV cv2.resize(img, (w, h), interpolation=INTER_CUBIC) for uint8 images."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    sh, sw = img.shape[:2]
    xi, xw = taps(sw, w)
    yi, yw = taps(sh, h)
    src = img.astype(np.int64)
    # horizontal: rows (sh, w, c)
    hor = np.zeros((sh, w, img.shape[2]), dtype=np.int64)
    for k in range(4):
        hor += src[:, xi[:, k], :] * xw[:, k][None, :, None]
    ver = np.zeros((h, w, img.shape[2]), dtype=np.int64)
    for k in range(4):
        ver += hor[yi[:, k], :, :] * yw[:, k][:, None, None]
    out = np.clip((ver + (1 << (2 * COEF_BITS - 1))) >> (2 * COEF_BITS), 0, 255).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


def preprocess_crop(crop328):
    """MODEL.md steps 2-4 on one 328x328x3 BGR crop -> float32 (6, 320, 320)."""
    real = crop328[4:324, 4:324, :]
    masked = real.copy()
    masked[5:310, 5:315, :] = 0  # rows 5..309, cols 5..314 inclusive
    both = np.concatenate([real, masked], axis=2)  # HxWx6
    return (both.transpose(2, 0, 1).astype(np.float32) / np.float32(255)).astype(np.float32)


def output_to_u8(out3):
    """uint8(output*255) by truncation, clamped to [0,255]; NaN -> 0. (3,320,320) -> HxWx3."""
    v = np.asarray(out3, dtype=np.float32) * np.float32(255)
    v = np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=0.0)
    v = np.clip(v, 0, 255)
    return np.trunc(v).astype(np.uint8).transpose(1, 2, 0)


def paste_exact(frame, crop328, out3, rect):
    x1, y1, x2, y2 = rect
    crop = crop328.copy()
    crop[4:324, 4:324, :] = output_to_u8(out3)
    frame = frame.copy()
    frame[y1:y2, x1:x2, :] = resize_cubic(crop, x2 - x1, y2 - y1)
    return frame


def selftest():
    try:
        import cv2
    except ImportError:
        print("# SKIP cv2 not installed")
        return 0
    rng = np.random.default_rng(1)
    worst = 0
    ties = 0
    for sw, sh, dw, dh in [(182, 182, 328, 328), (328, 328, 182, 182), (173, 173, 328, 328),
                           (328, 328, 189, 189), (7, 5, 31, 23), (100, 60, 37, 91),
                           (64, 64, 64, 64)]:
        for kind in ("noise", "smooth"):
            if kind == "noise":
                img = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
            else:
                y, x = np.mgrid[0:sh, 0:sw]
                img = np.stack([(x * 255 // max(sw - 1, 1)), (y * 255 // max(sh - 1, 1)),
                                (x + y) % 256], axis=2).astype(np.uint8)
            a = resize_cubic(img, dw, dh).astype(int)
            b = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_CUBIC).astype(int)
            d = np.abs(a - b)
            worst = max(worst, int(d.max()))
            ties += int((d > 0).sum())
            print(f"{sw}x{sh}->{dw}x{dh} {kind}: max {d.max()} differing {(d > 0).sum()}/{d.size}")
    print(f"worst {worst}, differing values {ties}")
    return 0 if worst <= 1 else 1


def fixtures(outdir):
    """Codec inputs from another encoder (PIL), with the decode PIL itself expects."""
    import os

    from PIL import Image
    h, w = 30, 40
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 6, y * 8, (x + y) * 3], axis=2).astype(np.uint8)

    def save(name, img, expect_rgb, **kw):
        img.save(os.path.join(outdir, name), **kw)
        stem = os.path.splitext(name)[0]
        np.save(os.path.join(outdir, stem + ".npy"), np.ascontiguousarray(expect_rgb[..., ::-1]))

    save("rgb.png", Image.fromarray(rgb, "RGB"), rgb)
    rgba = np.dstack([rgb, (x * 5 % 256).astype(np.uint8)])
    save("rgba.png", Image.fromarray(rgba, "RGBA"), rgb)  # alpha dropped, colour kept
    g = rgb[..., 1]
    save("grey.png", Image.fromarray(g, "L"), np.dstack([g, g, g]))
    pal = Image.fromarray(rgb, "RGB").quantize(colors=64)
    save("palette.png", pal, np.asarray(pal.convert("RGB")))
    g16 = (x * 1500 + y * 7).astype(np.uint16)
    im16 = Image.frombytes("I;16", (w, h), g16.astype("<u2").tobytes())
    hi = (g16 >> 8).astype(np.uint8)  # 16 -> 8 bits keeps the high byte
    save("grey16.png", im16, np.dstack([hi, hi, hi]))
    for name, kw in (("base.jpg", {}), ("progressive.jpg", {"progressive": True})):
        im = Image.fromarray(rgb, "RGB")
        im.save(os.path.join(outdir, name), quality=90, **kw)
        dec = np.asarray(Image.open(os.path.join(outdir, name)).convert("RGB"))
        np.save(os.path.join(outdir, os.path.splitext(name)[0] + ".npy"),
                np.ascontiguousarray(dec[..., ::-1]))
    Image.fromarray(g, "L").save(os.path.join(outdir, "greyjpeg.jpg"), quality=90)
    dec = np.asarray(Image.open(os.path.join(outdir, "greyjpeg.jpg")).convert("RGB"))
    np.save(os.path.join(outdir, "greyjpeg.npy"), np.ascontiguousarray(dec[..., ::-1]))
    Image.fromarray(rgb, "RGB").convert("CMYK").save(os.path.join(outdir, "cmyk.jpg"))
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1]
    if cmd == "resize" and len(argv) == 6:
        img = np.load(argv[2])
        np.save(argv[3], resize_cubic(img, int(argv[4]), int(argv[5])))
        return 0
    if cmd == "preprocess" and len(argv) in (4, 5):
        crops = np.load(argv[2])
        if len(argv) == 5:
            if argv[4] != "--rgb":
                print(__doc__, file=sys.stderr)
                return 2
            crops = crops[..., ::-1]
        if crops.ndim == 3:
            crops = crops[None]
        out = np.stack([preprocess_crop(c) for c in crops]).astype(np.float32)
        np.save(argv[3], out)
        return 0
    if cmd == "paste" and len(argv) == 10:
        frame = np.load(argv[2])
        crop = np.load(argv[3])
        out3 = np.load(argv[4]).astype(np.float32).reshape(3, 320, 320)
        if frame.dtype != np.uint8:
            frame = np.clip(np.rint(frame), 0, 255).astype(np.uint8)
        if crop.dtype != np.uint8:
            crop = np.clip(np.rint(crop), 0, 255).astype(np.uint8)
        rect = [int(v) for v in argv[5:9]]
        np.save(argv[9], paste_exact(frame, crop, out3, rect))
        return 0
    if cmd == "selftest":
        return selftest()
    if cmd == "fixtures" and len(argv) == 3:
        return fixtures(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
