"""What every command shares: the index folder, the device, printing a path or a file's text safely."""
from __future__ import annotations

import argparse
import os
import re
import sys

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

PRECISION_HELP = ("number format of the towers: auto (default, $MMR_PRECISION: on a CPU an int8 image tower where "
                  "measured faster, else bf16 image/audio towers where the CPU has native bf16, else fp32; on a GPU "
                  "fp16 image/audio towers), fp32, bf16, fp16, int8 (text and image towers, under ONNX Runtime), "
                  "or pairs like image=int8,text=fp32")


def default_index_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "mmretrieval", "index")


def index_dir(args: argparse.Namespace) -> str:
    return args.index or os.environ.get("MMR_INDEX") or default_index_dir()


def add_index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", metavar="DIR",
                   help=f"index folder (default: $MMR_INDEX, else {default_index_dir()})")


def device(args: argparse.Namespace, bulk: bool = True) -> str:
    """The device the command's towers compute on (`--device`, `$MMR_DEVICE`, else auto for this kind of work)."""
    from ..space.device import parse_device

    return parse_device(args.device, bulk=bulk)


def err(msg: str) -> None:
    print(f"mmr: {msg}", file=sys.stderr)


# Characters a terminal acts on instead of showing: C0/C1 controls (ESC starts escape sequences; a file's
# ISO-2022 text or a crafted name could move the cursor, retitle the window...) and bidi overrides.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def show_path(path: str) -> str:
    """A path on one line: names with control characters (a newline, say) are shown quoted."""
    return repr(path) if _UNSAFE.search(path) is not None else path


def safe_text(text: str) -> str:
    """Text from a file (a snippet, a reason) with every control character shown escaped (\\x1b)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """`--ray` and its settings, for the commands that embed files (index, migrate)."""
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


def ray_options(args: argparse.Namespace):  # noqa: ANN201  (RayOptions | None)
    """The `--ray*` arguments as `RayOptions` (None without --ray)."""
    from ..options import RayOptions

    given = [f for f in ("ray_actors", "files_per_shard") if getattr(args, f) is not None]
    given += [f for f in ("ray_gpus_per_actor",) if getattr(args, f)] + (["keep_shards"] if args.keep_shards else [])
    if args.ray is None:
        if given or args.ray_cpus_per_actor != 1.0:
            from ..errors import UsageError

            raise UsageError("--ray-actors, --ray-cpus-per-actor, --ray-gpus-per-actor, --files-per-shard and "
                             "--keep-shards only apply with --ray")
        return None
    return RayOptions(address=args.ray or None, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
                      gpus_per_actor=args.ray_gpus_per_actor, files_per_shard=args.files_per_shard,
                      keep_shards=args.keep_shards)
