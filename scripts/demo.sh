#!/usr/bin/env bash
# Set up a venv, index the demo folder (assets/demo) in the small shipped space, and search it
# across modalities. Offline: the space's weights are in assets/models/tiny.
# MODEL=... picks another space (e.g. MODEL=vit-b-32-openai, whose weights open_clip fetches).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${MODEL:-tiny}"
[ -x .venv/bin/mmr ] || { python3 -m venv .venv && .venv/bin/python -m pip install -q -e '.[test]'; }
export MMR_INDEX="${MMR_INDEX:-$(mktemp -d)/demo-index}"
show() { echo; printf "$"; printf " %q" "$@"; echo; "$@"; }
show .venv/bin/mmr index assets/demo --model "$MODEL"
show .venv/bin/mmr search "a red circle" -k 5
show .venv/bin/mmr search --image assets/demo/images/blue-square.png --type text -k 3
show .venv/bin/mmr search "a high rising beep" --type audio -k 3
show .venv/bin/mmr search --audio assets/demo/sounds/low-steady-buzz.flac --type text -k 3
echo; echo "index kept at $MMR_INDEX (mmr info --index $MMR_INDEX)"
