#!/usr/bin/env bash
# Train the small space shipped in assets/models/tiny, from nothing, on 2 CPU cores:
#   generated corpus -> mmr train clip (from a config) -> mmr train audio -> mmr eval -> assets/models/tiny
# Usage: bash scripts/train_tiny.sh [WORKDIR]   (default WORKDIR: data/tiny-run; resumable: run it again)
set -euo pipefail
cd "$(dirname "$0")/.."
W="${1:-data/tiny-run}"
PY="${PYTHON:-.venv/bin/python}"
MMR="$PY -m mmretrieval.cli"
CLIP_EPOCHS="${CLIP_EPOCHS:-60}"
AUDIO_EPOCHS="${AUDIO_EPOCHS:-15}"
start=$(date +%s)
[ -f "$W/corpus/heldout/pairs.jsonl" ] || $PY scripts/make_corpus.py --out "$W/corpus" \
    --images-per-class 100 --sounds-per-class 60 --heldout-per-class 6
$MMR train clip --pairs "$W/corpus/train/image_pairs.jsonl" --text-pairs "$W/corpus/train/text_pairs.jsonl" \
    --config mmretrieval/train/configs/tiny-clip.json --out "$W/clip" --name tiny-clip \
    --epochs "$CLIP_EPOCHS" --batch-size 128 --lr 1e-3 --half --resume
$MMR train audio --pairs "$W/corpus/train/audio_pairs.jsonl" --space "$W/clip" --out "$W/tiny" --name tiny \
    --epochs "$AUDIO_EPOCHS" --batch-size 64 --lr 2e-3 --resume \
    --tower '{"arch": "conv", "sample_rate": 16000, "window_s": 2.0, "hop_s": 1.0, "n_fft": 512, "hop_length": 160, "n_mels": 64, "channels": [32, 64, 128, 192]}'
$MMR eval --pairs "$W/corpus/heldout/pairs.jsonl" --model "$W/tiny" | tee "$W/eval.txt"
$MMR eval --pairs "$W/corpus/heldout/pairs.jsonl" --model "$W/tiny" --json > "$W/eval.json"
rm -rf assets/models/tiny && mkdir -p assets/models/tiny
cp "$W/tiny/space.json" "$W/tiny/open_clip_config.json" "$W/tiny/open_clip_model.safetensors" \
   "$W/tiny/audio_tower.pt" "$W/eval.json" assets/models/tiny/
echo "trained in $(( $(date +%s) - start )) s; shipped to assets/models/tiny ($(du -sh assets/models/tiny | cut -f1))"
