"""`mmr notes`: an agent's memory from the shell (add, list, recall, update, rm): notes kept in the index's space
without files (see `memory`)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, add_index_arg, device, index_dir, safe_text


def _scope_args(p: argparse.ArgumentParser) -> None:
    for name in ("user", "agent", "session"):
        p.add_argument(f"--{name}", metavar="NAME", help=f"the {name} whose notes these are (omitted: any)")


def _meta(pairs: list[str] | None) -> dict[str, Any] | None:
    """KEY=VALUE pairs; a value that reads as JSON (a number, true, false) is that, else a string."""
    from ..errors import UsageError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq:
            raise UsageError(f"--meta takes KEY=VALUE, got {pair!r}")
        try:
            parsed = json.loads(value)
            out[key] = parsed if isinstance(parsed, (int, float, bool)) else value
        except ValueError:
            out[key] = value
    return out or None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("notes", help="an agent's memory: notes kept in the index's space, recalled by meaning")
    notes = p.add_subparsers(dest="notes_command", metavar="ACTION")
    notes.required = True
    a = notes.add_parser("add", help="remember a note (a restatement of a note in the same scope updates it)")
    a.add_argument("text")
    a.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata to filter by later; repeatable")
    a.add_argument("--no-merge", action="store_true", help="always add, even when the note restates another")
    a.set_defaults(func=cmd_add)
    r = notes.add_parser("recall", help="the notes closest in meaning to a query")
    r.add_argument("query")
    r.add_argument("-k", type=int, default=5, help="number of notes (default 5)")
    r.add_argument("--recency", type=float, default=0.0, metavar="W",
                   help="0..1: how much a note's age discounts it (half as recent every 7 days; default 0)")
    r.set_defaults(func=cmd_recall)
    ls = notes.add_parser("list", help="the notes of a scope, most recently updated first")
    ls.add_argument("--limit", type=int, metavar="N")
    ls.set_defaults(func=cmd_list)
    u = notes.add_parser("update", help="give a note new text")
    u.add_argument("id", type=int)
    u.add_argument("text")
    u.set_defaults(func=cmd_update)
    rm = notes.add_parser("rm", help="forget a note by id, or every note of a scope")
    rm.add_argument("ids", type=int, nargs="*", metavar="ID")
    rm.add_argument("--all", action="store_true", help="with no id and no scope: forget every note")
    rm.set_defaults(func=cmd_rm)
    for q in (a, r, ls, u, rm):
        _scope_args(q)
        add_index_arg(q)
    for q in (r, ls):
        q.add_argument("--meta", action="append", metavar="KEY=VALUE", help="only notes with this metadata")
    for q in (a, r, ls, u):
        q.add_argument("--json", action="store_true", help="print JSON")


def _scope(args: argparse.Namespace) -> dict[str, str | None]:
    return {"user": args.user, "agent": args.agent, "session": args.session}


def _line(m: Any) -> str:
    scope = "/".join(v or "-" for v in m.scope.values())
    head = f"{m.id:>5}  " + (f"{m.relevance:.2f}  " if m.relevance is not None else
                             f"{m.cosine:+.3f}  " if m.cosine is not None else "")
    return head + f"[{scope}]  {safe_text(' '.join(m.text.split()))}" + ("" if m.embedded else "  (not embedded yet)")


def cmd_add(args: argparse.Namespace) -> int:
    from ..engine import Engine

    with Engine(index_dir(args), device=device(args, bulk=False)) as eng:
        r = eng.remember(args.text, metadata=_meta(args.meta), merge=not args.no_merge, **_scope(args))
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
    elif r.action == "updated":
        print(f"updated note {r.memory.id} (restated: cosine {r.cosine:.3f}); it said: {safe_text(r.replaced or '')}")
    else:
        print(f"added note {r.memory.id}")
    return EXIT_OK


def cmd_recall(args: argparse.Namespace) -> int:
    from ..index.openmp import one_off

    one_off()  # before the index's module loads faiss
    from ..engine import Engine

    with Engine(index_dir(args), readonly=True, device=device(args, bulk=False)) as eng:
        found = eng.recall(args.query, k=args.k, recency=args.recency, metadata=_meta(args.meta), **_scope(args))
    if args.json:
        print(json.dumps([m.to_dict() for m in found], indent=2))
    for m in [] if args.json else found:
        print(_line(m))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from ..index.openmp import without_towers

    without_towers()
    from ..engine import Engine

    with Engine(index_dir(args), readonly=True) as eng:
        found = eng.memories(metadata=_meta(args.meta), limit=args.limit, **_scope(args))
    if args.json:
        print(json.dumps([m.to_dict() for m in found], indent=2))
    for m in [] if args.json else found:
        print(_line(m))
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    from ..engine import Engine

    with Engine(index_dir(args), device=device(args, bulk=False)) as eng:
        m = eng.update_memory(args.id, args.text, **_scope(args))
    print(json.dumps(m.to_dict(), indent=2) if args.json else f"updated note {m.id}")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..index.openmp import without_towers

    without_towers()
    from ..engine import Engine

    if args.ids and args.all:
        raise UsageError("give note ids or --all, not both")
    with Engine(index_dir(args)) as eng:
        n = sum(eng.forget(i, **_scope(args)) for i in args.ids) if args.ids else \
            eng.forget(everything=args.all, **_scope(args))
    print(f"forgot {n} note(s)")
    return EXIT_OK
