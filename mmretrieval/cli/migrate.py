"""`mmr migrate`: move an index to another space (an estimate first, searches never down, the old space kept),
back again, or drop what is kept."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_OK, add_index_arg, add_ray_args, device, index_dir, ray_options, safe_text, show_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="move the index to another space (--to SPACE), back (--back), or drop the "
                                       "old space (--drop-old)")
    p.set_defaults(func=cmd_migrate)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", metavar="SPACE", help="the space to move to (a name, a folder, as --model takes)")
    what.add_argument("--back", nargs="?", const="", metavar="FINGERPRINT",
                      help="switch to the space kept from before (the newest, or this one); encodes no file")
    what.add_argument("--drop-old", action="store_true", help="delete the spaces kept from before migrations")
    what.add_argument("--abandon", action="store_true", help="give up a migration under way (its work is deleted)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --to: only the estimate (a sample is indexed to measure it; its work is kept)")
    p.add_argument("--bridge", action="store_true",
                   help="with --to: switch as soon as a map fitted on the first ~1,000 items per modality carries "
                        "the others' old vectors into the new space (their hits marked approximate), then embed "
                        "them for real")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_index_arg(p)
    add_ray_args(p)


def _estimate_lines(r: dict, bridge: bool = False) -> list[str]:
    lines = [f"{r['files']} file(s) to index in {r['to']} (fingerprint {r['fingerprint']})"
             + (f"; {r['gone']} no longer on disk" if r["gone"] else "")]
    if r.get("reused"):
        lines.append("  carried over as they are (a tower both spaces share): " +
                     ", ".join(f"{n:,} {m} item(s)" for m, n in r["reused"].items()))
    for m, v in r["per_modality"].items():
        lines.append(f"  {m:<6} {v['files']:>7} files  {v['seconds_per_file'] * 1000:8.1f} ms/file (measured on "
                     f"{v['sampled']})  ~{v['seconds']:.0f} s")
    if r["estimate_seconds"] is not None:
        mb = (r["estimate_bytes"] or 0) / 1e6
        secs = r["estimate_seconds"]
        took = f"{secs:.0f} s" if secs < 120 else f"{secs / 60:.0f} min" if secs < 7200 else f"{secs / 3600:.1f} h"
        peak = f", ~{r['estimate_peak_bytes'] / 1e6:,.0f} MB of memory at the peak" \
            if r.get("estimate_peak_bytes") else ""
        lines.append(f"estimate: ~{took} on this machine, ~{mb:.0f} MB on disk{peak}; "
                     + ("the index switches once the bridge is fitted; hits not yet embedded are marked approximate"
                        if bridge else "searches keep answering from the current space meanwhile"))
    return lines


def cmd_migrate(args: argparse.Namespace) -> int:
    from ..engine import Engine

    ray = ray_options(args)
    with Engine(index_dir(args), device=device(args)) as eng:
        if args.drop_old:
            print(f"freed {eng.drop_old_spaces() / 1e6:.1f} MB")
            return EXIT_OK
        if args.abandon:
            print("migration abandoned" if eng.abandon_migration() else "no migration under way")
            return EXIT_OK
        if args.back is not None:
            r = eng.migrate_back(args.back or None)
            print(json.dumps(r, indent=2) if args.json else
                  f"switched back to {r['space']} ({r['fingerprint']}); {r['memories']} note(s) carried over; the "
                  f"space left is kept in {show_path(r['previous'])}")
            return EXIT_OK
        first = eng.migrate(args.to, dry_run=True)
        if args.dry_run or args.json is False:
            out = first.to_dict()
            if args.dry_run and args.json:
                print(json.dumps(out, indent=2))
                return EXIT_OK
            print("\n".join(_estimate_lines(out, args.bridge)), file=sys.stdout if args.dry_run else sys.stderr)
            if args.dry_run:
                return EXIT_OK
        r = eng.migrate(args.to, progress=not args.json, bridge=args.bridge, ray=ray)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return EXIT_OK
    for path, why in r.skipped[:20]:
        print(f"  skipped {show_path(path)}: {safe_text(why)}")
    if r.bridge_refused:
        print(f"no bridge: {r.bridge_refused}")
    if r.bridge:
        fitted = ", ".join(f"{m} on {n:,} pairs" for m, n in sorted(r.bridge.items()))
        print(f"switched through a bridge ({fitted}): {r.bridged:,} file(s) answered approximately until "
              f"embedded, which they now are" if r.bridged else
              f"bridge fitted ({fitted}), but its sample held every file: none was bridged")
    kept = f"; the old space is kept in {show_path(r.previous)} (mmr migrate --back switches to it, --drop-old " \
           f"deletes it)" if r.previous else ""
    print(f"switched to {r.to} ({r.fingerprint}): {r.indexed + first.indexed} file(s) indexed, "
          f"{len(r.skipped) + len(first.skipped)} skipped, {r.memories} note(s) carried over, "
          f"{r.seconds + first.seconds:.0f} s{kept}")
    return EXIT_OK
