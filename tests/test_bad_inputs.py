"""Bad and odd input: each file is indexed or skipped with a clear reason; nothing ends the run."""
import os
import re

import pytest

import mmretrieval as mmr
from bad_inputs import make_bad_folder
from mmretrieval.cli import main


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "lib"
    exp = make_bad_folder(root)
    (root / "loop").mkdir()
    os.symlink(root, root / "loop" / "back-to-root")          # a symlink loop
    os.symlink(root / "nowhere.png", root / "dangling.png")    # a dangling link
    return root, exp


def test_every_bad_file_is_reported_and_every_good_file_indexed(tmp_path, bad, tiny_space_dir):
    root, exp = bad
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rep = eng.index([root])
    skipped = {os.path.relpath(p, root): r for p, r in rep.skipped}
    indexed = {os.path.relpath(p, root) for p in eng.store.catalog.files() if
               eng.store.catalog.files()[p].status == "indexed"}
    for name, want in exp.items():
        if want == "ok":
            assert name in indexed, (name, skipped.get(name))
        else:
            assert name in skipped, name
            assert re.search(want, skipped[name]), (name, skipped[name])
    assert "dangling.png" in skipped and "cannot access" in skipped["dangling.png"]
    # the symlink loop was followed once, not forever, and indexed nothing twice
    assert not any("back-to-root" in p for p in indexed)
    hour = [h for h in eng.search("x", types=["audio"], k=5000) if h.path.endswith("hour-long.flac")]
    assert len(hour) == 1800 and max(h.locator["end"] for h in hour) == pytest.approx(3600.0)
    assert eng.check()["consistent"]
    # a second run retries nothing unchanged (what cannot even be listed is reported again)
    again = eng.index([root])
    assert again.items_added == 0 and [p for p, _ in again.skipped] == [str(root / "dangling.png")]
    assert len(again.still_skipped) == len(rep.skipped) - 1


def test_cli_exits_zero_and_says_it_skipped(tmp_path, bad, tiny_space_dir, capsys):
    root, exp = bad
    code = main(["index", str(root), "--index", str(tmp_path / "idx"), "--model", str(tiny_space_dir)])
    out, err = capsys.readouterr()
    n_bad = sum(1 for v in exp.values() if v != "ok") + 1  # + the dangling link
    assert code == 0 and f"skipped {n_bad} file(s)" in out and "Traceback" not in err
    code = main(["search", "a red circle", "--index", str(tmp_path / "idx"), "--type", "image", "-k", "100"])
    out, _ = capsys.readouterr()
    lines = [line for line in out.splitlines() if line[:3].strip().isdigit()]  # hits, not the relevance rule
    n_images = sum(1 for k, v in exp.items() if v == "ok" and k.endswith((".png", ".jpg", ".gif", ".webp")))
    assert code == 0 and len(lines) == n_images  # one line a hit, whatever the file names
    assert any("'" in ln and "new\\nline.png" in ln for ln in lines)  # the newline is shown quoted


def test_unreadable_file_and_folder(tmp_path, tiny_space_dir, monkeypatch):
    """Permission denied (simulated: tests run as root, who may read anything)."""
    import mmretrieval.ingest.decode as decode
    import mmretrieval.ingest.walk as walk
    from mmretrieval.synth import shape_image

    root = tmp_path / "lib"
    (root / "private").mkdir(parents=True)
    shape_image("red").save(root / "secret.png")
    shape_image("blue").save(root / "fine.png")
    shape_image("green").save(root / "private" / "hidden.png")
    real_open, real_scandir = open, os.scandir

    def fake_open(path, *a, **k):
        if str(path).endswith("secret.png"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    def fake_scandir(path):
        if str(path).endswith("private"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(decode, "open", fake_open, raising=False)
    monkeypatch.setattr(walk.os, "scandir", fake_scandir)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rep = eng.index([root])
    skipped = dict(rep.skipped)
    assert "Permission denied" in skipped[str(root / "secret.png")]
    assert "cannot list folder: Permission denied" in skipped[str(root / "private")]
    assert rep.added == {"image": 1}


def test_file_deleted_or_changed_during_the_run(tmp_path, tiny_space_dir, monkeypatch):
    import mmretrieval.ingest.plan as planning  # the plan step walks the roots
    from mmretrieval.synth import shape_image

    root = tmp_path / "lib"
    root.mkdir()
    for c in ("red", "green", "blue"):
        shape_image(c).save(root / f"{c}.png")
    real_walk = planning.walk

    def walk_then_touch(roots):
        entries = list(real_walk(roots))
        os.remove(root / "red.png")                     # vanishes after it was listed
        shape_image("yellow").save(root / "green.png")  # changes after it was listed
        yield from entries

    monkeypatch.setattr(planning, "walk", walk_then_touch)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rep = eng.index([root])
    assert "No such file" in dict(rep.skipped)[str(root / "red.png")]
    monkeypatch.setattr(planning, "walk", real_walk)
    rep = eng.index([root])  # next run: the vanished file is swept, the changed one re-embedded
    assert rep.files_removed == 1 and rep.files_changed == 1
    assert eng.check()["consistent"]
    paths = {h.path for h in eng.search("x", types=["image"], k=10)}
    assert paths == {str(root / "green.png"), str(root / "blue.png")}
