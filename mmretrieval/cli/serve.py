"""`mmr serve`: the HTTP API and search page over one index; `mmr mcp`: the index as MCP tools for agents."""
from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_OK, add_index_arg, device, index_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP API and search page (needs the 'server' extra)")
    p.set_defaults(func=cmd_serve)
    add_index_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; others need --token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=os.environ.get("MMR_TOKEN"), help="require this token (default $MMR_TOKEN)")
    p.add_argument("--max-upload", type=int, default=20 * 1024 * 1024, metavar="BYTES")
    p.add_argument("--allow-index", action="append", metavar="DIR",
                   help="let POST /index index files under DIR (repeatable; writes need --token)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="answer with N processes at once (default 1); each loads the towers, the index files "
                        "are shared")
    p.add_argument("--readers", type=int, default=None, metavar="N",
                   help="requests each process answers at once, in threads sharing its towers (default: the "
                        "CPUs, at most 4)")
    m = sub.add_parser("mcp", help="the index as Model Context Protocol tools over stdio, for agents "
                                   "(needs the 'mcp' extra)")
    m.set_defaults(func=cmd_mcp)
    add_index_arg(m)
    m.add_argument("--allow-index", action="append", metavar="DIR",
                   help="let agents index files under DIR (repeatable); without it the collection is read-only")
    m.add_argument("--no-memory", action="store_true",
                   help="no memory tools (remember, recall, update_memory, forget): the index is opened read-only")
    m.add_argument("--user", metavar="NAME", help="the user whose notes the memory tools keep (default: none)")
    m.add_argument("--agent", metavar="NAME", help="the agent whose notes the memory tools keep (default: none)")
    m.add_argument("--http", action="store_true",
                   help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio")
    m.add_argument("--host", default="127.0.0.1", help="with --http: address to bind (others need --token)")
    m.add_argument("--port", type=int, default=8765, help="with --http: port (default 8765)")
    m.add_argument("--token", default=os.environ.get("MMR_TOKEN"),
                   help="with --http: require this token (default $MMR_TOKEN)")


def cmd_serve(args: argparse.Namespace) -> int:
    from ..server.app import serve

    workers = f" with {args.workers} workers" if args.workers > 1 else ""
    print(f"serving {index_dir(args)} on http://{args.host}:{args.port}/{workers} (API docs at /docs)", file=sys.stderr)
    serve(index_dir(args), host=args.host, port=args.port, token=args.token, max_upload=args.max_upload,
          device=device(args, bulk=False), allow_index=args.allow_index, workers=args.workers,
          readers=args.readers)
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        from ..errors import UsageError

        raise UsageError("mmr mcp needs the Model Context Protocol SDK: pip install 'mmretrieval[mcp]'")
    from ..server.mcp_tools import serve_http, serve_stdio

    common = dict(allow_index=args.allow_index, memory=not args.no_memory, user=args.user, agent=args.agent,
                  device=device(args, bulk=False))
    if args.http:
        print(f"mmr mcp: serving {index_dir(args)} at http://{args.host}:{args.port}/mcp", file=sys.stderr)
        serve_http(index_dir(args), host=args.host, port=args.port, token=args.token, **common)
        return EXIT_OK
    # stdout carries the protocol: anything a library prints there would break the client
    print(f"mmr mcp: serving {index_dir(args)} over stdio", file=sys.stderr)
    serve_stdio(index_dir(args), **common)
    return EXIT_OK
