"""`mmr search`: by text, an image or a sound; composed queries; filters; the hits as lines or JSON."""
from __future__ import annotations

import argparse
import json
import re
from typing import Any

from .common import EXIT_OK, add_index_arg, device, err, index_dir, safe_text, show_path


def register(sub: argparse._SubParsersAction) -> None:
    from ..query import MODES, SORTS
    from ..relevance.cutoff import CUTOFFS

    p = sub.add_parser("search", help="search by text, --image or --audio")
    p.set_defaults(func=cmd_search)
    p.add_argument("text", nargs="?", help="text query")
    p.add_argument("--image", metavar="PATH", help="image file as the query")
    p.add_argument("--audio", metavar="PATH", help="audio file as the query")
    p.add_argument("--type", dest="types", action="append", metavar="TYPE",
                   help="result modality: image, audio, text, or video (moments of videos, grouped by video) (repeatable; default: the other modalities)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--min-relevance", type=float, metavar="R",
                   help="only hits with relevance >= R (0..1; comparable across queries and modalities): 0.5 = as "
                        "good as a typical best match; with `mmr calibrate`, R = probability of being relevant")
    p.add_argument("--cutoff", choices=CUTOFFS, default="none",
                   help="gap: keep the hits before the largest drop in relevance, when one stands out")
    p.add_argument("--path", dest="paths", action="append", metavar="PATH|GLOB",
                   help="only files under this folder, this file, or matching this glob (* spans folders); repeatable")
    p.add_argument("--after", metavar="DATE", help="only files dated on or after DATE (YYYY-MM-DD[THH:MM]): the "
                                                   "photo's EXIF date, else the audio tag date, else the file's mtime")
    p.add_argument("--before", metavar="DATE", help="only files dated before DATE")
    p.add_argument("--min-size", metavar="SIZE", help="only files of at least SIZE bytes (e.g. 200K, 2M)")
    p.add_argument("--max-size", metavar="SIZE", help="only files of at most SIZE bytes")
    p.add_argument("--ext", dest="exts", action="append", metavar="EXT", help="only files with this extension "
                                                                             "(jpg, flac...); repeatable")
    for sign, verb in (("add", "add"), ("subtract", "subtract")):
        p.add_argument(f"--{sign}", dest=f"{sign}_text", action="append", metavar="[W:]TEXT",
                       help=f"{verb} a text to the query (weight W, default 1; '12:30 lunch' is all text, "
                            f"'2: 12:30 lunch' weighs it 2); repeatable")
        for m in ("image", "audio"):
            p.add_argument(f"--{sign}-{m}", dest=f"{sign}_{m}", action="append", metavar="[W:]PATH",
                           help=f"{verb} an {m} file to the query; repeatable")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="vector (by meaning, default), keyword (BM25 over passages, file and folder names, tags) or "
                        "hybrid (both rankings fused): for exact names, codes and numbers; plain text queries only")
    p.add_argument("--sort", choices=SORTS, default="relevance",
                   help="order of the hits that pass: relevance (default), date (newest first) or path")
    p.add_argument("--json", action="store_true", help="print hits as a JSON list")
    add_index_arg(p)


def cmd_search(args: argparse.Namespace) -> int:
    from ..index.openmp import one_off

    one_off()  # before the index's module loads faiss
    from ..engine import Engine
    from ..query import parse_filters
    from ..relevance.cutoff import first_below_rule
    from ..relevance.scorer import MIN_ITEMS

    with Engine(index_dir(args), readonly=True, device=device(args, bulk=False)) as eng:
        filters = parse_filters(paths=args.paths, after=args.after, before=args.before, min_size=args.min_size,
                                max_size=args.max_size, exts=args.exts)
        extra = query_parts(args)
        if extra:
            base = [(1.0, m, v) for m, v in (("text", args.text), ("image", args.image), ("audio", args.audio))
                    if v is not None]
            hits = eng.search_parts(base + extra, k=args.k, types=args.types, min_relevance=args.min_relevance,
                                    cutoff=args.cutoff, filters=filters, sort=args.sort, mode=args.mode)
        else:
            hits = eng.search(args.text, image=args.image, audio=args.audio, k=args.k, types=args.types,
                              min_relevance=args.min_relevance, cutoff=args.cutoff, filters=filters, sort=args.sort,
                              mode=args.mode)
        for note in eng.notes:
            err(note)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        print(f"no results at or above relevance {args.min_relevance}" if args.min_relevance is not None
              else "no results")
    ordered = args.sort in (None, "relevance") and args.mode in (None, "vector")  # else not by relevance
    rule = first_below_rule([h.relevance for h in hits]) if ordered else None
    for i, h in enumerate(hits):
        if i == rule:
            print(RULE_LINE if i else "     (no hit reaches relevance 0.5: these are only the nearest)")
        print(format_hit(h))
    if any(h.relevance is None for h in hits):
        print(f"     (--: no relevance; a modality needs at least {MIN_ITEMS} items in the index for one, "
              "so these hits are in cosine order)")
    return EXIT_OK


RULE_LINE = "     ---------- relevance below 0.5 from here: more likely unrelated than related ----------"


# A weight, then a colon, then the value: "0.5:people", "-1: dogs". A colon followed by a digit belongs to the
# value instead ("12:30 meeting", "16:9 screenshot"): such a value takes a weight with a space, "2: 12:30 meeting".
_WEIGHT = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*:(?=\s|[^\d]|$)")


def split_weight(raw: str) -> tuple[float, str]:
    """(weight, value) of an --add/--subtract value: "0.5:people" -> (0.5, "people"); no weight -> (1.0, raw)."""
    m = _WEIGHT.match(raw)
    if m is None:
        return 1.0, raw
    return float(m.group(1)), raw[m.end():].strip()


def query_parts(args: argparse.Namespace) -> list[tuple[float, str, str]]:
    """--add / --subtract[-image|-audio] values, each optionally prefixed by a weight (`split_weight`)."""
    out = []
    for sign, factor in (("add", 1.0), ("subtract", -1.0)):
        for m in ("text", "image", "audio"):
            for raw in getattr(args, f"{sign}_{m}") or []:
                weight, value = split_weight(raw)
                out.append((factor * weight, m, value))
    return out


def format_hit(h: Any) -> str:
    from ..modalities import get_modality

    after_path, extra = get_modality(h.modality).describe(h.locator, h.text)
    rel = "  -- " if h.relevance is None else f"{h.relevance:5.2f}"
    line = f"{h.rank:3d}  {h.score:+.4f} {rel}  {h.modality:<5}  {show_path(h.path)}{safe_text(after_path)}{safe_text(extra)}"
    if getattr(h, "approximate", False):  # through a migration's bridge: not yet embedded in this space
        line += "  (approx.)"
    if h.moments:  # more moments of the same video, under its best one
        line += "\n" + "\n".join(f"     {m.score:+.4f} {'  -- ' if m.relevance is None else f'{m.relevance:5.2f}'}  "
                                  f"{m.modality:<5}  {safe_text(m.where)}" for m in h.moments)
    return line
