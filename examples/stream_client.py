#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# examples/stream_client.py: a minimal lipsync.v1 Stream client in Python (Debian python3-grpcio,
# python3-numpy). Sends a 16 kHz WAV in 40 ms chunks at the pace of speech, ends the utterance,
# and writes every frame as <out>/frame_<index>.jpg, printing each frame's timestamp and the
# server-side latency. Stubs are generated at run time from proto/lipsync_v1.proto.
#
#   /usr/bin/python3 examples/stream_client.py --target 127.0.0.1:50053 --audio speech.wav \
#       --out /tmp/frames [--avatar ID] [--low-latency] [--idle] [--fast]
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import wave

import grpc
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_stubs():
    out = tempfile.mkdtemp(prefix="lipsync-stubs-")
    plugin = shutil.which("grpc_python_plugin")
    if not plugin:
        sys.exit("grpc_python_plugin not found (Debian package protobuf-compiler-grpc)")
    subprocess.check_call(["protoc", "-I" + os.path.join(ROOT, "proto"), "--python_out=" + out,
                           "--grpc_python_out=" + out, "--plugin=protoc-gen-grpc_python=" + plugin,
                           os.path.join(ROOT, "proto", "lipsync_v1.proto")])
    sys.path.insert(0, out)
    import lipsync_v1_pb2
    import lipsync_v1_pb2_grpc
    return lipsync_v1_pb2, lipsync_v1_pb2_grpc


def read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            sys.exit("%s: expected 16 kHz mono 16-bit PCM (convert with `lipsync audio` or "
                     "ffmpeg -ar 16000 -ac 1)" % path)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def main():
    ap = argparse.ArgumentParser(description="lipsync.v1 Stream client example")
    ap.add_argument("--target", default="127.0.0.1:50053")
    ap.add_argument("--audio", required=True, help="16 kHz mono 16-bit WAV")
    ap.add_argument("--out", required=True, help="directory for frame_<index>.jpg")
    ap.add_argument("--avatar", default="")
    ap.add_argument("--low-latency", action="store_true")
    ap.add_argument("--idle", action="store_true", help="keep idle frames")
    ap.add_argument("--fast", action="store_true", help="send audio as fast as possible")
    a = ap.parse_args()
    pb, pbg = load_stubs()
    pcm = read_wav(a.audio)
    os.makedirs(a.out, exist_ok=True)

    def requests():
        yield pb.StreamRequest(open=pb.StreamOpen(
            avatar_id=a.avatar, encoding=pb.AUDIO_ENCODING_S16LE, disable_idle=not a.idle,
            latency=pb.LATENCY_MODE_LOW if a.low_latency else pb.LATENCY_MODE_EXACT))
        t0 = time.time()
        for j, i in enumerate(range(0, len(pcm), 640)):  # 640 samples = 40 ms
            if not a.fast:
                time.sleep(max(0.0, t0 + 0.04 * j - time.time()))
            yield pb.StreamRequest(audio=pcm[i:i + 640].tobytes())
        yield pb.StreamRequest(end=pb.EndOfUtterance())
        if a.idle:
            time.sleep(1.0)  # a few idle frames after the utterance

    chan = grpc.insecure_channel(a.target, options=[("grpc.max_receive_message_length", 64 << 20)])
    stub = pbg.LipSyncStub(chan)
    n = 0
    try:
        for r in stub.Stream(requests(), timeout=600):
            if r.WhichOneof("msg") == "event":
                e = r.event
                print("event %s frame %d %s%s" % (pb.StreamEvent.Kind.Name(e.kind), e.frame,
                                                   e.message, " dropped %d" % e.dropped_frames
                                                   if e.dropped_frames else ""))
                continue
            f = r.frame
            with open(os.path.join(a.out, "frame_%06d.jpg" % f.index), "wb") as fh:
                fh.write(f.image)
            n += 1
            print("frame %5d pts %7d ms %s latency %.1f ms" % (
                f.index, f.pts_ms, "speech" if f.speech else "idle  ", f.timings.total_ms))
    except grpc.RpcError as e:
        sys.exit("stream failed: %s: %s" % (e.code().name, e.details()))
    print("%d frames written to %s" % (n, a.out))


if __name__ == "__main__":
    main()
