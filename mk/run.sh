#!/usr/bin/env bash
# `make run`: renders a short demo clip (espeak-ng speaking into the demo avatar) so there is
# something to look at, then starts the monolithic gRPC server on the demo avatar.
set -euo pipefail
BIN=$1 MODELS=$2 AVATARS=$3 PORT=$4
mkdir -p out
if command -v espeak-ng >/dev/null; then
    espeak-ng -s 150 -w out/hello.wav "Hello! I am the lipsync demo avatar. My lips follow what I say, frame by frame, twenty five times a second." 2>/dev/null
    "$BIN" render --avatar "$AVATARS/demo" --audio out/hello.wav --encoder "$MODELS/audio_encoder.onnx" --out out/demo.mp4 \
        && echo "make run: rendered out/demo.mp4 (the demo avatar speaking out/hello.wav)"
fi
if "$BIN" serve --help >/dev/null 2>&1; then
    echo "make run: starting the monolithic server on port $PORT with the demo avatar (Ctrl-C stops it)"
    echo "          open http://localhost:8080/ in a browser to talk to the avatar"
    echo "          try: $BIN client health --port $PORT"
    echo "               $BIN client infer --port $PORT --model demo --audio out/hello.wav --out out/frames/"
    exec "$BIN" serve --role monolithic --models-root "$AVATARS" --default-model demo --port "$PORT" \
        --audio.encoder_path "$MODELS/audio_encoder.onnx" --gateway.port 8080
fi
