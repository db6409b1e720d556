"""The real server: `python -m service` (uvicorn) on 127.0.0.1 with the tiny artifact. Corpora written before a
restart answer identically after it; demo corpora load once and reload fast. Bounded polling, no sleeps-as-waits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.server import ADMIN_KEY, ServiceProcess, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
ADMIN = ADMIN_KEY


def request(method: str, url: str, body: Any = None, *, raw: bytes | None = None, content_type: str | None = None,
            timeout: float = 30.0) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    if data is not None:
        headers["Content-Type"] = content_type or "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@contextlib.contextmanager
def server(model: Path, data_dir: Path, log: Path, *, timeout: float = 120.0, **env: str) -> Iterator[str]:
    """Start the service, yield its URL once /health/ready is 200, stop it with SIGTERM (as an orchestrator)."""
    process = ServiceProcess(model, data_dir, log, **env)
    shutdowns_before = log.read_text().count("Application shutdown complete") if log.exists() else 0
    try:
        yield process.start(timeout=timeout)
    finally:
        process.stop()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete, so -15 is a clean exit too.
    assert process.process is not None
    shutdowns = log.read_text().count("Application shutdown complete") - shutdowns_before
    clean = process.process.returncode in (0, -signal.SIGTERM) and shutdowns == 1
    assert clean, f"unclean shutdown ({process.process.returncode}):\n{log.read_text()[-4000:]}"


ENTRIES = [
    {"id": "pin", "question": "How do I reset my PIN?", "alt_questions": ["I forgot my pin"], "answer": "App."},
    {"id": "card", "question": "Where is my new card?", "alt_questions": ["card not arrived"], "answer": "Mail."},
    {"id": "fee", "question": "What does a transfer cost?", "answer": "1 EUR."},
    {"id": "limit", "question": "What is my daily ATM limit?", "answer": "500 EUR."},
]
QUERIES = ["forgot pin", "my card has not arrived", "transfer fees", "cash withdrawal limit"]


def search(url: str) -> list[Any]:
    status, body = request("POST", f"{url}/v1/corpora/faq/search", {"query": QUERIES, "top_k": 3})
    assert status == 200, body
    return [(r["outcome"], [(c["id"], round(c["score"], 5)) for c in r["candidates"]]) for r in body["results"]]


def test_corpora_survive_a_restart(tiny_artifact, tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    with server(tiny_artifact, data_dir, log) as url:
        assert request("POST", f"{url}/v1/corpora", {"name": "faq", "clarify_margin": 0.0})[0] == 201
        jsonl = "\n".join(json.dumps(e) for e in ENTRIES).encode()
        status, body = request("POST", f"{url}/v1/corpora/faq/import", raw=jsonl, content_type="application/x-ndjson")
        assert (status, body["entries"], body["vectors"]) == (200, 4, 6)
        assert request("PUT", f"{url}/v1/corpora/faq/entries/extra", {"question": "Can I close my account?",
                                                                       "answer": "Yes."})[0] == 200
        assert request("DELETE", f"{url}/v1/corpora/faq/entries/extra")[0] == 204
        before = search(url)
        status, info = request("GET", f"{url}/v1/info")
        assert status == 200 and info["dimension"] == 32
    assert (data_dir / "flipmatch.sqlite3").exists() and (data_dir / "indexes" / "faq.faiss").exists()

    with server(tiny_artifact, data_dir, log) as url:
        assert search(url) == before
        status, corpus = request("GET", f"{url}/v1/corpora/faq")
        assert (status, corpus["entries"], corpus["vectors"], corpus["status"]) == (200, 4, 6, "ready")
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        assert 'flipmatch_corpus_vectors{corpus="faq"} 6.0' in metrics
    assert "from=index file" in log.read_text()  # the second start read the saved index, no rebuild


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "medquad" / "medquad.jsonl").exists(), reason="bundled datasets not present")
def test_demo_corpora_load_once(tiny_artifact, tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    demo = {"FLIPMATCH_DEMO__PRELOAD": "true", "FLIPMATCH_DEMO__DATA_DIR": str(SHARED_DATA),
            "FLIPMATCH_DEMO__MEDQUAD_MAX_ENTRIES": "300"}
    started = time.monotonic()
    with server(tiny_artifact, data_dir, log, timeout=300, **demo) as url:
        first_start = time.monotonic() - started
        corpora = {c["name"]: c for c in request("GET", f"{url}/v1/corpora")[1]["data"]}
        assert corpora["banking77"]["entries"] == 77 and corpora["banking77"]["vectors"] == 77 * 21
        assert corpora["medquad"]["entries"] == 300
        status, body = request("POST", f"{url}/v1/corpora/banking77/search", {"query": "I am still waiting on my "
                                                                                       "card?"})
        assert status == 200 and body["results"][0]["candidates"][0]["id"] == "card_arrival"
        # Both demo corpora calibrated themselves at load: banking77 from its alternates, medquad (no alternates)
        # on negatives only; the thresholds in force are the calibrated ones.
        status, calibration = request("GET", f"{url}/v1/corpora/banking77/calibration")
        assert status == 200 and calibration["source"] == "self" and calibration["positives"] > 1000
        assert calibration["sources"]["negatives"]["other_corpora"] > 0
        assert corpora["banking77"]["answer_threshold"] == calibration["answer_threshold"]
        assert request("GET", f"{url}/v1/corpora/medquad/calibration")[1]["positives"] == 0
    started = time.monotonic()
    with server(tiny_artifact, data_dir, log, **demo) as url:
        second_start = time.monotonic() - started
        assert request("GET", f"{url}/v1/corpora/medquad")[1]["entries"] == 300
    assert second_start < 60, f"restart took {second_start:.1f}s (first start {first_start:.1f}s)"
    assert log.read_text().count("demo corpus loaded name=banking77") == 1
    assert log.read_text().count("calibrated corpus=banking77") == 1  # kept across the restart, not redone


def test_a_new_model_reembeds_stored_corpora(tiny_artifact, build_tiny_encoder, tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    with server(tiny_artifact, data_dir, log) as url:
        request("POST", f"{url}/v1/corpora", {"name": "faq"})
        assert request("POST", f"{url}/v1/corpora/faq/entries", ENTRIES)[0] == 200
    new_model = build_tiny_encoder(dense=16)  # another model, another dimension
    with server(new_model, data_dir, log) as url:
        fingerprint = request("GET", f"{url}/v1/info")[1]["fingerprint"]
        deadline = time.monotonic() + 60
        while (corpus := request("GET", f"{url}/v1/corpora/faq")[1])["status"] != "ready":
            assert corpus["status"] == "reembedding" and time.monotonic() < deadline, corpus
            time.sleep(0.1)  # poll interval, bounded by the deadline
        assert (corpus["fingerprint"], corpus["entries"], corpus["vectors"]) == (fingerprint, 4, 6)
        status, body = request("POST", f"{url}/v1/corpora/faq/search", {"query": "Where is my new card?"})
        assert status == 200 and body["results"][0]["candidates"][0]["id"] == "card"
        assert body["results"][0]["candidates"][0]["score"] > 0.999
    assert "re-embedded corpus=faq entries=4" in log.read_text()


def test_a_model_that_cannot_serve_stops_the_process(tiny_artifact, tmp_path):
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIPMATCH_")}
    env.update({"FLIPMATCH_MODEL_PATH": str(tiny_artifact), "FLIPMATCH_DATA_DIR": str(tmp_path / "data"),
                "FLIPMATCH_HOST": "127.0.0.1", "FLIPMATCH_PORT": str(free_port()),
                "FLIPMATCH_BATCHING__MAX_BATCH_TOKENS": "32",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    with log.open("wb") as out:
        result = subprocess.run([sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, timeout=120)
    assert result.returncode != 0
    assert "FLIPMATCH_BATCHING__MAX_BATCH_TOKENS=32 is below the model's max sequence length" in log.read_text()
