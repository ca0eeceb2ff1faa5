#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/py/test_grpc_services.py: Python grpcio clients against a real `lipsync serve` carrying
# lipsync.LipSyncComposite, lipsync.LipSync and optimized_lipsyncsrv.OptimizedLipSyncService on
# one port: every RPC of those services, their error statuses (API.md 1.6, 7.3, 10), the
# StreamInference per-message error rule, LoadPackage confinement to the models root, and a
# SIGTERM drain. Prints TAP lines and "N passed, N failed".
# Env: LIPSYNC_BIN, MODELS, AVATARS as in test_grpc_monolithic.py.
import io
import json
import os
import shutil

from lstest import (MODELS, all_passed, channel, code, feature_window, finish, free_port,
                    gen_stubs, imports_failed, log_tail, make_avatar, run, serve, started, stop,
                    stub, tap, tmpdir, wait_serving)

try:
    import grpc
    import numpy as np
    from PIL import Image
except Exception as e:
    imports_failed("grpc/numpy/PIL", e)

tmp = tmpdir("lipsync-pysvc-")
gen_stubs(tmp, "lipsync", "optimized_lipsyncsrv", "compositing", "inference")
hpb, hgrpc = stub("health")
lpb, lgrpc = stub("lipsync")
opb, ogrpc = stub("optimized_lipsyncsrv")
cpb, cgrpc = stub("compositing")
ipb, igrpc = stub("inference")

root = os.path.join(tmp, "root")
os.makedirs(root)
make_avatar(os.path.join(root, "t1"), fallback=True)
AV = os.path.join(root, "t1")
N = len(json.load(open(os.path.join(AV, "crop_rects.json"))))
rects = json.load(open(os.path.join(AV, "crop_rects.json")))
# A precomputed audio track for the frame-id API: N+2 rows of 512 (the aud_ave.npy layout).
np.save(os.path.join(AV, "aud_ave.npy"),
        np.random.RandomState(0).randn(N + 2, 512).astype(np.float32))
# A second package in a sub-directory, for LoadPackage with package_dir.
os.makedirs(os.path.join(root, "pkgs"))
shutil.copytree(AV, os.path.join(root, "pkgs", "p2"))
encoder = os.path.join(MODELS, "audio_encoder_tiny.onnx")

PORT = free_port()
srv, log = serve(["--host", "127.0.0.1", "--port", str(PORT), "--models-root", root,
                  "--default-model", "t1", "--audio.encoder_path", encoder,
                  "--server.grace_period_s", "3", "--server.services",
                  "lipsync.LipSyncComposite,lipsync.LipSync,"
                  "optimized_lipsyncsrv.OptimizedLipSyncService,"
                  "compositing.CompositingService,inference.InferenceService"],
                 os.path.join(tmp, "server.log"))
chan = channel(PORT)
health = hgrpc.HealthStub(chan)
comp = lgrpc.LipSyncCompositeStub(chan)
raw = lgrpc.LipSyncStub(chan)
opt = ogrpc.OptimizedLipSyncServiceStub(chan)
cmp_ = cgrpc.CompositingServiceStub(chan)
inf = igrpc.InferenceServiceStub(chan)
started(wait_serving(PORT, proc=srv), "server with three services starts SERVING", log)


FEAT = feature_window()
I, OOR, NF = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
              grpc.StatusCode.NOT_FOUND)


@run
def health_names():
    for name in ("lipsync.LipSyncComposite", "lipsync.LipSync",
                 "optimized_lipsyncsrv.OptimizedLipSyncService"):
        tap(health.Check(hpb.HealthCheckRequest(service=name), timeout=5).status == 1,
            "health %s SERVING" % name)
    tap(code(health.Check, hpb.HealthCheckRequest(service="monolithic.MonolithicService"),
             timeout=5) == NF, "a service not enabled on this listener is NOT_FOUND in health")
    tap(code(chan.unary_unary("/monolithic.MonolithicService/ListModels"), b"", timeout=5) ==
        grpc.StatusCode.UNIMPLEMENTED, "paths of a service not enabled answer UNIMPLEMENTED")


@run
def lipsync_composite():
    h = comp.Health(lpb.CompositeHealthRequest(), timeout=5)
    tap(h.healthy and "t1" in h.message, "LipSyncComposite.Health healthy, names the model")
    r = comp.InferBatchComposite(lpb.CompositeBatchRequest(audio_features=FEAT, batch_size=3,
                                                           start_frame_idx=N - 1), timeout=60)
    imgs = [Image.open(io.BytesIO(b)) for b in r.composited_frames]
    tap(r.success and len(imgs) == 3 and all(i.format == "PNG" and i.size == (1280, 720) and
                                             i.mode == "RGB" for i in imgs),
        "InferBatchComposite: B PNG frames (8-bit RGB) at avatar size")
    tap(r.inference_time_ms > 0 and r.total_time_ms >= r.inference_time_ms,
        "double timings filled")
    vis = np.random.RandomState(2).rand(1, 6, 320, 320).astype(np.float32).ravel()
    r = comp.InferBatchComposite(lpb.CompositeBatchRequest(visual_frames=vis,
                                                           audio_features=FEAT, batch_size=1),
                                 timeout=60)
    tap(r.success and len(r.composited_frames) == 1, "client visual_frames (floats) accepted")
    tap(code(comp.InferBatchComposite, lpb.CompositeBatchRequest(audio_features=FEAT,
                                                                 batch_size=26)) == I,
        "batch 26 -> INVALID_ARGUMENT")
    tap(code(comp.InferBatchComposite, lpb.CompositeBatchRequest(batch_size=1)) == I,
        "no audio_features -> INVALID_ARGUMENT")
    bad = FEAT.copy()
    bad[7] = np.nan
    tap(code(comp.InferBatchComposite, lpb.CompositeBatchRequest(audio_features=bad,
                                                                 batch_size=1)) == I,
        "NaN audio_features -> INVALID_ARGUMENT")


@run
def lipsync_raw():
    h = raw.Health(lpb.HealthRequest(), timeout=5)
    tap(h.healthy and h.model_path == "unet.onnx", "LipSync.Health healthy, model file name")
    per = np.tile(FEAT, 2)
    r = raw.InferBatch(lpb.BatchRequest(audio_features=per, batch_size=2, start_frame_idx=1),
                       timeout=60)
    out = np.array(r.output_frames, dtype=np.float32)
    tap(r.success and out.size == 2 * 307200 and out.min() >= 0 and out.max() <= 1,
        "InferBatch returns B x [3][320][320] floats in [0,1]")
    tap(code(raw.InferBatch, lpb.BatchRequest(audio_features=FEAT, batch_size=1,
                                              visual_frames=[0.0] * 10)) == I,
        "wrong visual_frames count -> INVALID_ARGUMENT")
    tap(code(raw.InferBatch, lpb.BatchRequest(audio_features=FEAT, batch_size=1,
                                              start_frame_idx=-3)) == I,
        "negative start_frame_idx -> INVALID_ARGUMENT")


@run
def optimized():
    r = opt.GenerateInference(opb.OptimizedInferenceRequest(model_name="t1", frame_id=3),
                              timeout=60)
    x1, y1, x2, y2 = rects[3]
    img = Image.open(io.BytesIO(r.prediction_data))
    tap(r.success and r.frame_id == 3 and r.prediction_shape == "(720, 1280, 3)" and
        list(r.bounds) == [x1, y1, x2 - x1, y2 - y1] and img.format == "JPEG" and
        img.size == (1280, 720), "GenerateInference: full JPEG frame, shape, [x,y,w,h] bounds")
    tap(code(opt.GenerateInference, opb.OptimizedInferenceRequest(frame_id=N)) == OOR,
        "frame_id = N -> OUT_OF_RANGE (no wrapping)")
    tap(code(opt.GenerateInference, opb.OptimizedInferenceRequest(frame_id=-1)) == I,
        "frame_id -1 -> INVALID_ARGUMENT")
    tap(code(opt.GenerateInference, opb.OptimizedInferenceRequest(model_name="nope")) == NF,
        "unknown model -> NOT_FOUND")
    b = opt.GenerateBatchInference(opb.BatchInferenceRequest(frame_ids=[5, 1, 5]), timeout=60)
    tap([x.frame_id for x in b.responses] == [5, 1, 5] and
        b.responses[0].prediction_data == b.responses[2].prediction_data,
        "GenerateBatchInference: request order, duplicates give identical frames")
    tap(code(opt.GenerateBatchInference, opb.BatchInferenceRequest(frame_ids=[])) == I and
        code(opt.GenerateBatchInference, opb.BatchInferenceRequest(frame_ids=[0] * 65)) == I,
        "0 or 65 frame ids -> INVALID_ARGUMENT")
    tap(code(opt.GenerateBatchInference, opb.BatchInferenceRequest(frame_ids=[1, N + 5])) == OOR,
        "any invalid id fails the whole batch")
    t = np.arange(640 * 19, dtype=np.float32) / 16000.0
    pcm = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    chunks = [pcm[i * 640:(i + 1) * 640].tobytes() for i in range(19)]
    w = opt.GenerateBatchWithAudio(opb.BatchInferenceWithAudioRequest(
        start_frame_id=2, frame_count=4, audio_chunks=chunks), timeout=60)
    tap(len(w.responses) == 4 and [x.frame_id for x in w.responses] == [2, 3, 4, 5] and
        w.avg_frame_time_ms > 0, "GenerateBatchWithAudio: 4 frames from 19 chunks")
    w2 = opt.GenerateBatchWithAudio(opb.BatchInferenceWithAudioRequest(
        start_frame_id=2, frame_count=4, audio_chunks=chunks[:12] + [b""] * 7), timeout=60)
    tap(len(w2.responses) == 4, "a trailing run of empty chunks is accepted")
    tap(code(opt.GenerateBatchWithAudio, opb.BatchInferenceWithAudioRequest(
        start_frame_id=2, frame_count=4, audio_chunks=chunks[:18])) == I,
        "fewer than frame_count+15 chunks -> INVALID_ARGUMENT")
    tap(code(opt.GenerateBatchWithAudio, opb.BatchInferenceWithAudioRequest(
        start_frame_id=2, frame_count=4, audio_chunks=[b"\0" * 100] * 19)) == I,
        "chunk of the wrong size -> INVALID_ARGUMENT")
    tap(code(opt.GenerateBatchWithAudio, opb.BatchInferenceWithAudioRequest(
        start_frame_id=N - 2, frame_count=4, audio_chunks=chunks)) == OOR,
        "start+count beyond the avatar -> OUT_OF_RANGE")


@run
def stream():
    reqs = [opb.OptimizedInferenceRequest(frame_id=i) for i in (0, 1, N + 3, -1, 2)]
    out = list(opt.StreamInference(iter(reqs), timeout=60))
    ok = ([m.frame_id for m in out] == [0, 1, N + 3, -1, 2] and
          [m.success for m in out] == [True, True, False, False, True] and
          out[2].error.startswith("OUT_OF_RANGE: ") and
          out[3].error.startswith("INVALID_ARGUMENT: "))
    tap(ok, "StreamInference: one response per request, per-message errors, stream goes on",
        str([(m.frame_id, m.success, m.error[:30]) for m in out]))


@run
def management():
    lp = opt.LoadPackage(opb.LoadPackageRequest(package_name="t1"), timeout=30)
    tap(lp.success and lp.frame_count == N and list(lp.audio_features_shape) == [N + 2, 512] and
        "full_body" in lp.videos_loaded, "LoadPackage of a loaded package succeeds, shapes")
    p2 = opt.LoadPackage(opb.LoadPackageRequest(package_name="p2", package_dir="pkgs/p2"),
                         timeout=60)
    tap(p2.success and p2.frame_count == N and p2.initialization_time_ms >= 0,
        "LoadPackage with a package_dir inside the root")
    tap(code(opt.LoadPackage, opb.LoadPackageRequest(package_name="x", package_dir="../..")) ==
        grpc.StatusCode.PERMISSION_DENIED, "package_dir outside the root -> PERMISSION_DENIED")
    tap(code(opt.LoadPackage, opb.LoadPackageRequest(package_name="x", package_dir="nope")) == NF,
        "missing package_dir -> NOT_FOUND")
    tap(code(opt.LoadPackage, opb.LoadPackageRequest(package_name="a/b")) == I,
        "malformed package_name -> INVALID_ARGUMENT")
    lm = opt.ListModels(opb.ListModelsRequest(), timeout=5)
    tap(list(lm.loaded_models) == ["p2", "t1"] and lm.count == 2, "ListModels sorted with count")
    st = opt.GetStats(opb.StatsRequest(model_name="t1"), timeout=5)
    tap(st.total_requests >= 5 and st.avg_inference_time_ms > 0 and
        st.min_inference_time_ms <= st.max_inference_time_ms and st.frame_count == N,
        "GetStats counts frames and per-frame times")
    tap(code(opt.GetStats, opb.StatsRequest(model_name="zz")) == NF, "GetStats unknown NOT_FOUND")
    h = opt.HealthCheck(opb.HealthRequest(), timeout=5)
    tap(h.healthy and h.status == "SERVING" and h.loaded_models == 2, "HealthCheck")
    sizes = {}
    for vt in ("", "full_body", "face_regions", "masked_regions"):
        v = opt.GetVideoFrame(opb.GetVideoFrameRequest(frame_id=4, video_type=vt), timeout=30)
        sizes[vt] = (v.video_type, Image.open(io.BytesIO(v.frame_data)).size)
    tap(sizes[""] == ("full_body", (1280, 720)) and sizes["face_regions"][1] == (320, 320) and
        sizes["masked_regions"][1] == (320, 320), "GetVideoFrame: full body and regions",
        str(sizes))
    tap(code(opt.GetVideoFrame, opb.GetVideoFrameRequest(frame_id=1, video_type="rgb")) == I,
        "unknown video_type -> INVALID_ARGUMENT")
    md = opt.GetModelMetadata(opb.GetModelMetadataRequest(model_name="t1"), timeout=10)
    tap(md.success and md.frame_count == N and list(md.bounds) == [float(v) for v in rects[0]] and
        md.audio_path == "aud_ave.npy", "GetModelMetadata: count, frame-0 rect, audio path")


@run
def compositing():
    h = cmp_.Health(cpb.HealthRequest(), timeout=5)
    tap(h.healthy and h.inference_server_healthy and h.inference_server_url == "" and h.version,
        "CompositingService.Health (in-process inference)")
    r = cmp_.InferBatchComposite(cpb.CompositeBatchRequest(
        model_id="t1", audio_features=FEAT.tobytes(), batch_size=2), timeout=60)
    tap(r.success and len(r.composited_frames) == 2 and
        Image.open(io.BytesIO(r.composited_frames[0])).format == "JPEG",
        "CompositingService.InferBatchComposite returns JPEGs")
    tap(code(cmp_.InferBatchComposite, cpb.CompositeBatchRequest(
        model_id="t1", audio_features=FEAT.tobytes(), batch_size=26)) == I,
        "compositing batch 26 -> INVALID_ARGUMENT (limit 25)")
    st = cmp_.GetModelStats(cpb.GetModelStatsRequest(model_id="t1"), timeout=5)
    tap(len(st.models) == 1 and st.models[0].stats.usage_count >= 1 and
        st.models[0].stats.memory_bytes > 0 and st.loaded_models >= 1,
        "CompositingService.GetModelStats for one model")
    tap(code(cmp_.GetModelStats, cpb.GetModelStatsRequest(model_id="zz")) == NF,
        "compositing GetModelStats unknown -> NOT_FOUND")
    lm = cmp_.LoadModel(cpb.LoadModelRequest(model_id="t1", force_reload=True), timeout=60)
    tap(lm.success and lm.load_time_ms > 0 and lm.stats.loaded_unix_ms > 0,
        "compositing LoadModel force_reload reloads")
    ls = cmp_.ListModels(cpb.ListModelsRequest(), timeout=5)
    tap("t1" in [m.model_id for m in ls.models], "compositing ListModels")


@run
def inference():
    h = inf.Health(ipb.HealthRequest(), timeout=5)
    tap(h.healthy and h.loaded_models >= 1, "InferenceService.Health")
    B = 2
    vis = np.random.RandomState(3).rand(B, 6, 320, 320).astype(np.float32)
    r = inf.InferBatch(ipb.InferBatchRequest(model_id="t1", visual_frames=vis.tobytes(),
                                             audio_features=FEAT.tobytes(), batch_size=B),
                       timeout=60)
    outs = [np.frombuffer(o.data, np.float32) for o in r.outputs]
    tap(r.success and len(outs) == B and all(o.size == 307200 and o.min() >= 0 and o.max() <= 1
                                             for o in outs) and r.gpu_id == -1,
        "InferenceService.InferBatch: B raw [3][320][320] regions in [0,1]")
    pcm = (0.2 * np.sin(np.arange((B + 15) * 640) / 7.0)).astype(np.float32)
    r = inf.InferBatch(ipb.InferBatchRequest(model_id="t1", visual_frames=vis.tobytes(),
                                             raw_audio=pcm.tobytes(), batch_size=B), timeout=60)
    tap(r.success and len(r.outputs) == B and r.audio_processing_ms > 0,
        "InferenceService.InferBatch with raw_audio")
    tap(code(inf.InferBatch, ipb.InferBatchRequest(model_id="t1", audio_features=FEAT.tobytes(),
                                                   batch_size=1)) == I,
        "inference without visual_frames -> INVALID_ARGUMENT (required)")
    tap(code(inf.InferBatch, ipb.InferBatchRequest(model_id="t1", visual_frames=b"", batch_size=51,
                                                   audio_features=FEAT.tobytes())) == I,
        "inference batch 51 -> INVALID_ARGUMENT")
    u = inf.UnloadModel(ipb.UnloadModelRequest(model_id="p2"), timeout=10)
    ls = inf.ListModels(ipb.ListModelsRequest(), timeout=5)
    tap(u.success and [m.loaded for m in ls.models if m.model_id == "p2"] == [False],
        "inference UnloadModel + ListModels")


PATHS = {
    "lipsync.LipSyncComposite": ["InferBatchComposite", "Health"],
    "lipsync.LipSync": ["InferBatch", "Health"],
    "monolithic.MonolithicService": [],  # not enabled on this listener: UNIMPLEMENTED
    "compositing.CompositingService": ["InferBatchComposite", "ListModels", "LoadModel",
                                       "UnloadModel", "GetModelStats", "Health"],
    "inference.InferenceService": ["InferBatch", "ListModels", "LoadModel", "UnloadModel",
                                   "GetModelStats", "Health"],
    "optimized_lipsyncsrv.OptimizedLipSyncService": [
        "GenerateInference", "GenerateBatchInference", "GenerateBatchWithAudio",
        "StreamInference", "LoadPackage", "GetStats", "ListModels", "HealthCheck",
        "GetVideoFrame", "GetModelMetadata"],
    "grpc.health.v1.Health": ["Check"],
}


@run
def hostile_bytes():
    # Random bytes (and truncated varints, huge length prefixes) to every unary-callable path:
    # every call must end with a status (any), and the server must stay up and healthy.
    rng = np.random.RandomState(7)
    payloads = [b"\xff" * 11, b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x80\x80\x80\x80\x08abc",
                b"\x28\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]
    payloads += [rng.bytes(int(n)) for n in rng.randint(1, 3000, 4)]
    answered = total = 0
    for svc, methods in PATHS.items():
        for m in methods:
            call = chan.unary_unary("/%s/%s" % (svc, m))
            for p in payloads:
                total += 1
                try:
                    call(p, timeout=30)
                    answered += 1
                except grpc.RpcError as e:
                    answered += e.code() != grpc.StatusCode.DEADLINE_EXCEEDED
    tap(answered == total, "garbage to every path: all %d calls answered" % total,
        "%d of %d" % (answered, total))
    tap(srv.poll() is None and
        health.Check(hpb.HealthCheckRequest(service=""), timeout=5).status == 1,
        "server alive and SERVING after the garbage")


rc = stop(srv, 20)
tap(rc == 0, "SIGTERM: exit 0", "rc=%s" % rc)
chan.close()
if not all_passed():
    log_tail(log, 25, "server log (tail)")
finish()
