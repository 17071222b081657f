"""`mmr compare`: candidate spaces side by side on your own pairs, before committing to one (re-embedding a
collection later costs a full pass).

Per space: R@1/5/10 both ways and P@5 by label (`train/evaluate.py`), the audit's figures (matched vs random
overlap), the encode rate on this machine (items per second over the whole evaluation), and index bytes per
item (float32 vectors + ids). The recommendation: the best mean P@5 (R@5 without labels); a space within
0.02 of it that encodes at least 1.5x faster or is half the size wins instead, and the reason says so.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import MMRError
from ..index.choose import ID_BYTES
from ..space.registry import resolve_model_arg
from ..space.runtime import Space
from ..train.evaluate import evaluate
from ..train.pairs import read_pairs
from .audit import audit_pairs

CLOSE = 0.02


def compare(pairs_file: str | Path, models: list[str], precision: str = "auto", device: str = "cpu") -> dict[str, Any]:
    pairs = read_pairs(pairs_file)
    n_items = len({p.image or p.audio for p in pairs}) + len({p.caption for p in pairs})
    rows = []
    for name in models:
        row: dict[str, Any] = {"model": name}
        try:
            space = Space(resolve_model_arg(name), precision=precision, device=device)
            t = time.perf_counter()
            ev = evaluate(space, str(pairs_file))
            seconds = time.perf_counter() - t
            au = audit_pairs(space, pairs_file)
        except MMRError as e:
            row["error"] = str(e)
            rows.append(row)
            continue
        directions = {d: v for m in ("image", "audio") if isinstance(ev.get(m), dict)
                      for d, v in ev[m].items() if "_to_" in d}
        row.update(fingerprint=space.fingerprint, dim=space.dim, directions=directions,
                   overlap={k: v["overlap"] for k, v in au["pairs"].items()},
                   items_per_s=round(n_items / max(seconds, 1e-9), 1), bytes_per_item=4 * space.dim + ID_BYTES)
        scores = [v.get("P@5", v["R@5"]) for v in directions.values()]
        row["quality"] = round(sum(scores) / len(scores), 4) if scores else 0.0
        row["quality_measure"] = "mean P@5" if all("P@5" in v for v in directions.values()) else "mean R@5"
        rows.append(row)
    ok = [r for r in rows if "error" not in r]
    return {"pairs": str(pairs_file), "spaces": rows, "recommendation": _recommend(ok)}


def _recommend(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    best = max(rows, key=lambda r: r["quality"])
    why = f"highest {best['quality_measure']} ({best['quality']:.3f})"
    for r in rows:
        if r is best or best["quality"] - r["quality"] > CLOSE:
            continue
        faster = r["items_per_s"] >= 1.5 * best["items_per_s"]
        smaller = r["bytes_per_item"] * 2 <= best["bytes_per_item"]
        if faster or smaller:
            why = (f"{r['quality_measure']} {r['quality']:.3f}, within {CLOSE} of {best['model']} ({best['quality']:.3f}), "
                   f"and " + (f"encodes {r['items_per_s'] / best['items_per_s']:.1f}x faster" if faster else
                              f"needs {best['bytes_per_item'] / r['bytes_per_item']:.1f}x fewer bytes per item"))
            best = r
            break
    return {"model": best["model"], "why": why}
