"""Schema fuzzing with schemathesis's own CLI, as a client team would run it: every check (`--checks all`) and
every phase (examples, coverage, fuzzing, stateful with the document's links) against the real service on
127.0.0.1 (tiny artifact, no demo corpora). Two configurations (reads open; reads need the query key) times
three callers (no key, the query key, the admin key). The operations come from /openapi.json, so a new route
is fuzzed without touching this file. Passes when the CLI reports no failure and no error.

Bounded: a fixed number of examples per operation, a fixed seed, one worker, a per-request timeout, and a
wall-clock limit on each CLI run. Figures go to $FLIPMATCH_FIGURES_DIR/fuzz.json when set (docs/reliability.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("schemathesis")
from live_server import ADMIN, QUERY, REPO, LiveServer, record_figures  # noqa: E402

PHASES = ("examples", "coverage", "fuzzing", "stateful")
# Examples per operation and phase: the admin key reaches every code path, so it gets the most; without a
# (valid) key most operations stop at 401/403, and fewer cases cover that.
EXAMPLES = {"admin": 10, "query": 5, "none": 5}
CLI_TIMEOUT_S = 480  # one run takes ~15 s on an idle 2-core VM; the bound leaves room for a busy one
CONFIGS = {"reads-open": {}, "reads-need-query-key": {"FLIPMATCH_AUTH__QUERY_KEY": QUERY}, "postgres-store": {}}
# Every key in both auth configurations on the embedded store; once more (admin key: every code path) with the
# corpora in PostgreSQL, the store replicas share.
CASES = [(c, k) for c in ("reads-open", "reads-need-query-key") for k in ("none", "query", "admin")]
CASES.append(("postgres-store", "admin"))
KEYS = {"none": None, "query": QUERY, "admin": ADMIN}
_REQUESTS = re.compile(r'^flipmatch_requests_total\{.*status="(\d+)".*\} ([0-9.e+]+)$', re.M)
_LINKS = re.compile(r"API Links:\s+(\d+) covered / (\d+) selected")


@pytest.fixture(scope="module")
def servers(
    tiny_artifact: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], LiveServer]]:
    """One live server per configuration, started on first use."""
    started: dict[str, LiveServer] = {}

    def get(config: str) -> LiveServer:
        if config not in started:
            root = tmp_path_factory.mktemp(f"fuzz-{config}")
            extra = dict(CONFIGS[config])
            if config == "postgres-store":  # skips with the reason where no PostgreSQL can be started
                extra["FLIPMATCH_STORE__URL"] = str(request.getfixturevalue("postgres_cluster").create_database())
            server = LiveServer(tiny_artifact, root / "data", root / "server.log", FLIPMATCH_DEMO__PRELOAD="false",
                                FLIPMATCH_LOG_LEVEL="warning", **extra)
            started[config] = server
            url = server.start(timeout=300)  # generous: a busy CI machine starts python + torch slowly
            # The first /openapi.json builds the document; on a starved machine that outlasted the CLI's schema
            # download ("Schema Loading Error"). Built here, it is cached before the CLI asks.
            with urllib.request.urlopen(f"{url}/openapi.json", timeout=300) as response:
                assert response.status == 200
        return started[config]

    yield get
    for server in started.values():
        server.stop()


def _statuses(url: str) -> dict[str, float]:
    """flipmatch_requests_total summed by status: the server's own count of what the fuzzer sent."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for status, value in _REQUESTS.findall(text):
        counts[status] = counts.get(status, 0) + float(value)
    return counts


@pytest.mark.slow
@pytest.mark.parametrize(("config", "key"), CASES)
def test_schemathesis_cli_finds_nothing(servers, config, key, tmp_path):
    server = servers(config)
    before = _statuses(server.url)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
               "--phases", ",".join(PHASES), "--max-examples", str(EXAMPLES[key]),
               "--seed", "20261129", "--workers", "1", "--request-timeout", "60", "--wait-for-schema", "120",
               "--no-color",
               "--report", "json", "--report-json-path", str(report)]
    if KEYS[key]:
        command += ["-H", f"Authorization: Bearer {KEYS[key]}"]
    started = time.monotonic()
    # From the repository root, so schemathesis.toml (its hooks and its documented exceptions) applies. No --checks:
    # every check runs by default, and a CLI --checks all would override the per-operation exceptions.
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    wall = time.monotonic() - started
    output = run.stdout + run.stderr
    assert report.exists(), output[-6000:]
    result = json.loads(report.read_text())
    assert result["complete"] and result["errors"] == [], output[-6000:]
    after = _statuses(server.url)
    statuses = {s: int(after.get(s, 0) - before.get(s, 0)) for s in sorted(after) if after[s] > before.get(s, 0)}
    # /openapi.json itself is one of the requests counted; every operation of the document was tested.
    operations = result["operations"]
    links = _LINKS.search(output)
    record_figures("fuzz.json", f"{config}/{key}", {
        "requests": sum(statuses.values()), "statuses": statuses, "test_cases": result["test_cases"],
        "operations": operations["tested"], "phases": {p: result["phases"][p]["status"] for p in PHASES},
        "links_covered": [int(links.group(1)), int(links.group(2))] if links else None,
        "examples_per_operation": EXAMPLES[key], "wall_s": round(wall, 1)})

    assert result["failures"] == [] and result["errors"] == [], output[-6000:]
    assert run.returncode == 0, output[-6000:]
    assert operations["tested"] == operations["total"] >= 19
    assert {p: result["phases"][p]["status"] for p in PHASES} == dict.fromkeys(PHASES, "success"), output[-3000:]
    assert links, output[-3000:]
    if key == "admin":  # only the admin key can create the corpora and entries the links start from
        assert int(links.group(1)) > 0, "the stateful phase followed no link"
    assert not any(int(s) >= 500 for s in statuses), statuses
    assert sum(statuses.values()) >= 300
