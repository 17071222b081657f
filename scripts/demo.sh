#!/usr/bin/env bash
# Set up a venv, generate a small demo folder, index it and run cross-modal searches.
# MODEL picks the space (default: the default space, OpenAI ViT-B/32, whose weights are fetched
# through open_clip's hub cache, or given as a local file: MODEL=ViT-B-32-quickgelu:/path/to/weights.bin).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-vit-b-32-openai}"
[ -x .venv/bin/mmr ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[test]'; }
DEMO="${DEMO_DIR:-$(mktemp -d)/demo}"
.venv/bin/python -c "from mmretrieval.synth import write_demo_folder; write_demo_folder('$DEMO')"
export MMR_INDEX="$DEMO-index"
.venv/bin/mmr index "$DEMO" --model "$MODEL" -v
.venv/bin/mmr info
echo; echo '$ mmr search "a red circle" -k 5'
.venv/bin/mmr search "a red circle" -k 5
echo; echo "$ mmr search --image $DEMO/images/blue-square.png --type text -k 3"
.venv/bin/mmr search --image "$DEMO/images/blue-square.png" --type text -k 3
