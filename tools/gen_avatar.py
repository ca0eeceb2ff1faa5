#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the bundled demo avatar in the canonical layout of shared/spec/DATA.md: a drawn
talking-head video (1280x720 JPEG frames with a slight head sway and blinks), one square crop
rect per frame around the mouth, avatar.yaml, and a copy of the demo UNet. The drawn mouth sits
exactly where tools/lipsync_models.py's demo UNet paints its opening once the pipeline has
cropped, resized to 328 and cut the 320x320 centre (MODEL.md), so the avatar talks.

Deterministic (same bytes every run). Usage:
  /usr/bin/python3 tools/gen_avatar.py --out avatars/demo --unet models/unet_demo.onnx [--frames N]
"""

import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lipsync_models as L  # noqa: E402

W, H = 1280, 720
FPS = 25
SIDE = 180  # crop rect side in frame pixels (the reference avatar's are 173-189)
SS = 2      # supersampling factor of the figure sprite (anti-aliasing)

# Figure layout at rest, frame pixels. The mouth centre comes first: everything else hangs off it.
MOUTH_X, MOUTH_Y = 640, 408
HEAD_CX, HEAD_CY, HEAD_RX, HEAD_RY = 640, 318, 114, 150
EYE_Y, EYE_DX = 296, 44
SPRITE_X0, SPRITE_Y0, SPRITE_W, SPRITE_H = 290, 110, 700, 630  # region the sprite covers

SKIN = (236, 192, 160)
SKIN_DARK = (214, 164, 134)
HAIR = (58, 40, 32)
SHIRT = (54, 86, 138)
LIP = (184, 92, 96)
LIP_LINE = (118, 52, 58)


def rect_for_mouth(mx, my, side=SIDE):
    """Crop rect [x1,y1,x2,y2] (end-exclusive) that puts a mouth at frame (mx, my) on the demo
    UNet's mouth centre after crop -> 328 resize -> [4:324] cut."""
    ox = L.crop_to_frame(L.DEMO_MOUTH_CX, side)
    oy = L.crop_to_frame(L.DEMO_MOUTH_CY, side)
    # floor(v + 0.5): Python's round() rounds halves to even, which would make the rect jump
    # by a pixel relative to the mouth between odd and even positions.
    x1 = int(math.floor(mx - ox + 0.5))
    y1 = int(math.floor(my - oy + 0.5))
    return [x1, y1, x1 + side, y1 + side]


def background(rng):
    """Vertical gradient, a soft light spot behind the head, large soft blotches and fine grain."""
    y = np.linspace(0, 1, H)[:, None]
    x = np.linspace(0, 1, W)[None, :]
    top = np.array([196, 210, 224], np.float64)
    bot = np.array([128, 142, 166], np.float64)
    img = np.broadcast_to(top * (1 - y[..., None]) + bot * y[..., None], (H, W, 3)).copy()
    spot = np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.4) / 0.5) ** 2))
    img += 22 * spot[..., None]
    blot = Image.fromarray((rng.random((9, 16)) * 255).astype(np.uint8)).resize(
        (W, H), Image.BICUBIC).filter(ImageFilter.GaussianBlur(30))
    img += (np.asarray(blot, np.float64)[..., None] / 255.0 - 0.5) * 18
    img += rng.normal(0, 2.0, (H, W, 1))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _s(v):
    return int(round(v * SS))


def _box(cx, cy, rx, ry):
    """Ellipse bounding box in sprite pixels from frame coordinates."""
    return [_s(cx - rx - SPRITE_X0), _s(cy - ry - SPRITE_Y0),
            _s(cx + rx - SPRITE_X0), _s(cy + ry - SPRITE_Y0)]


def _pt(x, y):
    return (_s(x - SPRITE_X0), _s(y - SPRITE_Y0))


def _shaded_head(size):
    """RGBA head layer with soft shading (lit from the upper left, darker at the rim)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = _s(HEAD_CX - SPRITE_X0), _s(HEAD_CY - SPRITE_Y0)
    nx = (xx - cx) / _s(HEAD_RX)
    ny = (yy - cy) / _s(HEAD_RY)
    r2 = nx * nx + ny * ny
    light = 1.0 - 0.16 * r2 ** 2 - 0.05 * (nx + 0.6 * ny)
    rgb = np.array(SKIN, np.float64) * np.clip(light, 0.7, 1.05)[..., None]
    # The jaw narrows towards the chin: scale the horizontal radius down below the cheeks.
    taper = 1.0 - 0.28 * np.maximum(ny - 0.15, 0.0) ** 1.5
    inside = (nx / taper) ** 2 + ny * ny
    alpha = np.clip((1.0 - inside) * _s(HEAD_RY) / 2.0, 0, 1)
    out = np.dstack([np.clip(rgb, 0, 255), alpha * 255]).astype(np.uint8)
    return Image.fromarray(out, "RGBA")


def figure(eyes):
    """Renders the figure (body, neck, ears, head, hair, face) as an RGBA sprite; eyes is
    'open', 'half' or 'closed'."""
    size = (_s(SPRITE_W), _s(SPRITE_H))
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    # Shoulders and shirt, neck with a shadow under the jaw.
    d.rectangle([_s(596 - SPRITE_X0), _s(420 - SPRITE_Y0), _s(684 - SPRITE_X0),
                 _s(600 - SPRITE_Y0)], fill=SKIN_DARK)
    d.ellipse(_box(640, 660, 290, 130), fill=SHIRT)
    d.rectangle([_s(350 - SPRITE_X0), _s(660 - SPRITE_Y0), _s(930 - SPRITE_X0),
                 _s(SPRITE_H)], fill=SHIRT)
    d.polygon([_pt(594, 540), _pt(686, 540), _pt(640, 590)], fill=SKIN_DARK)  # collar opening
    d.line([_pt(594, 540), _pt(640, 590), _pt(686, 540)], fill=(40, 64, 104), width=_s(4))
    # Hair behind the head, ears.
    d.ellipse(_box(HEAD_CX, HEAD_CY - 28, HEAD_RX + 14, HEAD_RY - 4), fill=HAIR)
    for side in (-1, 1):
        ex = HEAD_CX + side * (HEAD_RX - 4)
        d.ellipse(_box(ex, 318, 16, 30), fill=SKIN_DARK)
        d.ellipse(_box(ex + side * 3, 318, 8, 18), fill=(200, 148, 120))
    head = _shaded_head(size)
    img.alpha_composite(head)
    d = ImageDraw.Draw(img)
    # Hair on top with a hairline above the brows, and a fringe swept to one side.
    d.chord(_box(HEAD_CX, HEAD_CY - 68, HEAD_RX + 6, 104), 180, 360, fill=HAIR)
    d.ellipse(_box(HEAD_CX - 34, HEAD_CY - 78, 74, 26), fill=HAIR)
    d.ellipse(_box(HEAD_CX + 40, HEAD_CY - 74, 66, 16), fill=HAIR)
    # Brows.
    for side in (-1, 1):
        bx = HEAD_CX + side * EYE_DX
        d.arc(_box(bx, EYE_Y - 10, 24, 14), 200 if side < 0 else 210, 330 if side < 0 else 340,
              fill=(70, 48, 38), width=_s(5))
    # Eyes.
    for side in (-1, 1):
        ex = HEAD_CX + side * EYE_DX
        if eyes == "closed":
            d.arc(_box(ex, EYE_Y - 3, 16, 8), 20, 160, fill=(90, 60, 50), width=_s(3))
            continue
        d.ellipse(_box(ex, EYE_Y, 17, 10), fill=(250, 250, 246))
        d.ellipse(_box(ex, EYE_Y + 1, 8, 8), fill=(72, 104, 70))
        d.ellipse(_box(ex, EYE_Y + 1, 4, 4), fill=(18, 16, 14))
        d.ellipse(_box(ex + 3, EYE_Y - 2, 1.6, 1.6), fill=(255, 255, 255))
        if eyes == "half":
            d.chord(_box(ex, EYE_Y, 18, 11), 180, 360, fill=SKIN)
            d.line([_pt(ex - 18, EYE_Y), _pt(ex + 18, EYE_Y)], fill=(90, 60, 50), width=_s(3))
        else:
            d.arc(_box(ex, EYE_Y, 17, 10), 190, 350, fill=(70, 48, 40), width=_s(3))
    # Nose: bridge shadow, tip and nostrils.
    d.line([_pt(634, 306), _pt(629, 352)], fill=SKIN_DARK, width=_s(3))
    d.arc(_box(640, 352, 14, 9), 10, 170, fill=(196, 146, 118), width=_s(3))
    d.ellipse(_box(632, 356, 3.5, 2.2), fill=(160, 110, 90))
    d.ellipse(_box(648, 356, 3.5, 2.2), fill=(160, 110, 90))
    # Cheeks.
    for side in (-1, 1):
        d.ellipse(_box(HEAD_CX + side * 62, 372, 20, 12), fill=(236, 176, 156))
    # Closed mouth: upper and lower lip, the line between them, a chin shadow.
    d.chord(_box(MOUTH_X, MOUTH_Y + 1, 27, 7), 180, 360, fill=LIP)
    d.chord(_box(MOUTH_X, MOUTH_Y - 1, 25, 10), 0, 180, fill=(196, 100, 104))
    d.line([_pt(MOUTH_X - 27, MOUTH_Y), _pt(MOUTH_X, MOUTH_Y + 1), _pt(MOUTH_X + 27, MOUTH_Y)],
           fill=LIP_LINE, width=_s(2.5), joint="curve")
    d.arc(_box(MOUTH_X, MOUTH_Y + 32, 18, 8), 200, 340, fill=SKIN_DARK, width=_s(2))
    return img.resize((SPRITE_W, SPRITE_H), Image.LANCZOS)


def motion(i):
    """Idle head sway (integer pixels, a few px) of frame i, as two slow incommensurate waves."""
    t = i / FPS
    dx = 4.0 * math.sin(2 * math.pi * t / 4.3) + 1.5 * math.sin(2 * math.pi * t / 1.9 + 1.0)
    dy = 2.0 * math.sin(2 * math.pi * t / 3.1 + 0.5)
    return int(round(dx)), int(round(dy))


def blink_states(n, rng):
    """Eye state per frame: a blink (half, closed, closed, half) every 2.6-4.2 s."""
    states = ["open"] * n
    i = int(rng.integers(20, 60))
    while i < n:
        for k, s in enumerate(("half", "closed", "closed", "half")):
            if i + k < n:
                states[i + k] = s
        i += int(rng.integers(int(2.6 * FPS), int(4.2 * FPS)))
    return states


def write_yaml(path, frames):
    text = ("# Demo avatar, generated by tools/gen_avatar.py (a drawn face; see docs/MODELS.md)\n"
            "format_version: 1\nid: demo\nfps: %d\nwidth: %d\nheight: %d\nframe_count: %d\n"
            "unet: unet.onnx\nblend: feather\nsource: generated by tools/gen_avatar.py\n"
            % (FPS, W, H, frames))
    with open(path, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="avatar directory (created)")
    ap.add_argument("--unet", required=True, help="UNet to copy in as unet.onnx")
    ap.add_argument("--frames", type=int, default=250, help="number of frames (default 250)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    args = ap.parse_args()
    if not 1 <= args.frames <= 100000:
        ap.error("--frames must be 1..100000, got %d" % args.frames)
    if not os.path.isfile(args.unet):
        ap.error("--unet %s: no such file (run `make models` first)" % args.unet)
    fdir = os.path.join(args.out, "frames")
    os.makedirs(fdir, exist_ok=True)
    rng = np.random.default_rng(2024)
    bg = background(rng)
    sprites = {s: figure(s) for s in ("open", "half", "closed")}
    states = blink_states(args.frames, rng)
    rects = []
    for i in range(args.frames):
        dx, dy = motion(i)
        frame = bg.copy()
        sp = sprites[states[i]]
        frame.paste(sp, (SPRITE_X0 + dx, SPRITE_Y0 + dy), sp)
        frame.save(os.path.join(fdir, "%06d.jpg" % i), quality=args.quality, subsampling=0)
        rects.append(rect_for_mouth(MOUTH_X + dx, MOUTH_Y + dy))
    # Frames left over from a longer earlier run would be read as part of this avatar.
    for name in os.listdir(fdir):
        stem, ext = os.path.splitext(name)
        if ext == ".jpg" and stem.isdigit() and int(stem) >= args.frames:
            os.remove(os.path.join(fdir, name))
    with open(os.path.join(args.out, "crop_rects.json"), "w") as f:
        f.write("[" + ",\n ".join(json.dumps(r) for r in rects) + "]\n")
    shutil.copyfile(args.unet, os.path.join(args.out, "unet.onnx"))
    write_yaml(os.path.join(args.out, "avatar.yaml"), args.frames)
    print("demo avatar: %d frames %dx%d in %s, crop side %d" % (args.frames, W, H, args.out, SIDE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
