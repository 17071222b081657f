"""The HTTP API over the engine: endpoints, errors, auth, path traversal, uploads, concurrency."""
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import mmretrieval as mmr  # noqa: E402
from media import make_media  # noqa: E402
from mmretrieval.server.app import create_app, warm_up  # noqa: E402


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_space_dir):
    root = tmp_path_factory.mktemp("srv")
    media = make_media(root / "media")
    eng = mmr.Engine(root / "idx", model=str(tiny_space_dir))
    eng.index([root / "media"])
    eng.close()
    return root / "idx", media


@pytest.fixture(scope="module")
def client(index):
    return TestClient(create_app(index[0], max_upload=200_000))


def test_health_stats_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok", "worker": os.getpid()}
    st = client.get("/stats").json()
    assert st["space"]["name"] == "test-tiny" and st["items_total"] > 0
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<input id=\"q\"" in page.text


def test_search_get_matches_the_cli_schema(client, index, capsys):
    r = client.get("/search", params={"q": "a red circle", "type": "image", "k": 3})
    assert r.status_code == 200
    hits = r.json()
    assert len(hits) == 3 and all(h["modality"] == "image" for h in hits)
    from mmretrieval.cli import main

    main(["search", "a red circle", "--type", "image", "-k", "3", "--json", "--index", str(index[0])])
    assert json.loads(capsys.readouterr().out) == hits


def test_search_post_upload_json_and_more_like_this(client, index):
    _, media = index
    with open(media["blue"], "rb") as f:
        r = client.post("/search", files={"image": ("q.png", f, "image/png")}, data={"types": "image", "k": "2"})
    assert r.status_code == 200 and r.json()[0]["path"] == str(media["blue"])
    with open(media["wav"], "rb") as f:
        r = client.post("/search", files={"audio": ("q.wav", f, "audio/wav")}, data={"types": "audio"})
    assert r.status_code == 200 and r.json()[0]["path"] == str(media["wav"])
    r = client.post("/search", json={"text": "a tone", "types": ["audio"], "k": 2})
    assert r.status_code == 200 and len(r.json()) == 2
    first = r.json()[0]
    like = client.post("/search", json={"item": first["id"], "types": ["audio"], "k": 1}).json()
    assert like[0]["id"] == first["id"] and like[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_items_thumbnails_and_media(client, index):
    _, media = index
    img = client.get("/search", params={"q": "x", "type": "image", "k": 1}).json()[0]
    meta = client.get(f"/items/{img['id']}").json()
    assert meta["path"] == img["path"] and meta["modality"] == "image"
    t = client.get(f"/items/{img['id']}/thumbnail")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg" and t.content[:2] == b"\xff\xd8"
    m = client.get(f"/items/{img['id']}/media")
    assert m.status_code == 200 and m.content == open(img["path"], "rb").read()
    aud = client.get("/search", params={"q": "x", "type": "audio", "k": 1}).json()[0]
    w = client.get(f"/items/{aud['id']}/thumbnail")
    assert w.status_code == 200 and w.headers["content-type"] == "image/png" and w.content[:4] == b"\x89PNG"
    assert client.get(f"/items/{aud['id']}/media").headers["content-type"].startswith("audio/")


@pytest.mark.parametrize("path,code", [
    ("/search?q=x&k=0", 422), ("/search?q=x&k=abc", 422), ("/search?q=x&type=sculpture", 422), ("/search?q=", 422),
    ("/items/999999", 404), ("/items/999999/media", 404), ("/items/..%2F..%2Fetc%2Fpasswd/media", (404, 422)),
    ("/items/%2Fetc%2Fpasswd/media", (404, 422)), ("/../../etc/passwd", 404), ("/items/1/../../../etc/passwd", 404),
    ("/items/abc/media", 422), ("/items/-1/media", 404),
])
def test_errors_and_traversal(client, path, code):
    r = client.get(path)
    assert r.status_code in (code if isinstance(code, tuple) else (code,)), r.text
    assert "root:" not in r.text  # nothing from /etc/passwd ever comes back


def test_error_bodies_say_what_to_do(client):
    r = client.get("/search", params={"q": "x", "k": 0})
    assert r.status_code == 422 and "k must be an integer" in r.json()["error"]
    r = client.post("/search", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "send JSON" in r.json()["error"]


def test_oversize_upload_is_413(client):
    big = io.BytesIO(b"\0" * 300_000)
    r = client.post("/search", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_space_mismatch_is_409(index, tiny_space_dir, tmp_path):
    import shutil

    from tiny_space import make_tiny_space

    space = tmp_path / "space"
    shutil.copytree(tiny_space_dir, space)
    eng = mmr.Engine(tmp_path / "idx", model=str(space))
    eng.index([index[1]["red"]])
    eng.close()
    make_tiny_space(space, seed=5)  # the weights under the index changed
    app = create_app(tmp_path / "idx")
    warm_up(app.state.engine).join(timeout=120)  # `mmr serve` warms up: it meets the error and leaves it to the query
    r = TestClient(app).get("/search", params={"q": "x"})
    assert r.status_code == 409 and "fingerprint" in r.json()["error"]


def test_serve_loads_the_space_and_opens_the_towers_in_the_background(index, monkeypatch):
    """The server listens at once; the weights load and the ONNX sessions open behind it, not in the first query."""
    monkeypatch.setenv("MMR_BACKEND", "onnx")
    app = create_app(index[0])
    eng = app.state.engine
    assert eng._space is None  # nothing loaded by starting the app
    warm_up(eng).join(timeout=120)
    assert eng._space is not None
    runners = [eng.space.encoder(m).runner for m in ("text", "image")]
    assert all(r is not None and r.path in r._sessions for r in runners)
    client = TestClient(app)
    assert client.get("/search", params={"q": "a red circle", "k": 3}).status_code == 200
    with open(index[1]["blue"], "rb") as f:
        r = client.post("/search", files={"image": ("q.png", f, "image/png")}, data={"types": "image", "k": "2"})
    assert r.status_code == 200 and r.json()[0]["path"] == str(index[1]["blue"])


def test_token_auth(index):
    c = TestClient(create_app(index[0], token="s3cret"))
    assert c.get("/healthz").status_code == 200
    assert c.get("/stats").status_code == 401
    assert c.get("/stats", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/stats", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/stats", params={"token": "s3cret"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token(index):
    from mmretrieval.errors import UsageError
    from mmretrieval.server.app import serve

    with pytest.raises(UsageError, match="--token"):
        serve(str(index[0]), host="0.0.0.0", port=1)


def test_100_concurrent_searches(client):
    queries = [f"a {c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star")] * 9
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda q: client.get("/search", params={"q": q, "k": 5}), queries[:100]))
    assert len(results) == 100 and all(r.status_code == 200 for r in results)
    # the same query gives the same answer under load
    by_q = {}
    for q, r in zip(queries, results):
        by_q.setdefault(q, []).append(json.dumps(r.json()))
    assert all(len(set(v)) == 1 for v in by_q.values())


def test_new_commits_are_picked_up_without_restart(index, tiny_space_dir, tmp_path):
    idx = tmp_path / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_dir))
    eng.index([index[1]["red"]])
    c = TestClient(create_app(idx))
    assert len(c.get("/search", params={"q": "x", "type": "image", "k": 10}).json()) == 1
    eng.index([index[1]["blue"]])  # another writer (here: the same process) commits
    assert len(c.get("/search", params={"q": "x", "type": "image", "k": 10}).json()) == 2


def test_100_concurrent_http_requests_to_a_real_server(index):
    """Over real sockets: uvicorn on loopback, 100 requests at once from 20 threads."""
    import httpx

    from live_server import live_server

    with live_server(create_app(index[0])) as base:
        words = ["red circle", "blue square", "a tone", "green", "notes", "yellow circle", "hum", "white page"]

        def one(i):
            with httpx.Client(timeout=60) as c:
                if i % 5 == 4:
                    return c.post(f"{base}/search", json={"text": words[i % 8], "k": 3})
                return c.get(f"{base}/search", params={"q": words[i % 8], "k": 5})

        with ThreadPoolExecutor(max_workers=20) as pool:
            rs = list(pool.map(one, range(100)))
        assert [r.status_code for r in rs] == [200] * 100
        assert all(len(r.json()) >= 3 for r in rs)


def test_the_openapi_document_describes_bodies_statuses_and_media_types(client):
    doc = client.get("/openapi.json").json()
    post = doc["paths"]["/search"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SearchRequest")
    assert "SearchRequest" in doc["components"]["schemas"] and "Filters" in doc["components"]["schemas"]
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/HitOut")
    for code in ("401", "413", "422", "503"):
        assert post["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    media = doc["paths"]["/items/{item_id}/media"]["get"]["responses"]
    assert {"200", "206", "404", "416"} <= set(media) and "video/*" in media["206"]["content"]
    assert set(doc["paths"]["/items/{item_id}/thumbnail"]["get"]["responses"]["200"]["content"]) == \
        {"image/jpeg", "image/png"}
    assert set(doc["paths"]["/audit.png"]["get"]["responses"]["200"]["content"]) == {"image/png"}
    every = [op for path in doc["paths"].values() for op in path.values()]
    assert all("401" in op["responses"] for op in every if op.get("operationId", "").find("healthz") < 0)
    assert {"/memories", "/memories/recall", "/memories/{memory_id}", "/index"} <= set(doc["paths"])


def test_writes_need_the_servers_token(index):
    c = TestClient(create_app(index[0]))
    r = c.post("/memories", json={"text": "a note"})
    assert r.status_code == 403 and "--token" in r.json()["error"]
    assert c.get("/memories").json() == []  # reading notes needs no write


def test_notes_over_http_in_their_scope(index, tmp_path):
    import shutil

    shutil.copytree(index[0], tmp_path / "idx")
    auth = {"Authorization": "Bearer t0k"}
    c = TestClient(create_app(tmp_path / "idx", token="t0k"))
    assert c.post("/memories", json={"text": "x"}).status_code == 401
    added = c.post("/memories", headers=auth, json={"text": "The red circle is Ann's.", "user": "ann",
                                                     "metadata": {"topic": "shapes"}})
    assert added.status_code == 200 and added.json()["action"] == "added"
    mine = added.json()["memory"]["id"]
    again = c.post("/memories", headers=auth, json={"text": "the red circle is ann's", "user": "ann"}).json()
    assert again["action"] == "updated" and again["replaced"] == "The red circle is Ann's."
    theirs = c.post("/memories", headers=auth, json={"text": "The blue square is Bob's.", "user": "bob"}).json()
    got = c.post("/memories/recall", headers=auth, json={"query": "a red circle", "user": "ann", "k": 5}).json()
    assert [m["id"] for m in got] == [mine]
    assert [m["user"] for m in c.get("/memories", headers=auth, params={"user": "bob"}).json()] == ["bob"]
    patched = c.patch(f"/memories/{mine}", headers=auth, json={"text": "The green star is Ann's.", "user": "ann"})
    assert patched.status_code == 200 and patched.json()["metadata"] == {"topic": "shapes"}
    other = theirs["memory"]["id"]
    assert c.patch(f"/memories/{other}", headers=auth, json={"text": "x", "user": "ann"}).status_code == 404
    assert c.delete(f"/memories/{other}", headers=auth, params={"user": "ann"}).status_code == 404
    assert c.post("/memories", headers=auth, json={"text": ""}).status_code == 422
    assert c.post("/memories", headers=auth, json={"text": "x", "colour": "red"}).status_code == 422  # unknown field
    assert c.delete(f"/memories/{mine}", headers=auth, params={"user": "ann"}).json() == {"forgotten": 1}
    # the search page's routes never show notes
    assert not any(h["path"].startswith("memory:") for h in c.get("/search", headers=auth,
                                                                   params={"q": "Bob's", "type": "text"}).json())


def test_indexing_over_http_only_under_allowed_folders_while_searches_go_on(index, tmp_path):
    import shutil
    import threading

    from media import make_media

    shutil.copytree(index[0], tmp_path / "idx")
    make_media(tmp_path / "inbox")
    auth = {"Authorization": "Bearer t0k"}
    c = TestClient(create_app(tmp_path / "idx", token="t0k", allow_index=[str(tmp_path / "inbox")]))
    before = c.get("/stats", headers=auth).json()["files_indexed"]
    r = c.post("/index", headers=auth, json={"paths": [str(index[1]["red"])]})
    assert r.status_code == 403 and "not under a folder" in r.json()["error"]
    r = c.post("/index", headers=auth, json={"paths": [str(tmp_path / "inbox") + "\u0000x"]})
    assert r.status_code == 422 and "not a usable path" in r.json()["error"]
    searched = []
    done = threading.Event()

    def search_meanwhile():
        while not done.is_set():
            searched.append(c.get("/search", headers=auth, params={"q": "a red circle", "k": 1}).status_code)

    t = threading.Thread(target=search_meanwhile)
    t.start()
    try:
        r = c.post("/index", headers=auth, json={"paths": [str(tmp_path / "inbox")]})
    finally:
        done.set()
        t.join()
    assert r.status_code == 200 and r.json()["files_new"] > 0, r.text
    assert searched and set(searched) == {200}
    added = r.json()["files_new"] + r.json()["files_copied"]  # the inbox repeats some of the index's files
    assert c.get("/stats", headers=auth).json()["files_indexed"] == before + added


def test_a_slow_read_holds_up_no_search_and_readers_share_one_space(index, tiny_space_dir, tmp_path, monkeypatch):
    import threading
    import time

    idx = tmp_path / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_dir))
    eng.index([index[1]["red"]])
    release, entered = threading.Event(), threading.Event()
    real_stats = mmr.Engine.stats

    def slow_stats(self):  # a long view (clusters, a map) that holds its reader
        entered.set()
        release.wait(30)
        return real_stats(self)

    monkeypatch.setattr(mmr.Engine, "stats", slow_stats)
    for readers in (2, 1):
        app = create_app(idx, readers=readers)
        c, ctx = TestClient(app), app.state.ctx
        entered.clear()
        release.clear()
        with ThreadPoolExecutor(max_workers=2) as pool:
            slow = pool.submit(c.get, "/stats")
            assert entered.wait(30)
            search = pool.submit(c.get, "/search", params={"q": "a red circle", "k": 3})
            if readers == 2:  # a second reader answers while the first is busy
                assert search.result(timeout=60).status_code == 200
                assert not slow.done()
            else:  # one reader: the search waits its turn
                time.sleep(0.5)
                assert not search.done()
            release.set()
            assert slow.result(timeout=60).status_code == 200 and search.result(timeout=60).status_code == 200
        assert ctx.reader.opened == readers
        if readers == 2:
            first, second = ctx.reader._opened
            assert second._space is first._space is not None  # one copy of the models
            eng.index([index[1]["blue"]])  # a commit: every reader sees it at its next request
            with ctx.reader() as a, ctx.reader() as b:
                assert {a, b} == {first, second}
                assert [len(r.search("x", types=["image"], k=10)) for r in (a, b)] == [2, 2]
    eng.close()
    with pytest.raises(mmr.UsageError, match="readers must be a positive integer"):
        create_app(idx, readers=0)
