"""`mmr`: a thin command line over `Engine`. All printing and exit codes live here."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Sequence

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
MESSAGES_LOG = "messages.log"  # what decoding libraries printed during the last `mmr index`


def default_index_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "mmretrieval", "index")


def _index_dir(args: argparse.Namespace) -> str:
    return args.index or os.environ.get("MMR_INDEX") or default_index_dir()


def _add_index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR",
                   help=f"index folder (default: $MMR_INDEX, else {default_index_dir()})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmr", description="Search your photos, recordings and documents by meaning, across modalities.")
    parser.add_argument("--version", action="version", version=f"mmretrieval {_version()}")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"],
                        help="runtime of the towers: auto (default, $MMR_BACKEND: the faster one, measured once per "
                             "tower and CPU), torch, or onnx (ONNX Runtime); it does not change vectors")
    parser.add_argument("--device", metavar="DEVICE",
                        help="where the towers compute: auto (default, $MMR_DEVICE: a CUDA GPU for index and eval "
                             "where torch sees one, the CPU for queries), cpu, cuda or cuda:N")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("index", help="index folders (incremental: only new or changed files are embedded)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to index")
    _add_index_arg(p)
    p.add_argument("--model", metavar="SPACE",
                   help="space for a new index: a registered name (see `mmr spaces`), a space folder, or "
                        "OPENCLIP_MODEL[:TAG_OR_CHECKPOINT]; an existing index remembers its own")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decode threads (default: cores, max 4; where an int8 image tower runs on the CPU each also "
                        "encodes the images it decodes, and the default is the tower's cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--index-type", choices=["auto", "flat", "hnsw", "ivf-fp16", "ivf-flat", "ivf-sq8", "ivf-pq"],
                   help="vector index type (remembered; default auto: exact flat while small, IVF as it grows); "
                        "changing it converts the index without re-embedding")
    p.add_argument("--memory-budget", metavar="SIZE", help="keep the vector index under SIZE (e.g. 600M): "
                                                          "picks a quantised type when needed (remembered)")
    p.add_argument("--pool-audio", action="store_true",
                   help="one item per audio file (mean of its windows) instead of one per window")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP + "; for a new index (an existing one keeps its own)")
    p.add_argument("--checkpoint-seconds", type=float, default=30.0, metavar="S",
                   help="commit what is done every S seconds (default 30); a killed run loses at most that")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-v", "--verbose", action="store_true", help="list skipped files with their reasons")
    g = p.add_argument_group("on a Ray cluster (the `distributed` extra; planning and the commit stay here)")
    g.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="embed on Ray: the cluster at ADDRESS (host:port, or auto for the one `ray start` "
                        "began here); alone: $RAY_ADDRESS, else a new local Ray")
    g.add_argument("--ray-actors", type=int, metavar="N", help="encoder actors (default: the cluster's CPUs / "
                                                               "--ray-cpus-per-actor)")
    g.add_argument("--ray-cpus-per-actor", type=float, default=1.0, metavar="C", help="CPUs each actor takes "
                                                                                    "(fractions allowed; default 1)")
    g.add_argument("--ray-gpus-per-actor", type=float, default=0.0, metavar="G", help="GPUs each actor takes")
    g.add_argument("--files-per-shard", type=int, metavar="N",
                   help="files per shard sent to an actor (default: about 4 shards per actor, at most 1000)")
    g.add_argument("--keep-shards", action="store_true",
                   help="keep the embedded shards (INDEX/staging, clip-retrieval's layout) after the commit")

    p = sub.add_parser("search", help="search by text, --image or --audio")
    p.add_argument("text", nargs="?", help="text query")
    p.add_argument("--image", metavar="PATH", help="image file as the query")
    p.add_argument("--audio", metavar="PATH", help="audio file as the query")
    p.add_argument("--type", dest="types", action="append", metavar="TYPE",
                   help="result modality: image, audio or text (repeatable; default: the other modalities)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--min-relevance", type=float, metavar="R",
                   help="only hits with relevance >= R (0..1; comparable across queries and modalities): 0.5 = as "
                        "good as a typical best match; with `mmr calibrate`, R = probability of being relevant")
    p.add_argument("--cutoff", choices=("none", "gap"), default="none",
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
                       help=f"{verb} a text to the query (weight W, default 1); repeatable")
        for m in ("image", "audio"):
            p.add_argument(f"--{sign}-{m}", dest=f"{sign}_{m}", action="append", metavar="[W:]PATH",
                           help=f"{verb} an {m} file to the query; repeatable")
    p.add_argument("--mode", choices=("vector", "keyword", "hybrid"), default="vector",
                   help="vector (by meaning, default), keyword (BM25 over passages, file and folder names, tags) or "
                        "hybrid (both rankings fused): for exact names, codes and numbers")
    p.add_argument("--sort", choices=("relevance", "date", "path"), default="relevance",
                   help="order of the hits that pass: relevance (default), date (newest first) or path")
    p.add_argument("--json", action="store_true", help="print hits as a JSON list")
    _add_index_arg(p)

    p = sub.add_parser("calibrate", help="fit relevance on your labelled pairs (per pair of modalities) and store it "
                                         "in the index")
    p.add_argument("--pairs", required=True, metavar="FILE",
                   help="JSONL or CSV: image or audio + caption + label (a hit is relevant when it shares the label)")
    p.add_argument("--json", action="store_true")
    _add_index_arg(p)

    p = sub.add_parser("audit", help="calibration audit: matched vs random cosines per pair of modalities (table, "
                                     "JSON, PNG); on an index without --pairs")
    p.add_argument("--pairs", metavar="FILE", help="JSONL or CSV pairs (image or audio + caption [+ label])")
    p.add_argument("--model", metavar="SPACE", help="the space to audit with --pairs (default: the index's space, "
                                                   "else the default space)")
    p.add_argument("--png", metavar="FILE", help="write the histograms to this PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true")
    _add_index_arg(p)

    p = sub.add_parser("compare", help="candidate spaces side by side on your pairs, and which one to use")
    p.add_argument("--pairs", required=True, metavar="FILE")
    p.add_argument("--models", required=True, metavar="A,B,...", help="spaces to compare (comma-separated)")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("info", help="what an index holds and which space it lives in")
    _add_index_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="list skipped files")

    p = sub.add_parser("check", help="verify that catalog and vectors agree; --repair fixes them")
    _add_index_arg(p)
    p.add_argument("--repair", action="store_true", help="fix from the catalog, re-embedding nothing already known")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("remove", help="forget indexed files under PATHs (the files stay on disk)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    _add_index_arg(p)

    p = sub.add_parser("export", help="write the index's vectors and metadata as shards in clip-retrieval's layout")
    p.add_argument("out", metavar="DIR", help="a new or empty folder")
    _add_index_arg(p)

    p = sub.add_parser("import", help="build an index from shards written by `mmr export` (nothing is re-embedded)")
    p.add_argument("src", metavar="DIR")
    _add_index_arg(p)

    p = sub.add_parser("compact", help="merge the vector deltas into one base file (also done by itself as they grow)")
    _add_index_arg(p)

    p = sub.add_parser("serve", help="HTTP API and search page (needs the 'server' extra)")
    _add_index_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; others need --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=os.environ.get("MMR_TOKEN"), help="require this token (default $MMR_TOKEN)")
    p.add_argument("--max-upload", type=int, default=20 * 1024 * 1024, metavar="BYTES")

    p = sub.add_parser("spaces", help="list the registered spaces and whether their weights are here")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="where each weights file is, or where to put it")

    p = sub.add_parser("fetch", help="download a space's weights ahead of time (e.g. before going offline)")
    p.add_argument("space", metavar="SPACE", help="a registered space (see `mmr spaces`), a folder or MODEL:TAG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("train", help="train a space: `train clip` (image-text) or `train audio` (audio tower)")
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

    p = sub.add_parser("eval", help="Recall@k and the calibration audit of a space on your own pairs")
    p.add_argument("--pairs", required=True, metavar="FILE")
    p.add_argument("--model", required=True, metavar="SPACE")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")
    return parser


PRECISION_HELP = ("number format of the towers: auto (default, $MMR_PRECISION: on a CPU an int8 image tower where "
                  "measured faster, else bf16 image/audio towers where the CPU has native bf16, else fp32; on a GPU "
                  "fp16 image/audio towers), fp32, bf16, fp16, int8 (text and image towers, under ONNX Runtime), "
                  "or pairs like image=int8,text=fp32")


def _add_train_args(t: argparse.ArgumentParser, *, epochs: int, batch_size: int, lr: float) -> None:
    t.add_argument("--out", required=True, metavar="DIR", help="output space folder (also holds checkpoints and logs)")
    t.add_argument("--name", help="name of the new space (default: the folder name)")
    t.add_argument("--epochs", type=int, default=epochs)
    t.add_argument("--batch-size", type=int, default=batch_size)
    t.add_argument("--lr", type=float, default=lr)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    t.add_argument("--no-progress", action="store_true")


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("MMR_DEBUG") == "1"
    if debug:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("mmretrieval").setLevel(logging.DEBUG)  # ours in full; libraries' warnings only
    from .errors import MMRError, UsageError

    if args.backend:  # read where towers load: here, in decode/embed workers and on a local Ray
        os.environ["MMR_BACKEND"] = args.backend
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except MMRError as e:
        _err(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted; what was committed before is kept, run the same command again to continue")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # never show a traceback unless asked
        if debug:
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set MMR_DEBUG=1 for a traceback)")
        return EXIT_ERROR


def _device(args: argparse.Namespace, bulk: bool = True) -> str:
    from .space.device import parse_device

    return parse_device(args.device, bulk=bulk)


def _err(msg: str) -> None:
    print(f"mmr: {msg}", file=sys.stderr)


# ------------------------------------------------------------------ commands
def cmd_index(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .quiet import captured_output, count_lines

    progress = not args.no_progress and sys.stderr.isatty()
    with Engine(_index_dir(args), model=args.model, precision=args.precision, device=_device(args)) as eng:
        run = lambda: eng.index(args.paths, batch_size=args.batch_size, workers=args.workers,  # noqa: E731
                                progress=progress, checkpoint_seconds=args.checkpoint_seconds,
                                pool_audio=args.pool_audio, index_type=args.index_type,
                                memory_budget=_budget(args.memory_budget), ray=_ray_options(args))
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


def _ray_options(args: argparse.Namespace):
    from .ingest.distributed import RayOptions

    given = [f for f in ("ray_actors", "files_per_shard") if getattr(args, f) is not None]
    given += [f for f in ("ray_gpus_per_actor",) if getattr(args, f)] + (["keep_shards"] if args.keep_shards else [])
    if args.ray is None:
        if given or args.ray_cpus_per_actor != 1.0:
            from .errors import UsageError

            raise UsageError("--ray-actors, --ray-cpus-per-actor, --ray-gpus-per-actor, --files-per-shard and "
                             "--keep-shards only apply with --ray")
        return None
    return RayOptions(address=args.ray or None, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
                      gpus_per_actor=args.ray_gpus_per_actor, files_per_shard=args.files_per_shard,
                      keep_shards=args.keep_shards)


def _budget(text: str | None) -> int | None:
    from .errors import UsageError
    from .index.choose import parse_bytes

    if text is None:
        return None
    try:
        return parse_bytes(text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_search(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .query import parse_filters

    with Engine(_index_dir(args), readonly=True, device=_device(args, bulk=False)) as eng:
        filters = parse_filters(paths=args.paths, after=args.after, before=args.before, min_size=args.min_size,
                                max_size=args.max_size, exts=args.exts)
        extra = _query_parts(args)
        if extra:
            base = [(1.0, m, v) for m, v in (("text", args.text), ("image", args.image), ("audio", args.audio))
                    if v is not None]
            hits = eng.search_parts(base + extra, k=args.k, types=args.types, min_relevance=args.min_relevance,
                                    cutoff=args.cutoff, filters=filters, sort=args.sort)
        else:
            hits = eng.search(args.text, image=args.image, audio=args.audio, k=args.k, types=args.types,
                              min_relevance=args.min_relevance, cutoff=args.cutoff, filters=filters, sort=args.sort,
                              mode=args.mode)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return EXIT_OK
    if not hits:
        print(f"no results at or above relevance {args.min_relevance}" if args.min_relevance is not None
              else "no results")
    for h in hits:
        print(format_hit(h))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from .relevance.audit import audit_index, audit_pairs, plot, public

    if args.pairs:
        from .space.registry import resolve_model_arg
        from .space.runtime import Space

        if args.model:
            space = Space(resolve_model_arg(args.model))
        else:
            from .engine import DEFAULT_SPACE, Engine

            idx = _index_dir(args)
            if os.path.isfile(os.path.join(os.path.expanduser(idx), "catalog.sqlite")):
                with Engine(idx, readonly=True) as eng:
                    space = eng.space
            else:
                space = Space(resolve_model_arg(DEFAULT_SPACE))
        report = audit_pairs(space, args.pairs)
    else:
        from .engine import Engine

        with Engine(_index_dir(args), readonly=True) as eng:
            report = audit_index(eng)
    if args.png:
        plot(report, args.png)
    if args.json:
        print(json.dumps(public(report), indent=2))
        return EXIT_OK
    what = f"pairs {report['pairs_file']}" if report["kind"] == "pairs" else f"index {report['index']}"
    print(f"calibration audit of space {report['space']} on {what}")
    first = "matched" if report["kind"] == "pairs" else "best_match"
    print(f"{'pair':<16}{first + ' mean±std':>22}{'random mean±std':>20}{'random p99':>12}{'overlap':>9}"
          + (f"{'< 0.7':>8}{'< rnd p99':>11}" if report["kind"] == "pairs" else ""))
    for name, r in report["pairs"].items():
        m, rnd = r[first], r["random"]
        line = (f"{name:<16}{m['mean']:>+13.3f} ± {m['std']:.3f}{rnd['mean']:>+11.3f} ± {rnd['std']:.3f}"
                f"{rnd['p99']:>+12.3f}{r['overlap']:>9.2f}")
        if report["kind"] == "pairs":
            line += f"{r['matched_below_0.7']:>8.0%}{r['matched_below_random_p99']:>11.0%}"
        print(line)
    for name, g in report.get("modality_gap", {}).items():
        print(f"modality gap {name}: centroid distance {g['centroid_distance']:.3f} (cosine {g['centroid_cosine']:+.3f})")
    if args.png:
        print(f"histograms: {args.png}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from .relevance.compare import compare

    from .errors import UsageError

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise UsageError("give at least one space to --models")
    rep = compare(args.pairs, models, precision=args.precision or "auto")
    if args.json:
        print(json.dumps(rep, indent=2))
        return EXIT_OK
    print(f"spaces on {rep['pairs']}")
    for r in rep["spaces"]:
        if "error" in r:
            print(f"{r['model']}: cannot evaluate: {r['error']}")
            continue
        dirs = "  ".join(f"{d.replace('_to_', '→')} R@1/5/10 {v['R@1']:.2f}/{v['R@5']:.2f}/{v['R@10']:.2f}"
                         + (f" P@5 {v['P@5']:.2f}" if "P@5" in v else "") for d, v in r["directions"].items())
        print(f"{r['model']} (dim {r['dim']}): {r['quality_measure']} {r['quality']:.3f}; {r['items_per_s']} items/s; "
              f"{r['bytes_per_item']} bytes/item; overlap " +
              ", ".join(f"{k} {v:.2f}" for k, v in r["overlap"].items()))
        print(f"    {dirs}")
    rec = rep["recommendation"]
    print("recommendation: " + ("none (no space could be evaluated)" if rec is None else f"{rec['model']}: {rec['why']}"))
    return EXIT_OK


def _query_parts(args: argparse.Namespace) -> list[tuple[float, str, str]]:
    """--add / --subtract[-image|-audio] values, each optionally prefixed by a weight: "0.5:people"."""
    out = []
    for sign, factor in (("add", 1.0), ("subtract", -1.0)):
        for m in ("text", "image", "audio"):
            for raw in getattr(args, f"{sign}_{m}") or []:
                w, _, rest = raw.partition(":")
                try:
                    weight, value = float(w), rest
                except ValueError:
                    weight, value = 1.0, raw
                out.append((factor * weight, m, value))
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(_index_dir(args)) as eng:
        rep = eng.calibrate(args.pairs)
    if args.json:
        print(json.dumps(rep, indent=2))
        return EXIT_OK
    print(f"calibrated relevance for space fingerprint {rep['fingerprint']} from {rep['source']}")
    print(f"{'pair':<16}{'hits':>8}{'relevant':>10}   P(relevant) = logistic(bias + b_z * z + b_cos * cosine)")
    for pair, v in sorted(rep["pairs"].items()):
        w = v["weights"]
        print(f"{pair:<16}{v['hits']:>8}{v['relevant']:>10}   bias {w['bias']:+.2f}, b_z {w['z']:+.2f}, "
              f"b_cos {w['cosine']:+.2f}")
    for pair, why in sorted(rep["left_out"].items()):
        print(f"{pair}: not calibrated: {why}")
    for s in rep["skipped_files"]:
        print(f"  skipped {show_path(s['path'])}: {safe_text(s['reason'])}")
    return EXIT_OK


# Characters a terminal acts on instead of showing: C0/C1 controls (ESC starts escape sequences; a file's
# ISO-2022 text or a crafted name could move the cursor, retitle the window...) and bidi overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _is_unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None


def show_path(path: str) -> str:
    """A path on one line: names with control characters (a newline, say) are shown quoted."""
    return repr(path) if _is_unsafe(path) else path


def safe_text(text: str) -> str:
    """Text from a file (a snippet, a reason) with every control character shown escaped (\\x1b)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def format_hit(h: Any) -> str:
    from .modalities import get_modality

    after_path, extra = get_modality(h.modality).describe(h.locator, h.text)
    rel = "  -- " if h.relevance is None else f"{h.relevance:5.2f}"
    return f"{h.rank:3d}  {h.score:+.4f} {rel}  {h.modality:<5}  {show_path(h.path)}{safe_text(after_path)}{safe_text(extra)}"


def cmd_info(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(_index_dir(args), readonly=True) as eng:
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
    print(f"index type:   {st['index_description']}, {st['vectors']} vectors (policy: {st['index_policy']})")
    seg = st["vector_segments"]
    deltas = f" (vectors: base + {seg['deltas']} delta(s), {seg['delta_bytes'] / 1e6:.2f} MB)" if seg["deltas"] else ""
    print(f"on disk:      {st['bytes_on_disk'] / 1e6:.2f} MB{deltas}")
    for path, reason in skipped:
        print(f"  skipped {show_path(path)}: {safe_text(reason)}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(_index_dir(args), readonly=not args.repair) as eng:
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
    from .engine import Engine

    with Engine(_index_dir(args)) as eng:
        n = eng.remove(args.paths)
    print(f"removed {n} file(s) from the index")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .engine import Engine
    from .shards import export_shards

    with Engine(_index_dir(args), readonly=True) as eng:
        m = export_shards(eng, args.out)
    print(f"exported {sum(m['items'].values())} items (" + ", ".join(f"{k} {v}" for k, v in sorted(m["items"].items()))
          + f") and {m['skipped']} skipped file(s) to {args.out}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from .shards import import_shards

    eng, rep = import_shards(args.src, _index_dir(args))
    with eng:
        print(f"imported {sum(rep.added.values())} items (" + ", ".join(f"{k} {v}" for k, v in sorted(rep.added.items()))
              + f"), {len(rep.skipped)} skipped file(s), into {eng.path}")
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    from .engine import Engine

    with Engine(_index_dir(args)) as eng:
        before, after = eng.compact()
    print(f"vectors: {before['deltas']} delta(s) merged; {(before['base_bytes'] + before['delta_bytes']) / 1e6:.2f} MB "
          f"-> {after['base_bytes'] / 1e6:.2f} MB in {after['segments'][0]}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server.app import serve

    print(f"serving {_index_dir(args)} on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    serve(_index_dir(args), host=args.host, port=args.port, token=args.token, max_upload=args.max_upload,
          device=_device(args, bulk=False))
    return EXIT_OK


def cmd_spaces(args: argparse.Namespace) -> int:
    from .space.registry import list_spaces
    from .space.weights import weights_status

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
    from .space.registry import resolve_model_arg
    from .space.weights import fetch_weights

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
        from .train.clip import train_clip

        rep = train_clip(args.pairs, args.out, init=args.init, config=args.config, text_pairs=args.text_pairs,
                         half=args.half, **common)
    else:
        from .train.audio import train_audio

        tower = json.loads(args.tower) if args.tower else None
        rep = train_audio(args.pairs, args.space, args.out, tower=tower, **common)
    print(f"trained {rep.steps} steps ({rep.epochs} epochs) in {rep.seconds:.0f} s, final loss {rep.final_loss:.4f}"
          + (f", resumed from step {rep.resumed_from}" if rep.resumed_from else ""))
    for path, reason in rep.skipped:
        print(f"  skipped {show_path(path)}: {safe_text(reason)}")
    print(f"space written to {rep.out_dir} (use it with --model {rep.out_dir})")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from .space.runtime import Space
    from .space.registry import resolve_model_arg
    from .train.evaluate import evaluate

    report = evaluate(Space(resolve_model_arg(args.model), precision=args.precision or "auto", device=_device(args)),
                      args.pairs)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(format_eval(report))
    return EXIT_OK


def format_eval(report: dict[str, Any]) -> str:
    lines = [f"space {report['space']} (fingerprint {report['fingerprint']}, precision {report.get('precision', 'fp32')}) "
             f"on {report['pairs']}", ""]
    lines.append(f"{'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'P@5':>8}")
    for m in ("image", "audio"):
        r = report.get(m)
        if not r or "skipped" in r and isinstance(r["skipped"], str):
            if r:
                lines.append(f"{m}: {r['skipped']}")
            continue
        for d in (f"text_to_{m}", f"{m}_to_text"):
            row = r[d]
            p5 = f"{row['P@5']:8.3f}" if "P@5" in row else f"{'-':>8}"
            lines.append(f"{d.replace('_to_', '→'):<16}{row['R@1']:8.3f}{row['R@5']:8.3f}{row['R@10']:8.3f}{p5}")
    lines += ["", "calibration audit: cosine of matched vs random pairs (mean ± std [p5, p50, p95])"]
    for m in ("image", "audio"):
        r = report.get(m)
        if r and "calibration" in r:
            for kind in ("matched", "random"):
                c = r["calibration"][kind]
                lines.append(f"  {m}-text {kind:<8} {c['mean']:+.3f} ± {c['std']:.3f}  "
                             f"[{c['p5']:+.3f}, {c['p50']:+.3f}, {c['p95']:+.3f}]")
    return "\n".join(lines)


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "index": cmd_index, "search": cmd_search, "info": cmd_info, "remove": cmd_remove, "compact": cmd_compact, "export": cmd_export, "import": cmd_import, "calibrate": cmd_calibrate, "audit": cmd_audit, "compare": cmd_compare, "check": cmd_check, "serve": cmd_serve, "spaces": cmd_spaces, "fetch": cmd_fetch}

if __name__ == "__main__":
    sys.exit(main())
