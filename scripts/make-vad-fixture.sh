#!/usr/bin/env bash
# Regenerates test/fixtures/speech-16k.wav for the vad model tests (needs espeak-ng and sox).
# 1.0 s digital silence, one spoken English sentence (~1.9 s), 1.0 s digital silence; 16 kHz mono 16-bit PCM.
set -euo pipefail

out="${1:-$(cd "$(dirname "$0")/.." && pwd)/test/fixtures/speech-16k.wav}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 160 -w "$tmp/tts.wav" "Please turn on the lights in the kitchen."

# Trim espeak's own leading/trailing silence (below -60 dBFS), resample, then pad exactly 1.0 s each side.
# -D: no dither, so the padding stays exact zeros and the file is byte-for-byte reproducible.
sox -D "$tmp/tts.wav" -r 16000 -c 1 -b 16 -e signed-integer "$out" \
  silence 1 0.01 0.1% reverse silence 1 0.01 0.1% reverse \
  rate 16000 pad 1.0 1.0

soxi "$out"
