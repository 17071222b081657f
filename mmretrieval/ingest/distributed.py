"""Indexing's embed step on a Ray cluster (`mmr index PATH --ray [ADDRESS]`; the `distributed` extra).

Only embedding moves. The driver plans (walk + diff against the catalog, as a local run does) and commits
(the single writer, the same crash-safe checkpoints). The files to embed are cut into shards; Ray Data sends
each shard to a pool of long-lived encoder actors (`map_batches` over an actor pool: a space loads once per
actor, and an actor refuses to start in a space other than the index's); each shard's result comes back to
the driver, which stages it on disk (`staging.Staging`) and then commits it. Files staged by an interrupted
run (a killed driver, a failed cluster) are not embedded again.

Why actors decode as well as encode, instead of separate decode tasks: decoding needs the space's
preprocessing (image size and normalisation, tokenizer, audio rate), and an actor already decodes in threads
ahead of its encoder (`Embedder`), so decoded tensors never cross the object store: paths go out, vectors come
back. Input files must be readable at the same path on every node (a shared filesystem or mount).
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import errors
from ..errors import MMRError, SpaceMismatchError, UsageError
from ..options import ItemOptions, RayOptions
from .embed import EmbeddedFile, Embedder
from .plan import Plan
from .staging import Staging
from .walk import FileEntry

MAX_FILES_PER_SHARD = 1000
SHARDS_PER_ACTOR = 4      # enough shards that a slow node does not hold the run (stragglers)


def _ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("mmr index --ray needs Ray Data: pip install 'mmretrieval[distributed]'") from None
    return ray


class EncoderActor:
    """One loaded space on a Ray worker; embeds one shard of files per row of a batch."""

    def __init__(self, spec: dict[str, Any], precision: dict[str, str], fingerprint: str, batch_size: int,
                 workers: int | None, items: dict[str, Any], threads: int, reusable: dict[str, tuple[str, str | None]],
                 jpeg_draft: int = 1) -> None:
        import ray

        from ..space.runtime import Space
        from ..space.spec import SpaceSpec

        device = "cuda" if ray.get_gpu_ids() else "cpu"  # Ray shows an actor only the GPUs it was given
        self.space = Space(SpaceSpec.from_dict(spec), device=device, precision=precision, num_threads=threads,
                           jpeg_draft=jpeg_draft)
        if self.space.fingerprint != fingerprint:
            raise SpaceMismatchError(
                f"on node {ray.get_runtime_context().get_node_id()[:12]}, space {spec['name']!r} loads with "
                f"fingerprint {self.space.fingerprint}, not the index's {fingerprint}: its weights or libraries "
                f"differ from the driver's")
        self.node = ray.get_runtime_context().get_node_id()
        self.options = dict(batch_size=batch_size, workers=workers, options=ItemOptions.from_dict(items),
                            reusable=reusable)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for task in batch["entries"]:
            entries = pickle.loads(task)
            results.append(pickle.dumps(list(Embedder(self.space, **self.options).stream(entries))))
        return {"key": batch["key"], "files": np.array(results, dtype=object),
                "node": np.array([self.node] * len(results))}


@dataclass
class RayEmbedder:
    """The embed step of one `index` run on Ray: `stream(plan)` yields the plan's files, embedded."""

    spec: dict[str, Any]
    precision: dict[str, str]
    staging: Staging
    options: RayOptions = field(default_factory=RayOptions)
    jpeg_draft: int = 1
    batch_size: int = 32
    workers: int | None = None  # decode threads per actor (None: the Embedder's default)
    items: ItemOptions = field(default_factory=ItemOptions)  # how files are cut into items (the index's)
    summary: dict[str, Any] = field(default_factory=dict)

    def stream(self, plan: Plan) -> Iterator[EmbeddedFile]:
        reusable = plan.reusable
        staged, todo = [], []
        for e in plan.todo:
            f = _still_valid(self.staging.find(e), reusable)
            (staged if f is not None else todo).append(f if f is not None else e)
        self.summary.update(files_from_staged=len(staged), files_embedded=len(todo), shards=0, nodes=[], actors=0)
        yield from staged
        if todo:
            yield from self._embed(todo, reusable)

    def _embed(self, todo: list[FileEntry], reusable: dict[str, tuple[str, str | None]]) -> Iterator[EmbeddedFile]:
        ray = _ray()
        with self._ray_logs_to_root():
            yield from self._connected(ray, todo, reusable)

    def _connected(self, ray: Any, todo: list[FileEntry], reusable: dict) -> Iterator[EmbeddedFile]:
        started = not ray.is_initialized()
        if started:
            address = self.options.address or os.environ.get("RAY_ADDRESS") or "local"
            # A new local Ray binds to loopback: nothing of it is reachable from the network.
            local = {"_node_ip_address": "127.0.0.1"} if address == "local" else {}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     **local)
        try:
            yield from self._run(ray, todo, reusable)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    @contextmanager
    def _ray_logs_to_root() -> Iterator[None]:
        """Ray's loggers write to the terminal through handlers of their own; for the run, their records go
        to the root logger instead (`mmr index` sends that to the index's messages log, as for decoders)."""
        saved = []
        for name in ("ray", "ray.data"):
            lg = logging.getLogger(name)
            saved.append((lg, lg.handlers[:], lg.propagate))
            lg.handlers, lg.propagate = [], True
        try:
            yield
        finally:
            for lg, handlers, propagate in saved:
                lg.handlers, lg.propagate = handlers, propagate

    def _run(self, ray: Any, todo: list[FileEntry], reusable: dict) -> Iterator[EmbeddedFile]:
        o = self.options
        cpus = float(ray.cluster_resources().get("CPU", 0))
        actors = o.actors or max(1, int(cpus / o.cpus_per_actor))
        per = o.files_per_shard or max(1, min(MAX_FILES_PER_SHARD, math.ceil(len(todo) / (SHARDS_PER_ACTOR * actors))))
        shards = [todo[i:i + per] for i in range(0, len(todo), per)]
        actors = min(actors, len(shards))
        run = uuid.uuid4().hex[:8]
        rows = [{"key": f"{run}_{k}", "entries": pickle.dumps(s)} for k, s in enumerate(shards)]
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # commit in plan order: the same ids as a local run
        ctx.print_on_execution_start = False
        ds = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            EncoderActor, batch_size=1, batch_format="numpy",
            # All actors start up front (spread over the nodes); an autoscaling pool starting at one actor
            # would leave small runs on one node.
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=o.cpus_per_actor, num_gpus=o.gpus_per_actor or None,
            fn_constructor_kwargs=dict(spec=self.spec, precision=self.precision,
                                       fingerprint=self.staging.fingerprint, batch_size=self.batch_size,
                                       workers=self.workers, items=self.items.to_dict(),
                                       threads=max(1, round(o.cpus_per_actor)), reusable=reusable,
                                       jpeg_draft=self.jpeg_draft))
        nodes: set[str] = set()
        self.summary.update(actors=actors, files_per_shard=per)
        rows_out = iter(ds.iter_rows())
        while True:
            try:
                row = next(rows_out)
            except StopIteration:
                return
            except Exception as e:  # Ray wraps what an actor raised: show ours as ours
                raise _ours(e) from e
            files: list[EmbeddedFile] = pickle.loads(row["files"])
            self.staging.write(str(row["key"]), files)  # durable before it is committed
            nodes.add(str(row["node"]))
            self.summary["shards"] += 1
            self.summary["nodes"] = sorted(nodes)
            yield from files


def _ours(e: BaseException) -> BaseException:
    """The error of ours (a space that differs on a node, missing weights) inside Ray's wrappers, or the
    wrapper itself as an `MMRError` that says the cluster failed and that a rerun resumes."""
    seen, x = set(), e
    while x is not None and id(x) not in seen:
        seen.add(id(x))
        if isinstance(x, MMRError):
            return type(x)(str(x))
        x = getattr(x, "cause", None) or x.__cause__
    # An actor that died in its constructor reaches us only as text (ActorDiedError): find ours in it.
    m = re.search(r"mmretrieval\.errors\.(\w+): (.+)", str(e))
    cls = getattr(errors, m.group(1), None) if m else None
    if isinstance(cls, type) and issubclass(cls, MMRError):
        return cls(m.group(2).strip())
    return MMRError(f"the Ray run failed ({type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}); "
                    f"shards embedded so far are staged: run the same command again to resume")


def _still_valid(f: EmbeddedFile | None, reusable: dict[str, tuple[str, str | None]]) -> EmbeddedFile | None:
    """A staged outcome as this plan would have it: content the index now holds is reused (as `Embedder`
    decides), and a staged reuse whose source is gone must be embedded after all (None)."""
    if f is None or f.error is not None:
        return f
    known = reusable.get(f.hash or "")
    can_reuse = known is not None and known[0] == f.entry.modality and known[1] != f.entry.path
    if f.reuse:
        return f if can_reuse else None
    if can_reuse:
        return EmbeddedFile(f.entry, f.hash, f.fingerprint, reuse=True)
    return f
