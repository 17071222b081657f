"""`mmr`: a thin command line over `Engine`. All printing and exit codes live here.

One module per group of commands, each registering its own parsers (`register`) and the function each runs
(`func`); this module only assembles them and maps errors to exit codes. Nothing heavy is imported before a
command runs: `mmr --help` and `mmr --version` load neither torch nor faiss.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from . import collection, migrate, notes, relevance, search, serve, spaces, views
from .common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, err, safe_text, show_path
from .search import format_hit

# Each registers its commands in `mmr --help`'s order: index and search first.
REGISTER = (collection.register_index, search.register, collection.register, views.register, migrate.register,
            notes.register, relevance.register, serve.register, spaces.register)

__all__ = ["main", "build_parser", "format_hit", "show_path", "safe_text", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mmr", description="Search your photos, recordings and documents by meaning, across modalities.")
    parser.add_argument("--version", action="version", version=f"mmretrieval {__version__}")
    parser.add_argument("--backend", choices=["auto", "torch", "onnx"],
                        help="runtime of the towers: auto (default, $MMR_BACKEND: the faster one, measured once per "
                             "tower and CPU), torch, or onnx (ONNX Runtime); it does not change vectors")
    parser.add_argument("--device", metavar="DEVICE",
                        help="where the towers compute: auto (default, $MMR_DEVICE: a CUDA GPU for index and eval "
                             "where torch sees one, the CPU for queries), cpu, cuda or cuda:N")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in REGISTER:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = os.environ.get("MMR_DEBUG") == "1"
    if debug:
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("mmretrieval").setLevel(logging.DEBUG)  # ours in full; libraries' warnings only
    from ..errors import MMRError, UsageError

    if args.backend:  # read where towers load: here, in decode/embed workers and on a local Ray
        os.environ["MMR_BACKEND"] = args.backend
    try:
        return args.func(args)
    except UsageError as e:
        err(str(e))
        return EXIT_USAGE
    except MMRError as e:
        err(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        err("interrupted; what was committed before is kept, run the same command again to continue")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # never show a traceback unless asked
        if debug:
            raise
        err(f"internal error: {type(e).__name__}: {e} (set MMR_DEBUG=1 for a traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
