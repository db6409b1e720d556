"""The OpenAPI document as a contract: a client generated from the live server's /openapi.json by
openapi-python-client (a dev extra) creates a corpus, upserts, searches and exports against the real server on
127.0.0.1. If the document stops describing what the server does, generation or a call fails.

The import operation (two file bodies, text/csv and application/x-ndjson) is generated too, but
openapi-python-client 0.29 writes a module for a multi-media-type body that does not import (its signature names
`Unset` without importing it), so the import goes through the generated client's own HTTP session, with its
base URL and token, as the documented media types."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.hardening.live_server import ADMIN

pytest.importorskip("openapi_python_client")

# Import bodies are files: the generator sends `format: binary` bodies of these media types as raw bytes.
CONFIG = """\
project_name_override: flipmatch-client
package_name_override: flipmatch_client
post_hooks: []
content_type_overrides:
  text/csv: application/octet-stream
  application/x-ndjson: application/octet-stream
"""


@pytest.fixture(scope="module")
def client_package(live_service, tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    with urllib.request.urlopen(f"{live_service}/openapi.json", timeout=30) as response:
        (root / "openapi.json").write_bytes(response.read())
    (root / "config.yaml").write_text(CONFIG)
    generator = shutil.which("openapi-python-client", path=str(sys.executable).rsplit("/", 1)[0])
    assert generator, "openapi-python-client is not installed (dev extras)"
    run = subprocess.run([generator, "generate", "--path", str(root / "openapi.json"), "--meta", "none",
                          "--output-path", str(root / "flipmatch_client"), "--config", str(root / "config.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # The generator warns about (and skips) anything in the document it cannot turn into code.
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(root))
    try:
        yield __import__("flipmatch_client")
    finally:
        sys.path.remove(str(root))


def spec_body(package, media: str) -> bytes:
    """The import example the document gives for `media` (so the document's own example must import)."""
    spec = json.loads((Path(package.__file__).parents[1] / "openapi.json").read_text())
    return spec["paths"]["/v1/corpora/{name}/import"]["post"]["requestBody"]["content"][media]["example"].encode()


def test_generated_client_round_trip(client_package, live_service):
    from flipmatch_client import AuthenticatedClient
    from flipmatch_client.api.corpora import create_corpus, get_corpus
    from flipmatch_client.api.entries import export_entries, upsert_entries, upsert_entry
    from flipmatch_client.api.search import search_corpus
    from flipmatch_client.models import (
        CorpusCreate,
        CorpusPublic,
        EntryCreate,
        EntryFields,
        ExportEntriesFormat,
        SearchRequest,
        SearchResponse,
        WriteResponse,
    )

    client = AuthenticatedClient(base_url=live_service, token=ADMIN, raise_on_unexpected_status=True)
    created = create_corpus.sync_detailed(client=client, body=CorpusCreate(name="cards", answer_threshold=0.5))
    assert created.status_code == 201 and isinstance(created.parsed, CorpusPublic)
    assert created.parsed.name == "cards" and created.parsed.entries == 0

    written = upsert_entries.sync("cards", client=client, body=[
        EntryCreate(id="pin", question="How do I reset my PIN?", alt_questions=["forgot my pin"], answer="App."),
        EntryCreate(id="lost", question="I lost my card", answer="Freeze it.")])
    assert isinstance(written, WriteResponse) and (written.entries, written.vectors) == (2, 3)
    one = upsert_entry.sync("cards", "arrival", client=client,
                            body=EntryFields(question="When will my card arrive?", answer="In 3-5 days."))
    assert isinstance(one, WriteResponse) and one.entries == 1
    body = spec_body(client_package, "text/csv")
    imported = client.get_httpx_client().post("/v1/corpora/cards/import", content=body,
                                              headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200 and WriteResponse.from_dict(imported.json()).entries == 1
    assert get_corpus.sync("cards", client=client).entries == 4

    found = search_corpus.sync("cards", client=client, body=SearchRequest(query="I lost my card", top_k=2))
    assert isinstance(found, SearchResponse) and found.corpus == "cards"
    assert found.results[0].candidates[0].id == "lost"
    assert found.results[0].candidates[0].score == pytest.approx(1.0, abs=1e-4)

    exported = export_entries.sync_detailed("cards", client=client, format_=ExportEntriesFormat.JSONL)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in exported.content.decode().splitlines()]
    assert sorted(r["id"] for r in rows) == ["a1", "arrival", "lost", "pin"]
    assert next(r for r in rows if r["id"] == "pin")["alt_questions"] == ["forgot my pin"]
