"""Commands that look at the whole collection: dupes, clusters, outliers, map."""
from __future__ import annotations

import argparse
import json
import os

from .common import EXIT_OK, add_index_arg, index_dir, safe_text, show_path


def _common(p: argparse.ArgumentParser) -> None:
    add_index_arg(p)
    p.add_argument("--type", action="append", dest="types", metavar="TYPE",
                   help="only items of this type (image, audio, text, video; repeat or comma-separate); default all")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _k(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {value!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dupes", help="groups of near-duplicates (re-saved, resized, cropped, re-encoded copies), "
                                     "the one to keep first")
    p.set_defaults(func=cmd_dupes)
    _common(p)
    p.add_argument("--threshold", type=float, metavar="T",
                   help="how alike two items' content must be, 0-1 (default: measured per type, 0.9 for pictures "
                        "and sounds); lower takes in near neighbours such as burst shots")
    p.add_argument("--radius", type=float, metavar="COS",
                   help="cosine within which candidates are searched, 0.5-1 (default 0.85; 0.9 for text)")

    p = sub.add_parser("clusters", help="what the collection is made of: k-means clusters named by the words "
                                        "nearest them")
    p.set_defaults(func=cmd_clusters)
    _common(p)
    p.add_argument("-k", type=_k, default="auto", metavar="N|auto", help="clusters (default auto: by silhouette)")
    p.add_argument("--members", type=int, default=5, metavar="N", help="members shown per cluster (default 5)")
    p.add_argument("--refit", action="store_true", help="fit the clusters again (else kept while the collection "
                                                        "changes by less than 10 %%)")
    p.add_argument("--bridge", action="store_true",
                   help="take each modality's mean direction out first, so that photos, recordings and texts of one "
                        "subject can share a cluster (off: modalities mostly cluster apart)")

    p = sub.add_parser("outliers", help="items that belong nowhere: far from every cluster, few close neighbours")
    p.set_defaults(func=cmd_outliers)
    _common(p)
    p.add_argument("-k", type=_k, default="auto", metavar="N|auto", help="clusters to measure against (default auto)")
    p.add_argument("--z", type=float, default=3.5, metavar="Z",
                   help="how unusual (robust z-score of the distance to the cluster's centre; default 3.5)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")

    p = sub.add_parser("map", help="draw the collection in two dimensions as a PNG, clusters named")
    p.set_defaults(func=cmd_map)
    _common(p)
    p.add_argument("--out", default="map.png", metavar="FILE", help="the PNG to write (default map.png)")
    p.add_argument("-k", type=_k, default="auto", metavar="N|auto", help="clusters (default auto)")
    p.add_argument("--method", choices=("pca", "umap"), default="pca",
                   help="projection (default pca; umap needs the umap-learn package)")
    p.add_argument("--size", default="1200x900", metavar="WxH", help="pixels (default 1200x900)")


def _engine(args: argparse.Namespace):
    from ..index.openmp import one_off

    one_off()  # a view runs the text tower for one query at most (naming clusters), from its export where it can
    from ..engine import Engine

    return Engine(index_dir(args), readonly=True)


def _where(locator: dict, modality: str, text: str | None = None) -> str:
    """Where in its file an item is, as a search hit says it (a time span, a page, a passage's first words), or a
    picture's size."""
    from ..modalities import get_modality

    at, after = get_modality(modality).describe(locator, text)
    if not (at or after.strip()) and modality == "image" and locator.get("width"):
        return f"  {locator['width']}x{locator['height']}"
    return safe_text(f"{at}{after}")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def cmd_dupes(args: argparse.Namespace) -> int:
    import tempfile

    from ..quiet import captured_output

    with _engine(args) as eng:
        # Confirming a pair decodes both files again: their decoders' chatter goes to a log, as `mmr index`'s does.
        logs = eng.path / "views"
        if not os.access(eng.path, os.W_OK):
            logs = tempfile.mkdtemp(prefix="mmr-dupes-")
        if os.environ.get("MMR_DEBUG") == "1":
            report = eng.dupes(args.types, threshold=args.threshold, radius=args.radius)
        else:
            with captured_output(os.path.join(logs, "messages.log")):
                report = eng.dupes(args.types, threshold=args.threshold, radius=args.radius)
        for n in eng.notes:
            print(f"note: {n}")
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return EXIT_OK
    looked = ", ".join(f"{n} {m}" for m, n in report.items.items())
    if not report.groups:
        print(f"no near-duplicates among {looked or 'no items'}")
        return EXIT_OK
    for g in report.groups:
        kind = "exact copies" if g.exact else "near-duplicates"
        print(f"{g.modality}: {len(g.members)} {kind}; keep the first ({g.why_first})")
        for i, m in enumerate(g.members):
            mark = "keep" if i == 0 else ("same bytes" if m.exact else f"alike {m.likeness:.2f}, cos {m.cosine:.3f}")
            count = f"  ({m.items} items)" if m.items > 1 else ""
            print(f"  {'*' if i == 0 else ' '} {show_path(m.path)}{_where(m.locator, g.modality, m.text)}{count}  [{mark}]")
    reclaim = sum(m.size for g in report.groups for m in g.members[1:])
    print(f"{len(report.groups)} group(s) among {looked}; the copies after the first take {_size(reclaim)}")
    return EXIT_OK


def cmd_clusters(args: argparse.Namespace) -> int:
    with _engine(args) as eng:
        report = eng.clusters(args.types, k=args.k, bridge=args.bridge, refit=args.refit)
        rows = eng.store.catalog.items([i for c in report.clusters for i in c.members[:args.members]])
    if args.json:
        print(json.dumps(report.as_dict(args.members), indent=2))
        return EXIT_OK
    if not report.clusters:
        print("the index holds no items to cluster")
        return EXIT_OK
    how = "fitted" if report.refitted else "kept from before, new items assigned"
    print(f"{report.items} items in {report.k} clusters ({how}; {report.seconds:.1f} s)")
    for c in report.clusters:
        mods = ", ".join(f"{n} {m}" for m, n in sorted(c.modalities.items()))
        also = ", ".join(n for n, _ in c.names[1:])
        print(f"\n{c.name}{f'  (also: {also})' if also else ''}: {c.size} items ({mods}){'  mixed' if c.mixed else ''}")
        if c.passage is not None:
            print(f'  nearest passage: "{safe_text(c.passage[1][:100])}"')
        for i in c.members[:args.members]:
            r = rows.get(i)
            if r is not None:
                print(f"  {show_path(r.path)}{_where(r.locator, r.modality, r.text)}")
    return EXIT_OK


def cmd_outliers(args: argparse.Namespace) -> int:
    with _engine(args) as eng:
        found = eng.outliers(args.types, k=args.k, z=args.z, limit=args.limit)
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    if not found["outliers"]:
        print(f"no outliers among {found['items']} items (z >= {args.z})")
        return EXIT_OK
    for o in found["outliers"]:
        score = "alone" if o["score"] is None else f"z {o['score']:.1f}"
        near = f"; nearest other item cos {o['nearest']['cosine']:.3f}" if o["nearest"] else ""
        print(f"{show_path(o['path'])}{_where(o['locator'], o['modality'])}  [{score}, nearest cluster "
              f"{o['cluster_name']!r}{near}]")
    print(f"{found['total']} outlier(s) among {found['items']} items in {found['k']} clusters")
    return EXIT_OK


def cmd_map(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size takes WIDTHxHEIGHT in pixels, e.g. 1200x900; got {args.size!r}") from None
    with _engine(args) as eng:
        png = eng.map_png(args.types, k=args.k, method=args.method, width=width, height=height)
    out = os.path.abspath(args.out)
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(png)
    os.replace(tmp, out)
    if args.json:
        print(json.dumps({"out": out, "bytes": len(png), "width": width, "height": height}))
    else:
        print(f"wrote {show_path(out)} ({width}x{height})")
    return EXIT_OK
