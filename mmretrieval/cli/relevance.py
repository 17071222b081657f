"""Commands about how far scores can be trusted: calibrate, audit, compare (spaces on your pairs), eval."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .common import EXIT_OK, PRECISION_HELP, add_index_arg, device, index_dir, safe_text, show_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit relevance on your labelled pairs (per pair of modalities) and store it "
                                         "in the index")
    p.set_defaults(func=cmd_calibrate)
    p.add_argument("--pairs", required=True, metavar="FILE",
                   help="JSONL or CSV: image or audio + caption + label (a hit is relevant when it shares the label)")
    p.add_argument("--json", action="store_true")
    add_index_arg(p)

    p = sub.add_parser("audit", help="calibration audit: matched vs random cosines per pair of modalities (table, "
                                     "JSON, PNG); on an index without --pairs")
    p.set_defaults(func=cmd_audit)
    p.add_argument("--pairs", metavar="FILE", help="JSONL or CSV pairs (image or audio + caption [+ label])")
    p.add_argument("--model", metavar="SPACE", help="the space to audit with --pairs (default: the index's space, "
                                                   "else the default space)")
    p.add_argument("--png", metavar="FILE", help="write the histograms to this PNG (needs matplotlib)")
    p.add_argument("--json", action="store_true")
    add_index_arg(p)

    p = sub.add_parser("compare", help="candidate spaces side by side on your pairs, and which one to use")
    p.set_defaults(func=cmd_compare)
    p.add_argument("--pairs", required=True, metavar="FILE")
    p.add_argument("--models", required=True, metavar="A,B,...", help="spaces to compare (comma-separated)")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="Recall@k and the calibration audit of a space on your own pairs")
    p.set_defaults(func=cmd_eval)
    p.add_argument("--pairs", required=True, metavar="FILE")
    p.add_argument("--model", required=True, metavar="SPACE")
    p.add_argument("--precision", metavar="P", help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..engine import Engine

    with Engine(index_dir(args), device=device(args)) as eng:
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


def cmd_audit(args: argparse.Namespace) -> int:
    if not args.pairs:
        from ..index.openmp import without_towers

        without_towers()  # an index's audit runs no tower: faiss loads without torch (before the index's module)
    from ..relevance.audit import audit_index, audit_pairs, plot, public

    if args.pairs:
        from ..space.registry import resolve_model_arg
        from ..space.runtime import Space

        if args.model:
            space = Space(resolve_model_arg(args.model), device=device(args))
        else:
            from ..engine import DEFAULT_SPACE, Engine

            idx = index_dir(args)
            if os.path.isfile(os.path.join(os.path.expanduser(idx), "catalog.sqlite")):
                with Engine(idx, readonly=True, device=device(args)) as eng:
                    space = eng.space
            else:
                space = Space(resolve_model_arg(DEFAULT_SPACE), device=device(args))
        report = audit_pairs(space, args.pairs)
    else:
        from ..engine import Engine

        with Engine(index_dir(args), readonly=True, device=device(args, bulk=False)) as eng:
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
          + (f"{'< 0.7':>8}{'< rnd p99':>11}" if report["kind"] == "pairs" else
             f"{'relevance':>15}{'cos at 0.5':>12}{'top ≥ 0.5':>11}"))
    for name, r in report["pairs"].items():
        m, rnd = r[first], r["random"]
        line = (f"{name:<16}{m['mean']:>+13.3f} ± {m['std']:.3f}{rnd['mean']:>+11.3f} ± {rnd['std']:.3f}"
                f"{rnd['p99']:>+12.3f}{r['overlap']:>9.2f}")
        if report["kind"] == "pairs":
            line += f"{r['matched_below_0.7']:>8.0%}{r['matched_below_random_p99']:>11.0%}"
        else:
            rel = r["relevance"]
            at = "-" if rel["cosine_where_0.5"] is None else f"{rel['cosine_where_0.5']:+.3f}"
            line += f"{rel['source']:>15}{at:>12}{rel['top_matches_at_or_above_0.5']:>11.0%}"
        print(line)
    for name, g in report.get("modality_gap", {}).items():
        print(f"modality gap {name}: centroid distance {g['centroid_distance']:.3f} (cosine {g['centroid_cosine']:+.3f})")
    if args.png:
        print(f"histograms: {args.png}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..relevance.compare import compare

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise UsageError("give at least one space to --models")
    rep = compare(args.pairs, models, precision=args.precision or "auto", device=device(args))
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


def cmd_eval(args: argparse.Namespace) -> int:
    from ..space.registry import resolve_model_arg
    from ..space.runtime import Space
    from ..train.evaluate import evaluate

    report = evaluate(Space(resolve_model_arg(args.model), precision=args.precision or "auto", device=device(args)),
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
