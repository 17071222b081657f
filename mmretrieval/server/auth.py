"""The server token, as `mmr serve` and `mmr mcp --http` check it: `Authorization: Bearer TOKEN` or `?token=`,
compared in constant time."""
from __future__ import annotations

import hmac
import json
from typing import Any, Callable
from urllib.parse import parse_qs

LOOPBACK = ("127.0.0.1", "localhost", "::1")
REFUSAL = {"error": "missing or wrong token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN",
           "type": "Unauthorized"}


def token_matches(token: str, authorization: str | None, query_token: str | None) -> bool:
    given = query_token or ""
    if authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:]
    return hmac.compare_digest(given.encode(), token.encode())


def check_binding(host: str, token: str | None) -> None:
    from ..errors import UsageError

    if host not in LOOPBACK and not token:
        raise UsageError(f"binding to {host} exposes your files: give --token (or MMR_TOKEN) so requests must carry it")


class RequireToken:
    """ASGI middleware: every HTTP request must carry the token (401 with our error body otherwise)."""

    def __init__(self, app: Callable[..., Any], token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
            if not token_matches(self.token, headers.get("authorization"), query):
                body = json.dumps(REFUSAL).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode()),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
