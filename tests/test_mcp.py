"""`mmr mcp` tested as an agent's client runs it: the SDK's own stdio client starts it as a subprocess, lists
its tools, searches each modality, reads items (a passage's text, an image as image content), finds similar
items, reads the stats resource, and (only where allowed) indexes a folder. stdout carries nothing but protocol
messages (the client fails on anything else)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

import mmretrieval as mmr

pytest.importorskip("mcp")
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    idx = tmp_path_factory.mktemp("mcp") / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "images", DEMO / "docs", DEMO / "sounds"])
    return idx


@asynccontextmanager
async def session(argv: list[str]):
    """A client session with `mmr mcp ARGV` started as a subprocess, as an agent host starts it."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {k: v for k, v in os.environ.items() if k.startswith(("MMR_", "HF_", "PYTHON", "HOME", "PATH"))}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mmretrieval.cli", "mcp", *argv],
                                   env={**env, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            yield s


def payload(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def test_an_agent_searches_reads_and_finds_similar_over_stdio(demo_index):
    async def run():
        async with session(["--index", str(demo_index), "--no-memory"]) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert set(tools) == {"search", "similar", "get_item"}  # read-only: no index tool, no memory
            assert "relevance" in tools["search"].description and "query" in tools["search"].input_schema["properties"]
            # text -> image
            hits = payload(await s.call_tool("search", {"query": "a red circle", "k": 3}))["hits"]
            assert hits[0]["path"].endswith("red-circle.png") and hits[0]["modality"] == "image"
            assert "vector" not in json.dumps(hits)
            # image -> text passage, with its snippet
            found = payload(await s.call_tool("search", {"image_path": str(DEMO / "images" / "blue-square.png"),
                                                        "types": ["text"], "k": 3}))
            assert found["hits"][0]["snippet"] == "A blue square on a white background."
            # text -> audio, with its time range
            sound = payload(await s.call_tool("search", {"query": "a high rising beep", "types": ["audio"], "k": 1}))
            assert sound["hits"][0]["modality"] == "audio" and sound["hits"][0]["end"] > sound["hits"][0]["start"]
            # audio -> text
            heard = payload(await s.call_tool("search", {"audio_path": str(DEMO / "sounds" / "low-steady-buzz.flac"),
                                                        "types": ["text"], "k": 1}))
            assert "low steady buzz" in heard["hits"][0]["snippet"].lower()
            # an image item comes back as image content; a passage as its text
            item = await s.call_tool("get_item", {"item_id": hits[0]["id"]})
            kinds = [c.type for c in item.content]
            assert "image" in kinds and item.content[kinds.index("image")].mime_type == "image/jpeg"
            passage = await s.call_tool("get_item", {"item_id": found["hits"][0]["id"]})
            assert "A blue square on a white background." in passage.content[0].text
            like = payload(await s.call_tool("similar", {"item_id": hits[0]["id"], "types": ["image"], "k": 3}))
            assert hits[0]["id"] not in [h["id"] for h in like["hits"]] and len(like["hits"]) == 3
            # bad calls are tool errors the model can read, not a dead server
            for bad, said in (({"query": "x", "image_path": "y.png"}, "exactly one of"),
                              ({"query": "x", "k": 0}, "k must be"),
                              ({"image_path": str(DEMO / "nope.png")}, "nope.png"),
                              ({"query": "x", "types": ["sculpture"]}, "sculpture")):
                r = await s.call_tool("search", bad)
                assert r.is_error and said in r.content[0].text, (bad, r.content[0].text)
            gone = await s.call_tool("get_item", {"item_id": 10**9})
            assert gone.is_error and "no indexed item" in gone.content[0].text
            stats = await s.read_resource("mmr://index/stats")
            assert json.loads(stats.contents[0].text)["items"]["image"] == 24
            still = payload(await s.call_tool("search", {"query": "a red circle", "k": 1}))  # alive after errors
            assert still["hits"][0]["path"].endswith("red-circle.png")
    asyncio.run(asyncio.wait_for(run(), 240))  # a broken server fails the test, never hangs it


def test_indexing_only_under_the_folders_it_was_allowed(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(DEMO / "docs" / "red-circle.txt", inbox / "note.txt")
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "images"])

    async def run():
        async with session(["--index", str(idx), "--allow-index", str(inbox)]) as s:
            assert "index" in {t.name for t in (await s.list_tools()).tools}
            refused = await s.call_tool("index", {"path": str(DEMO / "docs")})
            assert refused.is_error and "not under a folder" in refused.content[0].text
            report = payload(await s.call_tool("index", {"path": str(inbox)}))
            assert report["files"]["new"] == 1 and report["items_added"] == {"text": 1}
            hits = payload(await s.call_tool("search", {"query": "a red circle", "types": ["text"], "k": 1}))
            assert hits["hits"][0]["path"] == str(inbox / "note.txt")
    asyncio.run(asyncio.wait_for(run(), 240))  # a broken server fails the test, never hangs it


def test_an_agent_keeps_its_own_memory_in_the_servers_scope(demo_index, tmp_path):
    """remember -> recall -> update -> forget over stdio, all in the user and agent the server was started for:
    a note of another user is never recalled, updated or forgotten through it."""
    idx = tmp_path / "idx"
    shutil.copytree(demo_index, idx)
    with mmr.Engine(idx) as eng:
        theirs = eng.remember("Bob's logo is a red circle.", user="bob", agent="helper").memory.id

    async def run():
        async with session(["--index", str(idx), "--user", "ann", "--agent", "helper"]) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert {"remember", "recall", "update_memory", "forget"} <= set(tools)
            assert "restates" in tools["remember"].description
            added = payload(await s.call_tool("remember", {"text": "Ann's logo is a red circle.", "session": "s1",
                                                           "metadata": {"topic": "brand"}}))
            assert added["action"] == "added" and added["memory"]["user"] == "ann"
            payload(await s.call_tool("remember", {"text": "Ann likes a low steady buzz.", "session": "s2"}))
            again = payload(await s.call_tool("remember", {"text": "ann's logo is a red circle", "session": "s1"}))
            assert again["action"] == "updated" and again["replaced"] == "Ann's logo is a red circle."
            mine = added["memory"]["id"]
            got = payload(await s.call_tool("recall", {"query": "a scarlet disc logo", "k": 5}))["memories"]
            assert got[0]["id"] == mine and theirs not in [m["id"] for m in got] and len(got) == 2
            assert "relevance" in got[0] and "user" not in got[0]
            one = payload(await s.call_tool("recall", {"query": "a logo", "session": "s2"}))["memories"]
            assert [m["text"] for m in one] == ["Ann likes a low steady buzz."]
            fixed = payload(await s.call_tool("update_memory", {"memory_id": mine, "text": "Ann's logo is a blue star."}))
            assert fixed["text"] == "Ann's logo is a blue star." and fixed["metadata"] == {"topic": "brand"}
            for tool, args in (("update_memory", {"memory_id": theirs, "text": "x"}), ("forget", {"memory_id": theirs})):
                r = await s.call_tool(tool, args)
                assert r.is_error and f"no memory {theirs}" in r.content[0].text
            r = await s.call_tool("forget", {})
            assert r.is_error and "exactly one of" in r.content[0].text
            assert payload(await s.call_tool("forget", {"session": "s2"}))["forgotten"] == 1
            assert payload(await s.call_tool("forget", {"memory_id": mine}))["forgotten"] == 1
    asyncio.run(asyncio.wait_for(run(), 240))  # a broken server fails the test, never hangs it
    with mmr.Engine(idx, readonly=True) as eng:
        assert [m.id for m in eng.memories()] == [theirs]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamable_http_with_a_token(demo_index, tmp_path):
    """`mmr mcp --http --token T` as a long-running server: the SDK's streamable-HTTP client with the token
    lists the tools, searches and keeps a note; without it, or with a wrong one, nothing gets through."""
    import subprocess
    import time

    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    idx = tmp_path / "idx"
    shutil.copytree(demo_index, idx)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    p = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "mcp", "--http", "--port", str(port), "--token",
                          "s3cret", "--index", str(idx), "--user", "ann"], cwd=ROOT, env={**os.environ,
                         "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            try:
                refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=5)
                break
            except httpx.TransportError:
                assert p.poll() is None, p.stderr.read()
                time.sleep(0.2)
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401

        async def run():
            async with create_mcp_http_client(headers={"Authorization": "Bearer s3cret"}) as http, \
                    streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                assert {"search", "remember", "recall"} <= {t.name for t in (await s.list_tools()).tools}
                hits = payload(await s.call_tool("search", {"query": "a red circle", "k": 1}))["hits"]
                assert hits[0]["path"].endswith("red-circle.png")
                assert payload(await s.call_tool("remember", {"text": "Ann's logo is a red circle."}))["action"] == "added"
                got = payload(await s.call_tool("recall", {"query": "a red circle"}))["memories"]
                assert [m["text"] for m in got] == ["Ann's logo is a red circle."]
        asyncio.run(asyncio.wait_for(run(), 240))
    finally:
        p.terminate()
        p.wait(timeout=60)
    with mmr.Engine(idx, readonly=True) as eng:
        assert [m.scope.user for m in eng.memories()] == ["ann"]


def test_stdout_carries_protocol_messages_only(demo_index):
    """Loading the space (open_clip and ONNX Runtime talk as they load), searching, an error: every line on
    stdout is a JSON-RPC message, and each request gets its answer."""
    import subprocess

    msgs = [{"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "search", "arguments": {"query": "a red circle", "k": 2}}},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
             "params": {"name": "search", "arguments": {"audio_path": str(DEMO / "sounds" / "low-steady-buzz.flac")}}},
            {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get_item", "arguments": {"item_id": -1}}}]
    p = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "mcp", "--index", str(demo_index)], cwd=ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = []
    try:
        for m in msgs:  # one at a time, as a client does: the server ends at the end of its input
            p.stdin.write(json.dumps(m) + "\n")
            p.stdin.flush()
            while "id" in m:
                line = p.stdout.readline()
                assert line, p.stderr.read()[-2000:]
                lines.append(json.loads(line))  # a stray print would not parse
                if lines[-1].get("id") == m["id"]:
                    break
    finally:
        p.stdin.close()
        p.wait(timeout=60)
    answers = {m["id"]: m for m in lines if "id" in m}
    assert set(answers) == {1, 2, 3, 4} and all(m["jsonrpc"] == "2.0" for m in lines)
    assert not answers[2]["result"]["isError"] and not answers[3]["result"]["isError"]
    assert answers[4]["result"]["isError"] and "serving" in p.stderr.read() and p.stdout.read() == ""


def test_http_beyond_loopback_needs_a_token(demo_index, capsys):
    from mmretrieval.cli import main

    assert main(["mcp", "--http", "--host", "0.0.0.0", "--index", str(demo_index)]) == 2
    assert "--token" in capsys.readouterr().err


def test_an_index_this_user_may_not_write_is_served_without_memory(demo_index, monkeypatch, capsys):
    from mmretrieval.server import mcp_tools

    real = os.access
    monkeypatch.setattr(mcp_tools.os, "access", lambda p, mode: False if mode == os.W_OK else real(p, mode))
    assert mcp_tools._writable(demo_index, True, None) is False
    assert "without the memory tools" in capsys.readouterr().err
    with pytest.raises(mmr.UsageError, match="--allow-index needs to write"):
        mcp_tools._writable(demo_index, True, ["/tmp"])
