"""The OpenAPI document tells the truth: a schema-driven fuzz (schemathesis: valid and invalid requests to every
route, made from the document itself) finds no status code, content type or body the document does not
declare, and no server error. The app runs with a token (sent by the fuzz) and a folder it may index, so the
write routes run too."""
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

import mmretrieval as mmr  # noqa: E402
from mmretrieval.server.app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"
TOKEN = "fuzz-token"


def _app():
    """The app over an index of the demo with a note, built when pytest collects this file (schemathesis reads
    the document at import; its fixture-based loader does not run under this pytest), removed at exit."""
    import atexit
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mmr-api-schema-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    shutil.copytree(DEMO / "docs", base / "inbox")
    with mmr.Engine(base / "idx", model="tiny") as eng:
        eng.index([DEMO / "images", DEMO / "sounds", base / "inbox"])
        eng.remember("The user's logo is a red circle.", user="ann")
    return create_app(base / "idx", token=TOKEN, allow_index=[str(base / "inbox")], max_upload=2_000_000)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_declared(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=_checks())
