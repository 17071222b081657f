"""Commands about spaces and their weights: spaces (what is registered and ready), fetch, train."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .common import EXIT_OK, safe_text, show_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list the registered spaces and whether their weights are here")
    p.set_defaults(func=cmd_spaces)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="where each weights file is, or where to put it")

    p = sub.add_parser("fetch", help="download a space's weights ahead of time (e.g. before going offline)")
    p.set_defaults(func=cmd_fetch)
    p.add_argument("space", metavar="SPACE", help="a registered space (see `mmr spaces`), a folder or MODEL:TAG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("train", help="train a space: `train clip` (image-text) or `train audio` (audio tower)")
    p.set_defaults(func=cmd_train)
    tsub = p.add_subparsers(dest="what", metavar="WHAT")
    tsub.required = True
    t = tsub.add_parser("clip", help="contrastive training / fine-tuning of an open_clip model on (image, caption) pairs")
    t.add_argument("--pairs", required=True, metavar="FILE", help="JSONL or CSV with image and caption columns")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--init", metavar="SPACE", help="start from a space, OPENCLIP_MODEL:TAG or a checkpoint")
    g.add_argument("--config", metavar="FILE", help="open_clip_config.json to train from scratch")
    t.add_argument("--text-pairs", metavar="FILE", help="JSONL of caption/caption2 paraphrase pairs (extra loss)")
    _add_train_args(t, epochs=10, batch_size=128, lr=5e-4)
    t.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    t = tsub.add_parser("audio", help="align an audio tower to a space's frozen text/image towers")
    t.add_argument("--pairs", required=True, metavar="FILE", help="JSONL or CSV: audio + caption and/or audio + image")
    t.add_argument("--space", required=True, metavar="SPACE", help="the space to align to")
    t.add_argument("--tower", metavar="JSON", help="audio tower config as JSON (default: the space's, else a conv tower)")
    _add_train_args(t, epochs=20, batch_size=64, lr=2e-3)


def _add_train_args(t: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    t.add_argument("--out", required=True, metavar="DIR", help="output space folder (also holds checkpoints and logs)")
    t.add_argument("--name", help="name of the new space (default: the folder name)")
    t.add_argument("--epochs", type=int, default=epochs)
    t.add_argument("--batch-size", type=int, default=batch_size)
    t.add_argument("--lr", type=float, default=lr)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--no-progress", action="store_true")


def cmd_spaces(args: argparse.Namespace) -> int:
    from ..space.registry import list_spaces
    from ..space.towers import weights_status

    rows = [(s, weights_status(s)) for s in list_spaces()]
    if args.json:
        print(json.dumps([{**s.to_dict(), "ready": all(w.found for w in ws), "weights": [w.to_dict() for w in ws]}
                          for s, ws in rows], indent=2))
        return EXIT_OK
    for s, ws in rows:
        mods = "+".join(s.modalities)
        print(f"{s.name:<26} {mods:<18} {_readiness(ws):<28} {s.description}")
        if args.verbose:
            for w in ws:
                print(f"    {w.role:<11} " + (f"{show_path(w.found)} ({w.size / 1e6:.1f} MB)" if w.found else
                                              f"missing: put it at {show_path(w.put_at)}"
                                              + (f" (from {w.source})" if w.source else "")))
    if not args.verbose and any(not w.found for _, ws in rows for w in ws):
        print("\n`mmr fetch SPACE` downloads a space's weights; `mmr spaces -v` says where each file goes")
    return EXIT_OK


def _readiness(ws: list[Any]) -> str:
    missing = [w.role for w in ws if not w.found]
    if not missing:
        return f"ready ({sum(w.size or 0 for w in ws) / 1e6:.0f} MB)"
    return "missing: " + ", ".join(missing)


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..space.registry import resolve_model_arg
    from ..space.towers import fetch_weights

    spec = resolve_model_arg(args.space)
    for w in fetch_weights(spec, progress=not args.no_progress and sys.stderr.isatty()):
        print(f"{w.role:<11} {show_path(w.found or '')} ({(w.size or 0) / 1e6:.1f} MB)")
    print(f"space {spec.name} is ready")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    common = dict(name=args.name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                  resume=args.resume, progress=progress)
    if args.what == "clip":
        from ..train.clip import train_clip

        rep = train_clip(args.pairs, args.out, init=args.init, config=args.config, text_pairs=args.text_pairs,
                         half=args.half, **common)
    else:
        from ..train.audio import train_audio

        tower = json.loads(args.tower) if args.tower else None
        rep = train_audio(args.pairs, args.space, args.out, tower=tower, **common)
    print(f"trained {rep.steps} steps ({rep.epochs} epochs) in {rep.seconds:.0f} s, final loss {rep.final_loss:.4f}"
          + (f", resumed from step {rep.resumed_from}" if rep.resumed_from else ""))
    for path, reason in rep.skipped:
        print(f"  skipped {show_path(path)}: {safe_text(reason)}")
    print(f"space written to {rep.out_dir} (use it with --model {rep.out_dir})")
    return EXIT_OK
