"""The hardening tests' view of the real service: `LiveServer` (tests/fixtures/server.py's ServiceProcess: start,
wait ready, SIGKILL / SIGTERM, restart on the same data folder), a tiny urllib client and a resident-memory probe."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.server import ADMIN_KEY as ADMIN
from tests.fixtures.server import REPO, ServiceProcess, free_port  # noqa: F401 - re-exported for the suites

QUERY = "hardening-query-key-81d0e3"
LiveServer = ServiceProcess  # the one start-and-poll helper (tests/fixtures/server.py)


def call(method: str, url: str, body: Any = None, *, key: str | None = ADMIN, timeout: float = 30.0,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body or None). Connection errors propagate (OSError)."""
    data = json.dumps(body).encode() if body is not None else None
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    if data is not None:
        sent["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
    except urllib.error.HTTPError as err:
        payload = err.read()
        try:
            return err.code, json.loads(payload) if payload else None
        except ValueError:
            return err.code, payload.decode(errors="replace")


def tree_memory_bytes(pid: int) -> int:
    """Memory of a server and its forward processes: the sum of their proportional set sizes (PSS), so the
    weights the children share copy-on-write with the parent count once, not once per process (Linux /proc;
    no psutil needed)."""
    total = 0
    for p in [pid, *child_pids(pid)]:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) * 1024
        except (FileNotFoundError, ProcessLookupError, StopIteration):  # a child that just exited
            pass
    return total


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []


def record_figures(file: str, name: str, figures: dict[str, Any]) -> None:
    """Merge measured figures into $FLIPMATCH_FIGURES_DIR/<file> when that variable is set (docs/reliability.md
    is written from them); otherwise nothing is written, so test runs leave the tree clean."""
    folder = os.environ.get("FLIPMATCH_FIGURES_DIR")
    if not folder:
        return
    path = Path(folder) / file
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=1))
