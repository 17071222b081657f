"""Commands that build and keep an index: index, remove, compact, check, info, export, import."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .common import (EXIT_ERROR, EXIT_OK, PRECISION_HELP, add_index_arg, add_ray_args, device, index_dir, ray_options,
                     safe_text, show_path)

MESSAGES_LOG = "messages.log"  # what decoding libraries printed during the last `mmr index`


def register_index(sub: argparse._SubParsersAction) -> None:
    """`mmr index` alone: listed first, before `search` (the rest of this group comes after it)."""
    from ..index.choose import KINDS

    p = sub.add_parser("index", help="index folders (incremental: only new or changed files are embedded)")
    p.set_defaults(func=cmd_index)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    add_index_arg(p)
    p.add_argument("--model", metavar="SPACE",
                   help="space for a new index: a registered name (see `mmr spaces`), a space folder, or "
                        "OPENCLIP_MODEL[:TAG_OR_CHECKPOINT]; an existing index remembers its own")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decode threads (default: cores, max 4; where an int8 image tower runs on the CPU each also "
                        "encodes the images it decodes, and the default is the tower's cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--index-type", choices=("auto", *KINDS),
                   help="vector index type (remembered; default auto: exact flat while small, IVF as it grows); "
                        "changing it converts the index without re-embedding")
    p.add_argument("--memory-budget", metavar="SIZE", help="keep the vector index under SIZE (e.g. 600M): "
                                                          "picks a quantised type when needed (remembered)")
    p.add_argument("--pool-audio", action=argparse.BooleanOptionalAction, default=None,
                   help="one item per audio file (mean of its windows) instead of one per window; the index "
                        "remembers it (default: as the index was built, else windows)")
    p.add_argument("--ocr", choices=("off", "scans", "all"), default=None,
                   help="which pictures OCR reads into searchable text (needs the ocr extra): scans = scanned and "
                        "drawn pages of documents (the default), all = also photos and figures (slower), off; "
                        "the index remembers it")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP + "; for a new index (an existing one keeps its own)")
    p.add_argument("--checkpoint-seconds", type=float, default=30.0, metavar="S",
                   help="commit what is done every S seconds (default 30); a killed run loses at most that")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="list skipped files with their reasons")
    add_ray_args(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="what an index holds and which space it lives in")
    p.set_defaults(func=cmd_info)
    add_index_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="list skipped files")

    p = sub.add_parser("check", help="verify that catalog and vectors agree; --repair fixes them")
    p.set_defaults(func=cmd_check)
    add_index_arg(p)
    p.add_argument("--repair", action="store_true", help="fix from the catalog, re-embedding nothing already known")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("remove", help="forget indexed files under PATHs (the files stay on disk)")
    p.set_defaults(func=cmd_remove)
    p.add_argument("paths", nargs="+", metavar="PATH")
    add_index_arg(p)

    p = sub.add_parser("export", help="write the index's vectors and metadata as shards in clip-retrieval's layout")
    p.set_defaults(func=cmd_export)
    p.add_argument("out", metavar="DIR", help="a new or empty folder")
    p.add_argument("--with-cache", action="store_true",
                   help="also the embedding cache (vectors of files no longer indexed), which `mmr import` takes in")
    add_index_arg(p)

    p = sub.add_parser("import", help="build an index from shards written by `mmr export` (nothing is re-embedded)")
    p.set_defaults(func=cmd_import)
    p.add_argument("src", metavar="DIR")
    add_index_arg(p)

    p = sub.add_parser("compact", help="merge the vector deltas into one base file (also done by itself as they grow)")
    p.set_defaults(func=cmd_compact)
    add_index_arg(p)


def cmd_index(args: argparse.Namespace) -> int:
    from ..engine import Engine
    from ..quiet import captured_output, count_lines

    progress = not args.no_progress and sys.stderr.isatty()
    with Engine(index_dir(args), model=args.model, precision=args.precision, device=device(args)) as eng:
        run = lambda: eng.index(args.paths, batch_size=args.batch_size, workers=args.workers,  # noqa: E731
                                progress=progress, checkpoint_seconds=args.checkpoint_seconds,
                                pool_audio=args.pool_audio, ocr=args.ocr, index_type=args.index_type,
                                memory_budget=_budget(args.memory_budget), ray=ray_options(args))
        if os.environ.get("MMR_DEBUG") == "1":
            report, log, chatter = run(), None, 0
        else:
            with captured_output(eng.path / MESSAGES_LOG) as log:
                report = run()
            chatter = count_lines(log)
    if args.json:
        print(json.dumps(report.to_dict() | {"decoder_messages": chatter, "messages_log": log and str(log)}, indent=2))
        return EXIT_OK
    per = ", ".join(f"{m} {n}" for m, n in sorted(report.added.items())) or "nothing new"
    print(f"indexed {report.items_added} items in {report.seconds:.1f} s "
          f"({report.items_per_second:.1f} items/s): {per}")
    print(f"files: {report.files_new} new, {report.files_changed} changed, {report.files_moved} moved, "
          f"{report.files_copied} copied, {report.files_removed} removed, {report.files_unchanged} unchanged")
    if report.distributed:
        d = report.distributed
        print(f"on Ray: {d['files_embedded']} file(s) embedded in {d['shards']} shard(s) by {d['actors']} actor(s) "
              f"on {len(d['nodes'])} node(s); {d['files_from_staged']} taken from an interrupted run's shards")
    if chatter:
        print(f"decoder messages: {chatter} line(s) in {show_path(str(log))}")
    fixed = {k: v for k, v in report.repaired.items() if v}
    if fixed:
        print("repaired after an interrupted run: " + ", ".join(f"{k} {v}" for k, v in fixed.items()))
    skipped = report.skipped + report.still_skipped
    if skipped:
        print(f"skipped {len(skipped)} file(s)" + ("" if args.verbose else " (--verbose lists them)"))
        if args.verbose:
            for path, reason in skipped:
                print(f"  {show_path(path)}: {safe_text(reason)}")
    if report.notes:
        print(f"{len(report.notes)} file(s) indexed in part" + ("" if args.verbose else " (--verbose lists them)"))
        if args.verbose:
            for path, note in report.notes:
                print(f"  {show_path(path)}: {safe_text(note)}")
    if report.ignored:
        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(report.ignored_by_ext.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"ignored {len(report.ignored)} file(s) of other types: {kinds}")
        if args.verbose:
            for path in report.ignored:
                print(f"  {show_path(path)}")
    return EXIT_OK


def _budget(text: str | None) -> int | None:
    from ..errors import UsageError
    from ..index.choose import parse_bytes

    if text is None:
        return None
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_info(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()  # runs no tower: faiss loads without torch (before the engine imports the index)
    from ..engine import Engine

    with Engine(index_dir(args), readonly=True) as eng:
        st = eng.stats()
        skipped = eng.skipped() if args.verbose else []
    if args.json:
        print(json.dumps(st, indent=2))
        return EXIT_OK
    sp = st["space"]
    print(f"index:        {st['index']}")
    print(f"space:        {sp['name']} (fingerprint {sp['fingerprint']}, {sp['metric']}, dim {sp['dim']})")
    print(f"audio tower:  {sp['audio'] or 'none'}")
    print(f"precision:    {sp['precision']}")
    print(f"items:        {st['items_total']} (" + ", ".join(f"{m} {n}" for m, n in sorted(st['items'].items())) + ")")
    print(f"files:        {st['files_indexed']} indexed, {st['files_skipped']} skipped")
    if st["memories"]:
        print(f"notes:        {st['memories']} (an agent's memory: mmr notes list)")
    if st["migration"]:
        m = st["migration"]
        print(f"migration:    to {m['to']} ({m['fingerprint']}), {m['files_done']} of {m['files']} files "
              f"(mmr migrate --to {m['to']} goes on)")
        if m.get("bridged"):
            print(f"              switched through a bridge: {m['bridged']['items']:,} item(s) of "
                  f"{m['bridged']['files']:,} file(s) answer approximately until embedded")
    c = st["embedding_cache"]
    if c["entries"] or c["hits"]:
        print(f"kept vectors: {c['entries']} file(s), {c['bytes'] / 1e6:.1f} MB of {c['limit'] / 1e6:.0f} MB; "
              f"{c['hits']} file(s) came back from them (MMR_EMBEDDING_CACHE)")
    for p in st["previous_spaces"]:
        print(f"kept:         {p['space']} ({p['fingerprint']}), {p['bytes'] / 1e6:.1f} MB (mmr migrate --back)")
    print(f"index type:   {st['index_description']}, {st['vectors']} vectors (policy: {st['index_policy']})")
    seg = st["vector_segments"]
    deltas = f" (vectors: base + {seg['deltas']} delta(s), {seg['delta_bytes'] / 1e6:.2f} MB)" if seg["deltas"] else ""
    print(f"on disk:      {st['bytes_on_disk'] / 1e6:.2f} MB{deltas}")
    for path, reason in skipped:
        print(f"  skipped {show_path(path)}: {safe_text(reason)}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()  # runs no tower: faiss loads without torch (before the engine imports the index)
    from ..engine import Engine

    with Engine(index_dir(args), readonly=not args.repair) as eng:
        rep = eng.check(repair=args.repair)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        state = "consistent" if rep["consistent"] else "NOT consistent"
        files = rep["vector_files"]
        where = files[0] if files else "(none yet)"
        if len(files) > 1:
            where += f" + {len(files) - 1} delta(s)"
        print(f"{state}: {rep['items']} items, {rep['vectors']} vectors in {where}; "
              f"{rep['orphan_vectors']} orphan vectors, {rep['items_without_vector']} items without a vector, "
              f"{rep['duplicate_vector_ids']} duplicate ids")
        if "repaired" in rep:
            print("repaired: " + ", ".join(f"{k} {v}" for k, v in rep["repaired"].items()))
        elif not rep["consistent"]:
            print("run `mmr check --repair` to fix it")
    return EXIT_OK if rep["consistent"] else EXIT_ERROR


def cmd_remove(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()  # runs no tower: faiss loads without torch (before the engine imports the index)
    from ..engine import Engine

    with Engine(index_dir(args)) as eng:
        n = eng.remove(args.paths)
    print(f"removed {n} file(s) from the index")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()  # runs no tower: faiss loads without torch (before the engine imports the index)
    from ..engine import Engine
    from ..shards import export_shards

    with Engine(index_dir(args), readonly=True) as eng:
        m = export_shards(eng, args.out, with_cache=args.with_cache)
    cache = f", {m['embedding_cache']['entries']} cached file(s)" if "embedding_cache" in m else ""
    print(f"exported {sum(m['items'].values())} items (" + ", ".join(f"{k} {v}" for k, v in sorted(m["items"].items()))
          + f"), {m['memories']['count']} memories{cache} and {m['skipped']} skipped file(s) to {args.out}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from ..shards import import_shards

    eng, rep = import_shards(args.src, index_dir(args), device=device(args))
    with eng:
        print(f"imported {sum(rep.added.values())} items (" + ", ".join(f"{k} {v}" for k, v in sorted(rep.added.items()))
              + f"), {rep.memories} memories, {len(rep.skipped)} skipped file(s)"
              + (f", {rep.cache_entries} cached file(s)" if rep.cache_entries else "") + f", into {eng.path}")
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()  # runs no tower: faiss loads without torch (before the engine imports the index)
    from ..engine import Engine

    with Engine(index_dir(args)) as eng:
        before, after = eng.compact()
    print(f"vectors: {before['deltas']} delta(s) merged; {(before['base_bytes'] + before['delta_bytes']) / 1e6:.2f} MB "
          f"-> {after['base_bytes'] / 1e6:.2f} MB in {after['segments'][0]}")
    return EXIT_OK
