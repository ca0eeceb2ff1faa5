# SPDX-License-Identifier: MIT
"""Shared library of the model tools: builders of the generated ONNX models (UNet-328, the audio
encoder, their tiny variants and the demo UNet) and an independent NumPy forward pass of both
architectures written from /work/shared/spec/MODEL.md.

The two halves are deliberately separate code: the ONNX builders emit graph nodes, the NumPy pass
(``unet_forward``, ``encoder_forward``) computes the same network directly from the spec with its
own convolution, depthwise convolution, bilinear align_corners upsampling and sigmoid. They share
only the weight names (``<layer>.weight`` / ``<layer>.bias``) and the channel tables, so a
wrong stride, padding, concat order or resize mode in the graph shows up as a mismatch in
tools/check_models.py. Weights are drawn from fixed seeds and BatchNorm is folded into the
convolutions at generation time, which is what an ONNX export of a trained model usually holds.

Only Debian's python3-onnx (1.12) and python3-numpy are used; no torch, no onnxruntime.
"""

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnx 1.12 writes up to opset 17; ONNX Runtime 1.29 runs it, and SyncTalk_2D exports use it too.
OPSET = 17
IR_VERSION = 8  # the IR version onnx 1.12 pairs with opset 17
PRODUCER = "lipsync tools/gen_models.py"
BN_EPS = 1e-5

# ---- channel tables (MODEL.md) -----------------------------------------------------------------
# UNet: inc width, the five down widths, the audio branch widths (IR, IR, conv3x3, conv3x3 s2),
# the two fusion DCDW widths and the five Up output widths. Every Up's input width is the
# deeper map's width plus the skip map's width, as in MODEL.md.
UNET_FULL = {"inc": 32, "down": [32, 64, 128, 256, 512], "audio": [64, 128, 256, 512],
             "fuse": [512, 256], "up": [128, 64, 32, 32, 16]}
# Tiny: the same topology with few channels, for fast unit tests (not a model of anything).
UNET_TINY = {"inc": 2, "down": [2, 4, 8, 8, 16], "audio": [4, 8, 8, 16],
             "fuse": [16, 8], "up": [8, 4, 4, 2, 2]}

# Audio encoder rows: (out channels, kernel, stride (h, w), pad, residual). Input has 1 channel.
ENC_LAYOUT = [(3, (1, 1), 1, False), (3, (1, 1), 1, True), (3, (1, 1), 1, True),
              (3, (3, 1), 1, False), (3, (1, 1), 1, True), (3, (1, 1), 1, True),
              (3, (3, 3), 1, False), (3, (1, 1), 1, True), (3, (1, 1), 1, True),
              (3, (3, 2), 1, False), (3, (1, 1), 1, True),
              (3, (1, 1), 0, False), (1, (1, 1), 0, False)]
ENC_FULL = [32, 32, 32, 64, 64, 64, 128, 128, 128, 256, 256, 512, 512]
ENC_TINY = [4, 4, 4, 8, 8, 8, 8, 8, 8, 16, 16, 32, 512]

SEED_UNET = 328
SEED_UNET_TINY = 329
SEED_ENC = 80
SEED_ENC_TINY = 81

# ---- demo UNet geometry, shared with tools/gen_avatar.py ---------------------------------------
# In the 320x320 UNet crop: centre of the mouth, half-width, closed and fully open half-heights.
DEMO_MOUTH_CX = 160.0
DEMO_MOUTH_CY = 196.0
DEMO_MOUTH_HALF_W = 40.0
DEMO_MOUTH_HALF_H_MIN = 3.0
DEMO_MOUTH_HALF_H_MAX = 36.0
DEMO_LIP = 7.0  # width of the lip rim drawn around the opening, UNet-crop pixels
# Colours (BGR in [0,1]): throat, upper teeth, lips (the drawn avatar's lip colour).
DEMO_DARK = np.array([0.10, 0.09, 0.22], np.float32).reshape(1, 3, 1, 1)
DEMO_TEETH = np.array([0.80, 0.84, 0.86], np.float32).reshape(1, 3, 1, 1)
DEMO_LIP_BGR = np.array([96, 92, 184], np.float32).reshape(1, 3, 1, 1) / np.float32(255)
# Rows [6, 8) of the [16,512] audio window are read by the demo. Row k holds encoder window
# i-9+k (AUDIO.md: padded list, rows [i-8, i+8)); window j spans mel frames 3.2j .. 3.2j+16, i.e.
# audio centred near 40j + 94 ms. Rows 6 and 7 (windows i-3, i-2) are centred at about 40i ms,
# the time frame i is shown, so the mouth neither leads nor lags the sound.
DEMO_ROWS = (6, 8)


def crop_to_frame(u, side):
    """Maps a coordinate of the 320x320 UNet crop to an offset inside a frame crop rect of `side`
    pixels (the crop is resized to 328 and [4:324] is fed to the UNet; pixel centres at +0.5)."""
    return (u + 4.0 + 0.5) * side / 328.0 - 0.5


# ---- weight generation ---------------------------------------------------------------------------
class Weights:
    """Seeded weight source. Draws He-scaled convolution weights and BatchNorm statistics and
    returns the BN-folded (weight, bias) pair, so every conv in the graph has a bias."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def conv(self, cout, cin_g, kh, kw, gain, bn=True, bias=False):
        fan_in = cin_g * kh * kw
        w = self.rng.standard_normal((cout, cin_g, kh, kw)) * (gain / math.sqrt(fan_in))
        b = self.rng.normal(0.0, 0.02, cout) if bias else np.zeros(cout)
        if bn:
            gamma = self.rng.uniform(0.9, 1.1, cout)
            beta = self.rng.normal(0.0, 0.05, cout)
            mean = self.rng.normal(0.0, 0.02, cout)
            var = self.rng.uniform(0.9, 1.1, cout)
            scale = gamma / np.sqrt(var + BN_EPS)
            w = w * scale[:, None, None, None]
            b = beta + (b - mean) * scale
        return w.astype(np.float32), b.astype(np.float32)


# ---- ONNX graph builder ------------------------------------------------------------------------
class Graph:
    """Minimal ONNX graph builder: nodes, initializers and unique tensor names."""

    def __init__(self, weights=None):
        self.w = weights
        self.nodes = []
        self.inits = []
        self.n = 0

    def tmp(self, hint):
        self.n += 1
        return "%s_%d" % (hint, self.n)

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.tmp(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, name, cin, cout, k, stride=(1, 1), pad=None, groups=1, gain=1.0,
             relu=False, bias=False):
        kh, kw = (k, k) if isinstance(k, int) else k
        if isinstance(stride, int):
            stride = (stride, stride)
        if pad is None:
            pad = kh // 2
        w, b = self.w.conv(cout, cin // groups, kh, kw, gain, bias=bias)
        self.const(name + ".weight", w)
        self.const(name + ".bias", b)
        y = self.node("Conv", [x, name + ".weight", name + ".bias"], name,
                      kernel_shape=[kh, kw], strides=list(stride), pads=[pad] * 4, group=groups)
        return self.node("Relu", [y], name + "_relu") if relu else y

    def relu(self, x):
        return self.node("Relu", [x], "relu")

    def add(self, a, b):
        return self.node("Add", [a, b], "add")

    def concat(self, xs):
        return self.node("Concat", xs, "concat", axis=1)

    def up2(self, x):
        if "const.up_scales" not in [i.name for i in self.inits]:
            self.const("const.up_scales", np.array([1, 1, 2, 2], np.float32))
        return self.node("Resize", [x, "", "const.up_scales"], "up", mode="linear",
                         coordinate_transformation_mode="align_corners")

    # MODEL.md building blocks -------------------------------------------------------------------
    def ir(self, x, name, i, o, s, res):
        """Inverted residual, expansion 2; He gain sqrt(2) before each ReLU; the residual
        projection is scaled by 0.5 so stacked residual blocks do not blow activations up."""
        h = self.conv(x, name + ".expand", i, 2 * i, 1, gain=math.sqrt(2), relu=True)
        h = self.conv(h, name + ".dw", 2 * i, 2 * i, 3, stride=s, pad=1, groups=2 * i,
                      gain=math.sqrt(2), relu=True)
        h = self.conv(h, name + ".project", 2 * i, o, 1, gain=0.5 if res else 1.0)
        return self.add(h, x) if res else h

    def dcdw(self, x, name, i, o, s):
        x = self.ir(x, name + ".0", i, o, s, False)
        return self.ir(x, name + ".1", o, o, 1, True)

    def up(self, deep, skip, name, i, o):
        return self.dcdw(self.concat([self.up2(deep), skip]), name + ".conv", i, o, 1)

    def model(self, inputs, outputs, name):
        g = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(g, producer_name=PRODUCER, producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def build_unet(ch=UNET_FULL, seed=SEED_UNET):
    """UNet-328 of MODEL.md with seeded, BN-folded weights. Returns an onnx.ModelProto."""
    g = Graph(Weights(seed))
    d, a, f, u = ch["down"], ch["audio"], ch["fuse"], ch["up"]
    x1 = g.ir("input", "inc", 6, ch["inc"], 1, False)
    x2 = g.dcdw(x1, "down1", ch["inc"], d[0], 2)
    x3 = g.dcdw(x2, "down2", d[0], d[1], 2)
    x4 = g.dcdw(x3, "down3", d[1], d[2], 2)
    x5 = g.dcdw(x4, "down4", d[2], d[3], 2)
    x6 = g.dcdw(x5, "down5", d[3], d[4], 2)
    h = g.ir("audio", "audio.0", 32, a[0], 1, False)
    h = g.ir(h, "audio.1", a[0], a[1], 1, False)
    h = g.conv(h, "audio.2", a[1], a[2], 3, pad=1, gain=math.sqrt(2), relu=True, bias=True)
    h = g.ir(h, "audio.3", a[2], a[2], 1, True)
    h = g.conv(h, "audio.4", a[2], a[3], 3, stride=2, pad=3, gain=math.sqrt(2), relu=True,
               bias=True)
    h = g.ir(h, "audio.5", a[3], a[3], 1, True)
    h = g.ir(h, "audio.6", a[3], a[3], 1, True)
    x = g.concat([x6, h])
    x = g.dcdw(x, "fuse.0", d[4] + a[3], f[0], 1)
    x = g.dcdw(x, "fuse.1", f[0], f[1], 1)
    x = g.up(x, x5, "up1", f[1] + d[3], u[0])
    x = g.up(x, x4, "up2", u[0] + d[2], u[1])
    x = g.up(x, x3, "up3", u[1] + d[1], u[2])
    x = g.up(x, x2, "up4", u[2] + d[0], u[3])
    x = g.up(x, x1, "up5", u[3] + ch["inc"], u[4])
    # Gain 4 spreads the pre-sigmoid values (std about 0.7) over the sigmoid's useful range.
    x = g.conv(x, "outc", u[4], 3, 1, pad=0, gain=4.0, bias=True)
    g.nodes.append(helper.make_node("Sigmoid", [x], ["output"], name="output"))
    return g.model([_vi("input", ["batch", 6, 320, 320]), _vi("audio", ["batch", 32, 16, 16])],
                   [_vi("output", ["batch", 3, 320, 320])], "unet328")


def build_encoder(widths=ENC_FULL, seed=SEED_ENC):
    """Audio encoder of MODEL.md: [B,1,80,16] 'mel_spectrogram' -> [B,512] 'audio_features'."""
    g = Graph(Weights(seed))
    x, cin = "mel_spectrogram", 1
    for idx, ((k, stride, pad, res), cout) in enumerate(zip(ENC_LAYOUT, widths), start=1):
        name = "enc.%d" % idx
        # Residual blocks add their input before the ReLU; their conv is scaled down (0.5) so
        # the sum keeps the scale of the input instead of doubling it at every block.
        y = g.conv(x, name, cin, cout, k, stride=stride, pad=pad,
                   gain=0.5 if res else math.sqrt(2), bias=True)
        if res:
            y = g.add(y, x)
        x, cin = g.relu(y), cout
    g.const("const.squeeze_axes", np.array([2, 3], np.int64))
    g.nodes.append(helper.make_node("Squeeze", [x, "const.squeeze_axes"], ["audio_features"],
                                    name="audio_features"))
    return g.model([_vi("mel_spectrogram", ["batch", 1, 80, 16])],
                   [_vi("audio_features", ["batch", 512])], "audio_encoder")


def build_demo_unet(cal):
    """UNet-I/O model whose output is the reference crop with a dark mouth opening that opens
    with audio energy. `cal` holds the calibration from `calibrate_demo` (direction, threshold,
    scale, gate). Everything is plain ONNX ops on constant grids."""
    g = Graph()
    crop = g.node("Slice", ["input", g.const("const.c0", np.array([0], np.int64)),
                            g.const("const.c3", np.array([3], np.int64)),
                            g.const("const.ax1", np.array([1], np.int64))], "crop")
    r0, r1 = DEMO_ROWS
    rows = g.node("Slice", ["audio", g.const("const.r0", np.array([2 * r0], np.int64)),
                            g.const("const.r1", np.array([2 * r1], np.int64)), "const.ax1"],
                  "rows")
    rows = g.node("Reshape", [rows, g.const("const.rows_shape",
                                            np.array([0, r1 - r0, 512], np.int64))], "rows512")
    # Energy: projection of each central row on the direction that separates speech from
    # silence features, averaged over the rows.
    e = g.node("MatMul", [rows, g.const("demo.direction",
                                        cal["direction"].reshape(512, 1).astype(np.float32))],
               "proj")  # [B,rows,1]
    # Per row: open = r / (r + s), r = relu(e - t): exactly closed at or below the silence
    # level, saturating towards 1 for loud speech.
    r = g.relu(g.node("Sub", [e, g.const("demo.threshold",
                                         np.array(cal["threshold"], np.float32))], "esub"))
    opn = g.node("Div", [r, g.node("Add", [r, g.const("demo.scale",
                                                     np.array(cal["scale"], np.float32))],
                                   "rs")], "open_row")
    # Gate per row: an all-zero row (before the start or after the end of the audio) means
    # silence whatever its projection says; mean |feature| below half that of encoded silence
    # fades the row out. Rows are gated one by one so a half-zero window stays closed too.
    mabs = g.node("ReduceMean", [g.node("Abs", [rows], "abs")], "mabs", axes=[2], keepdims=1)
    gate = g.node("Min", [g.const("const.one", np.array(1.0, np.float32)),
                          g.node("Mul", [mabs, g.const("demo.gate_inv", np.array(
                              2.0 / cal["gate"], np.float32))], "gsc")], "gate")
    opn = g.node("ReduceMean", [g.node("Mul", [opn, gate], "open_gated")], "open", axes=[1, 2],
                 keepdims=1)
    opn = g.node("Unsqueeze", [opn, "const.ax1"], "open4")  # [B,1,1,1]
    # Half-height of the ellipse and an amplitude that fades the closed mouth out completely.
    hh = g.node("Add", [g.const("demo.hmin", np.array(DEMO_MOUTH_HALF_H_MIN, np.float32)),
                        g.node("Mul", [opn, g.const("demo.hrange", np.array(
                            DEMO_MOUTH_HALF_H_MAX - DEMO_MOUTH_HALF_H_MIN, np.float32))],
                               "hr")], "halfh")
    amp = g.node("Min", ["const.one", g.node("Mul", [opn, g.const("demo.amp_gain", np.array(
        6.0, np.float32))], "ag")], "amp")
    ys = np.arange(320, dtype=np.float32) - DEMO_MOUTH_CY
    g.const("demo.dy", ys.reshape(1, 1, 320, 1))

    def ellipse_alpha(tag, half_w, hh_t):
        """Soft ellipse of half-width half_w (constant) and half-height hh_t (per batch):
        inside = 1 - (dx/w)^2 - (dy/h)^2; inside * h / 2 approximates the signed distance to
        the rim in pixels near the top and bottom, and the sigmoid makes it a soft edge about
        1.5 px wide. Scaled by amp so a closed mouth leaves the crop untouched."""
        xs = (np.arange(320, dtype=np.float32) - DEMO_MOUTH_CX) / np.float32(half_w)
        dx2 = g.const("demo.dx2_" + tag, (xs * xs).reshape(1, 1, 1, 320))
        dyn = g.node("Div", ["demo.dy", hh_t], "dyn")
        inside = g.node("Sub", [g.node("Sub", ["const.one", dx2], "one_dx2"),
                                g.node("Mul", [dyn, dyn], "dy2")], "inside")
        dist = g.node("Mul", [inside, g.node("Mul", [hh_t, "const.half_sharp"], "hs")], "dist")
        return g.node("Mul", [g.node("Sigmoid", [dist], "soft"), amp], "alpha_" + tag)

    g.const("const.half_sharp", np.array(0.5 * 1.5, np.float32))
    hh_lip = g.node("Add", [hh, g.const("demo.lip_h", np.array(DEMO_LIP, np.float32))], "hl")
    alpha_lip = ellipse_alpha("lip", DEMO_MOUTH_HALF_W + DEMO_LIP, hh_lip)
    alpha = ellipse_alpha("mouth", DEMO_MOUTH_HALF_W, hh)
    # Colour inside: dark throat, with a lighter band of upper teeth near the top rim; around
    # it a rim of lip colour, so the opening looks like parted lips rather than a hole.
    teeth = g.node("Sigmoid", [g.node("Mul", [g.node("Sub", [
        g.node("Mul", [hh, g.const("demo.teeth_frac", np.array(-0.45, np.float32))], "tf"),
        "demo.dy"], "tdy"), g.const("demo.teeth_sharp", np.array(1.2, np.float32))], "tm")],
                   "teeth")
    color = g.node("Add", [g.const("demo.dark", DEMO_DARK), g.node("Mul", [teeth, g.const(
        "demo.teeth_minus_dark", DEMO_TEETH - DEMO_DARK)], "tc")], "color")
    lipped = g.node("Add", [crop, g.node("Mul", [alpha_lip, g.node("Sub", [g.const(
        "demo.lip", DEMO_LIP_BGR), crop], "ldiff")], "lmul")], "lipped")
    diff = g.node("Sub", [color, lipped], "diff")
    blended = g.node("Add", [lipped, g.node("Mul", [alpha, diff], "ad")], "blend")
    g.nodes.append(helper.make_node("Clip", [blended, g.const("const.zero", np.array(
        0.0, np.float32)), "const.one"], ["output"], name="output"))
    return g.model([_vi("input", ["batch", 6, 320, 320]), _vi("audio", ["batch", 32, 16, 16])],
                   [_vi("output", ["batch", 3, 320, 320])], "unet_demo")


# ---- graph statistics --------------------------------------------------------------------------
def param_count(model):
    """Number of learned parameters: float initializers whose name is not a constant."""
    return int(sum(np.prod(i.dims) for i in model.graph.initializer
                   if i.data_type == TensorProto.FLOAT and i.name.endswith((".weight", ".bias"))))


def conv_macs(model):
    """Multiply-accumulates per frame (batch 1) of all Conv and MatMul nodes, from the graph's
    inferred shapes."""
    m = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[vi.name] = [dd.dim_value if dd.HasField("dim_value") else 1
                           for dd in vi.type.tensor_type.shape.dim]
    init = {i.name: list(i.dims) for i in m.graph.initializer}
    total = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = init[n.input[1]]
            out = shapes[n.output[0]]
            total += int(np.prod(out)) * w[1] * w[2] * w[3]
        elif n.op_type == "MatMul":
            out = shapes[n.output[0]]
            total += int(np.prod(out)) * shapes.get(n.input[0], [1])[-1]
    return total


# ---- independent NumPy forward pass (float64) --------------------------------------------------
def load_weights(path_or_model):
    m = onnx.load(path_or_model) if isinstance(path_or_model, str) else path_or_model
    return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in m.graph.initializer}


def np_conv(x, w, b, stride=1, pad=0):
    """Dense 2-D convolution (cross-correlation, as in PyTorch/ONNX) by im2col.
    x [N,C,H,W], w [O,C,kh,kw] -> [N,O,Ho,Wo]."""
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // sh + 1
    wo = (wd + 2 * pad - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, ho, wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    y = np.tensordot(w.reshape(o, -1), cols.reshape(n, c * kh * kw, ho * wo), axes=([1], [1]))
    # tensordot gives [O, N, HW]
    y = y.transpose(1, 0, 2).reshape(n, o, ho, wo)
    return y + b.reshape(1, o, 1, 1)


def np_conv1x1(x, w, b):
    n, c, h, wd = x.shape
    o = w.shape[0]
    y = np.matmul(w.reshape(o, c), x.reshape(n, c, h * wd))
    return y.reshape(n, o, h, wd) + b.reshape(1, o, 1, 1)


def np_dwconv3(x, w, b, stride):
    """Depthwise 3x3 convolution, pad 1: each channel with its own kernel w[c,0]."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ho = (h + 2 - 3) // stride + 1
    wo = (wd + 2 - 3) // stride + 1
    y = np.zeros((n, c, ho, wo), x.dtype)
    for i in range(3):
        for j in range(3):
            y += xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] \
                * w[:, 0, i, j].reshape(1, c, 1, 1)
    return y + b.reshape(1, c, 1, 1)


def np_relu(x):
    return np.maximum(x, 0.0)


def np_up2_align_corners(x):
    """Bilinear x2 upsampling with align_corners=True: output index o samples the input at
    o*(n-1)/(2n-1), so the corner pixels of input and output coincide."""
    def axis_weights(n):
        m = 2 * n
        src = np.arange(m) * (n - 1) / (m - 1) if m > 1 else np.zeros(1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        return lo, hi, src - lo
    n, c, h, w = x.shape
    lo, hi, f = axis_weights(h)
    x = x[:, :, lo, :] * (1 - f)[None, None, :, None] + x[:, :, hi, :] * f[None, None, :, None]
    lo, hi, f = axis_weights(w)
    return x[:, :, :, lo] * (1 - f) + x[:, :, :, hi] * f


def _np_ir(W, x, name, stride, res):
    h = np_relu(np_conv1x1(x, W[name + ".expand.weight"], W[name + ".expand.bias"]))
    h = np_relu(np_dwconv3(h, W[name + ".dw.weight"], W[name + ".dw.bias"], stride))
    h = np_conv1x1(h, W[name + ".project.weight"], W[name + ".project.bias"])
    return h + x if res else h


def _np_dcdw(W, x, name, stride):
    return _np_ir(W, _np_ir(W, x, name + ".0", stride, False), name + ".1", 1, True)


def _np_up(W, deep, skip, name):
    return _np_dcdw(W, np.concatenate([np_up2_align_corners(deep), skip], axis=1),
                    name + ".conv", 1)


def unet_forward(W, visual, audio):
    """UNet-328 forward pass from MODEL.md in float64. W: initializers by name."""
    x = np.asarray(visual, np.float64)
    a = np.asarray(audio, np.float64)
    x1 = _np_ir(W, x, "inc", 1, False)
    x2 = _np_dcdw(W, x1, "down1", 2)
    x3 = _np_dcdw(W, x2, "down2", 2)
    x4 = _np_dcdw(W, x3, "down3", 2)
    x5 = _np_dcdw(W, x4, "down4", 2)
    x6 = _np_dcdw(W, x5, "down5", 2)
    h = _np_ir(W, a, "audio.0", 1, False)
    h = _np_ir(W, h, "audio.1", 1, False)
    h = np_relu(np_conv(h, W["audio.2.weight"], W["audio.2.bias"], 1, 1))
    h = _np_ir(W, h, "audio.3", 1, True)
    h = np_relu(np_conv(h, W["audio.4.weight"], W["audio.4.bias"], 2, 3))
    h = _np_ir(W, h, "audio.5", 1, True)
    h = _np_ir(W, h, "audio.6", 1, True)
    y = np.concatenate([x6, h], axis=1)
    y = _np_dcdw(W, y, "fuse.0", 1)
    y = _np_dcdw(W, y, "fuse.1", 1)
    y = _np_up(W, y, x5, "up1")
    y = _np_up(W, y, x4, "up2")
    y = _np_up(W, y, x3, "up3")
    y = _np_up(W, y, x2, "up4")
    y = _np_up(W, y, x1, "up5")
    y = np_conv1x1(y, W["outc.weight"], W["outc.bias"])
    return 1.0 / (1.0 + np.exp(-y))


def encoder_forward(W, mel):
    """Audio encoder forward pass from MODEL.md's table in float64: [B,1,80,16] -> [B,512]."""
    mel = np.asarray(mel, np.float64)
    out = []
    for c in range(0, mel.shape[0], 8):  # chunks keep the im2col buffers small
        x = mel[c:c + 8]
        for idx, (k, stride, pad, res) in enumerate(ENC_LAYOUT, start=1):
            y = np_conv(x, W["enc.%d.weight" % idx], W["enc.%d.bias" % idx], stride, pad)
            x = np_relu(y + x if res else y)
        out.append(x.reshape(x.shape[0], -1))
    return np.concatenate(out)


# ---- audio front end (AUDIO.md), used to calibrate the demo UNet on real mel spectrograms ------
def mel_filterbank(sr=16000, n_fft=800, n_mels=80, fmin=55.0, fmax=7600.0):
    """Slaney-scale, area-normalized mel filterbank [n_mels, 1+n_fft/2] (librosa's formula)."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0

    def hz2mel(f):
        return f / f_sp if f < min_log_hz else min_log_mel + math.log(f / min_log_hz) / logstep

    def mel2hz(m):
        return np.where(m < min_log_mel, f_sp * m, min_log_hz * np.exp(logstep * (m - min_log_mel)))
    mel_f = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    fft_f = np.linspace(0, sr / 2, 1 + n_fft // 2)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    return w * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def mel_spectrogram(pcm):
    """Normalized mel [M,80] of 16 kHz PCM, steps 2-7 of AUDIO.md, in float64."""
    x = np.asarray(pcm, np.float64)
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    yp = np.pad(y, 400)
    m = 1 + len(x) // 200
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)
    frames = np.stack([yp[200 * t:200 * t + 800] * win for t in range(m)])
    mag = np.abs(np.fft.rfft(frames, axis=1))
    mel = mag @ mel_filterbank().T
    d = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * (d + 100) / 100 - 4, -4, 4)


def mel_windows(mel):
    """Encoder windows [L,1,80,16] of a normalized mel [M,80] (AUDIO.md step 8)."""
    m = mel.shape[0]
    n = int((m - 16) / 80 * 25) + 2
    out = np.empty((n, 1, 80, 16))
    for i in range(n):
        s = min(16 * i // 5, m - 16)
        out[i, 0] = mel[s:s + 16].T
    return out


def calibration_signals(seconds=0.6, sr=16000):
    """Deterministic test signals: 'loud' (a voiced vowel-like tone with formants, a sine and
    white noise at speech levels) and 'quiet' (very low noise)."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * sr)) / sr
    vowel = sum(math.exp(-((k * 140 - 700) / 500.0) ** 2) * np.sin(2 * np.pi * k * 140 * t)
                for k in range(1, 30)) * 0.15
    am = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)  # syllable-rate amplitude modulation
    return {"vowel": vowel * am, "sine": 0.3 * np.sin(2 * np.pi * 440 * t),
            "noise": rng.normal(0, 0.05, t.size), "quiet": rng.normal(0, 3e-4, t.size)}


def calibrate_demo(encoder_weights):
    """Measures audio_encoder features on silence (mel all -4), near-silence and loud signals
    and derives the demo UNet's energy direction, threshold and scale. Returns a dict."""
    feats = {name: encoder_forward(encoder_weights, mel_windows(mel_spectrogram(sig)))
             for name, sig in calibration_signals().items()}
    silence = encoder_forward(encoder_weights, np.full((1, 1, 80, 16), -4.0))[0]
    loud = np.concatenate([feats["vowel"], feats["sine"], feats["noise"]])
    direction = loud.mean(axis=0) - silence
    direction /= np.linalg.norm(direction)
    e_sil = float(silence @ direction)
    e_quiet = float((feats["quiet"] @ direction).mean())
    e_loud = loud @ direction
    lo = max(e_sil, e_quiet)
    span = float(np.median(e_loud)) - lo
    # The threshold sits a quarter of the way from (near-)silence to typical loud audio, and
    # the median loud window opens halfway (r/(r+s) = 0.5 -> s = r): speech then spans about
    # 0.15..0.65, so syllables show instead of a mouth stuck wide open.
    threshold = lo + 0.25 * span
    scale = float(np.median(e_loud)) - threshold
    # Rounded so that last-bit differences of BLAS summation order between machines cannot
    # change the generated bytes.
    direction = np.round(direction, 5)
    threshold, scale = round(threshold, 3), round(scale, 3)
    return {"direction": direction, "threshold": threshold, "scale": scale,
            "gate": round(float(np.abs(silence).mean()), 3), "e_silence": e_sil,
            "e_quiet": e_quiet,
            "e_loud_min": float(e_loud.min()), "e_loud_median": float(np.median(e_loud)),
            "e_loud_max": float(e_loud.max())}


def demo_open(cal, rows):
    """NumPy reference of the demo's mouth opening in [0,1] for audio rows [B,k,512]."""
    r = np.maximum(rows @ cal["direction"] - cal["threshold"], 0)
    gate = np.minimum(1.0, np.abs(rows).mean(axis=2) * 2.0 / cal["gate"])
    return (r / (r + cal["scale"]) * gate).mean(axis=1)


def demo_forward(W, visual, audio):
    """NumPy reference of unet_demo.onnx from its documented formula (float64); W holds the
    demo's initializers (direction, threshold, scale, gate and colours)."""
    crop = np.asarray(visual, np.float64)[:, 0:3]
    b = crop.shape[0]
    r0, r1 = DEMO_ROWS
    rows = np.asarray(audio, np.float64).reshape(b, 16, 512)[:, r0:r1]
    cal = {"direction": W["demo.direction"][:, 0], "threshold": float(W["demo.threshold"]),
           "scale": float(W["demo.scale"]), "gate": 2.0 / float(W["demo.gate_inv"])}
    opn = demo_open(cal, rows).reshape(b, 1, 1, 1)
    hh = DEMO_MOUTH_HALF_H_MIN + opn * (DEMO_MOUTH_HALF_H_MAX - DEMO_MOUTH_HALF_H_MIN)
    amp = np.minimum(1.0, 6.0 * opn)
    u = np.arange(320.0)
    dy = (u - DEMO_MOUTH_CY).reshape(1, 1, 320, 1)

    def ellipse(half_w, h):
        dx = ((u - DEMO_MOUTH_CX) / half_w).reshape(1, 1, 1, 320)
        inside = 1.0 - dx * dx - (dy / h) ** 2
        return amp * 0.5 * (1.0 + np.tanh(inside * h * 0.75 / 2))  # sigmoid without overflow

    alpha_lip = ellipse(DEMO_MOUTH_HALF_W + DEMO_LIP, hh + DEMO_LIP)
    alpha = ellipse(DEMO_MOUTH_HALF_W, hh)
    teeth = 0.5 * (1.0 + np.tanh((-0.45 * hh - dy) * 1.2 / 2))
    color = W["demo.dark"] + teeth * W["demo.teeth_minus_dark"]
    lipped = crop + alpha_lip * (W["demo.lip"] - crop)
    return np.clip(lipped + alpha * (color - lipped), 0.0, 1.0)
