#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# bench/soak.py: runs a real `lipsync serve` under mixed load for a configurable time and reports
# resident memory over time, errors and latency. The load (all on loopback): monolithic
# InferBatchComposite with raw audio, lipsync.v1 Stream utterances, LipSync raw-float batches,
# management and health calls, and a steady trickle of bad requests (garbage bytes, NaN audio,
# unknown models, cancelled calls) that must fail cleanly. RSS of the server is sampled every
# few seconds; growth is measured from the end of the warm-up (the first fifth of the run, at
# most 5 minutes) to the end.
#
#   /usr/bin/python3 bench/soak.py --minutes 30 [--avatar-frames 25] [--csv out/soak.csv]
#
# Uses the tiny models so the server works through many requests; prints one summary line per
# RPC and a final `soak:` line. Exit status 1 if the server died, any RPC failed unexpectedly,
# or RSS grew by 1 % or more after warm-up.
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
import numpy as np  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def heap_kb(port):
    """(in use, free) KiB of the server's malloc heap from its /metrics; (-1, -1) if unread."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1, -1
    v = {}
    for line in text.splitlines():
        if line.startswith("lipsync_heap_"):
            k, x = line.split()
            v[k] = float(x) / 1024.0
    return v.get("lipsync_heap_in_use_bytes", -1), v.get("lipsync_heap_free_bytes", -1)


def main():
    ap = argparse.ArgumentParser(description="run lipsync serve under mixed load; report RSS, errors, latency")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--avatar-frames", type=int, default=25)
    ap.add_argument("--csv", default="")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/lipsync"))
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--server-arg", action="append", default=[],
                    help="extra `lipsync serve` argument (repeat), e.g. --server-arg=--onnx.x")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="lipsync-soak-")
    stubs = os.path.join(tmp, "stubs")
    os.makedirs(stubs)
    protos = ["monolithic.proto", "lipsync.proto", "lipsync_v1.proto", "health.proto"]
    subprocess.check_call(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + stubs,
                           "--grpc_python_out=" + stubs,
                           "--plugin=protoc-gen-grpc_python=" + shutil.which("grpc_python_plugin")]
                          + [os.path.join(ROOT, "proto", p) for p in protos])
    sys.path.insert(0, stubs)
    import monolithic_pb2 as mpb
    import monolithic_pb2_grpc as mgrpc
    import lipsync_pb2 as lpb
    import lipsync_pb2_grpc as lgrpc
    import lipsync_v1_pb2 as vpb
    import lipsync_v1_pb2_grpc as vgrpc
    import health_pb2 as hpb
    import health_pb2_grpc as hgrpc

    root = os.path.join(tmp, "avatars")
    subprocess.check_call(["/usr/bin/python3", os.path.join(ROOT, "tools/gen_avatar.py"), "--out",
                           os.path.join(root, "soak"), "--unet",
                           os.path.join(a.models, "unet_tiny.onnx"), "--frames",
                           str(a.avatar_frames)], stdout=subprocess.DEVNULL)
    port = free_port()
    mport = free_port()
    log = open(os.path.join(tmp, "server.log"), "w")
    srv = subprocess.Popen([a.bin, "serve", "--role", "monolithic", "--models-root", root,
                            "--default-model", "soak", "--port", str(port), "--audio.encoder_path",
                            os.path.join(a.models, "audio_encoder_tiny.onnx"), "--log.level",
                            "warn", "--metrics.port", str(mport)] + a.server_arg,
                           stdout=log, stderr=log)
    target = "127.0.0.1:%d" % port
    opts = [("grpc.max_receive_message_length", 200 << 20),
            ("grpc.max_send_message_length", 200 << 20)]
    ch = grpc.insecure_channel(target, options=opts)
    grpc.channel_ready_future(ch).result(timeout=60)
    hs = hgrpc.HealthStub(ch)
    for _ in range(300):
        try:
            if hs.Check(hpb.HealthCheckRequest(service=""), timeout=5).status == 1:
                break
        except grpc.RpcError:
            pass
        time.sleep(0.1)

    t = np.arange(16000 * 8) / 16000.0
    pcm = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    stop = threading.Event()
    lock = threading.Lock()
    stats = {}  # name -> [count, errors, [latencies]]

    def record(name, ms, ok):
        with lock:
            s = stats.setdefault(name, [0, 0, []])
            s[0] += 1
            s[1] += 0 if ok else 1
            if len(s[2]) < 200000:
                s[2].append(ms)

    def call(name, fn, want=None):
        t0 = time.time()
        try:
            fn()
            ok = want is None
        except grpc.RpcError as e:
            ok = want is not None and e.code() in want
        record(name, (time.time() - t0) * 1000.0, ok)

    mono = mgrpc.MonolithicServiceStub(ch)
    raw = lgrpc.LipSyncStub(ch)
    v1 = vgrpc.LipSyncStub(ch)

    def infer_loop(seed):
        i = seed
        while not stop.is_set():
            s = 8 + (i * 8) % 200
            b = 8
            audio = pcm[:(b + 15) * 640].tobytes()
            call("monolithic.InferBatchComposite", lambda: mono.InferBatchComposite(
                mpb.CompositeBatchRequest(model_id="soak", raw_audio=audio, batch_size=b,
                                          start_frame_idx=s), timeout=60))
            i += 1

    def stream_loop():
        while not stop.is_set():
            def gen():
                yield vpb.StreamRequest(open=vpb.StreamOpen(avatar_id="soak", disable_idle=True,
                                                            max_lag_frames=-1))
                x = pcm[:16000 * 3]
                for k in range(0, len(x), 3200):
                    yield vpb.StreamRequest(audio=x[k:k + 3200].tobytes())
                yield vpb.StreamRequest(end=vpb.EndOfUtterance())

            def run():
                n = 0
                for r in v1.Stream(gen(), timeout=120):
                    n += r.WhichOneof("msg") == "frame"
                    if r.WhichOneof("msg") == "event" and r.event.kind == vpb.StreamEvent.KIND_UTTERANCE_END:
                        break
                if n < 50:
                    raise RuntimeError("stream gave %d frames" % n)
            t0 = time.time()
            try:
                run()
                ok = True
            except (grpc.RpcError, RuntimeError):
                ok = False
            record("v1.Stream(3 s)", (time.time() - t0) * 1000.0, ok)

    def misc_loop():
        i = 0
        bad = grpc.StatusCode.INVALID_ARGUMENT
        while not stop.is_set():
            k = i % 8
            if k == 0:
                call("monolithic.ListModels", lambda: mono.ListModels(mpb.ListModelsRequest(), timeout=10))
            elif k == 1:
                call("monolithic.GetModelStats", lambda: mono.GetModelStats(mpb.GetModelStatsRequest(), timeout=10))
            elif k == 2:
                call("health.Check", lambda: hs.Check(hpb.HealthCheckRequest(service=""), timeout=10))
            elif k == 3:
                nan = np.full(2000, np.nan, dtype=np.float32).tobytes()
                call("bad: NaN audio", lambda: mono.InferBatchComposite(
                    mpb.CompositeBatchRequest(raw_audio=nan, batch_size=1), timeout=10), {bad})
            elif k == 4:
                g = ch.unary_unary("/monolithic.MonolithicService/InferBatchComposite")
                call("bad: garbage bytes", lambda: g(os.urandom(64), timeout=10),
                     {bad, grpc.StatusCode.INTERNAL})
            elif k == 5:
                call("bad: unknown model", lambda: mono.InferBatchComposite(
                    mpb.CompositeBatchRequest(model_id="nope", raw_audio=pcm[:8000].tobytes(),
                                              batch_size=1), timeout=10), {grpc.StatusCode.NOT_FOUND})
            elif k == 6:
                fut = mono.InferBatchComposite.future(mpb.CompositeBatchRequest(
                    raw_audio=pcm[:(32 + 15) * 640].tobytes(), batch_size=32), timeout=60)
                time.sleep(0.02)
                fut.cancel()
                record("cancelled calls", 0.0, True)
            else:
                vis = np.random.rand(2, 6, 320, 320).astype(np.float32)
                aud = np.random.rand(2 * 8192).astype(np.float32)
                call("lipsync.LipSync.InferBatch", lambda: raw.InferBatch(lpb.BatchRequest(
                    visual_frames=vis.ravel(), audio_features=aud, batch_size=2), timeout=60))
            i += 1
            time.sleep(0.05)

    threads = [threading.Thread(target=infer_loop, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=stream_loop), threading.Thread(target=misc_loop)]
    for th in threads:
        th.start()
    duration = a.minutes * 60.0
    warm = min(duration / 5.0, 300.0)
    t_start = time.time()
    samples = []
    died = False
    while time.time() - t_start < duration:
        time.sleep(5)
        r = rss_kb(srv.pid)
        if r is None or srv.poll() is not None:
            died = True
            break
        used, free = heap_kb(mport)
        samples.append((time.time() - t_start, r, used, free))
        el = time.time() - t_start
        if len(samples) % 12 == 0:
            print("# t=%5.0f s rss=%.1f MiB heap in use=%.1f MiB heap free=%.1f MiB" %
                  (el, r / 1024.0, used / 1024.0, free / 1024.0))
            sys.stdout.flush()
    stop.set()
    for th in threads:
        th.join(timeout=180)
    srv.terminate()
    code = srv.wait(timeout=60)
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("seconds,rss_kb,heap_in_use_kb,heap_free_kb\n")
            for s, r, u, fr in samples:
                f.write("%.1f,%d,%d,%d\n" % (s, r, u, fr))
    base = [r for s, r, _, _ in samples if s >= warm]
    base_rss = base[0] if base else (samples[0][1] if samples else 0)
    end_rss = samples[-1][1] if samples else 0
    peak = max((r for _, r, _, _ in samples), default=0)
    growth = 100.0 * (end_rss - base_rss) / base_rss if base_rss else 0.0
    unexpected = 0
    for name in sorted(stats):
        n, errs, lat = stats[name]
        lat = sorted(lat)
        p50 = lat[len(lat) // 2] if lat else 0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else 0
        unexpected += errs
        print("rpc=%-32s calls=%-7d unexpected=%-4d p50_ms=%.1f p99_ms=%.1f" % (name, n, errs, p50, p99))
    print("soak: minutes=%.1f server_exit=%s died=%s rss_after_warmup_mib=%.1f rss_end_mib=%.1f "
          "rss_peak_mib=%.1f growth_pct=%.2f unexpected=%d" %
          (a.minutes, code, died, base_rss / 1024.0, end_rss / 1024.0, peak / 1024.0, growth,
           unexpected))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if died or unexpected or growth >= 1.0 or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
