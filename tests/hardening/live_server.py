"""The real service as a subprocess on 127.0.0.1 for the hardening tests: start, wait ready (bounded polling),
SIGKILL / SIGTERM, restart on the same data folder. Also a tiny urllib client and a resident-memory probe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.fixtures.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
ADMIN = "hardening-admin-key-5f2c9a"
QUERY = "hardening-query-key-81d0e3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class LiveServer:
    """One `python -m service` process (or `launcher`, a script that patches then runs it)."""

    def __init__(self, model: Path, data_dir: Path, log: Path, *, launcher: Path | None = None,
                 **env: str | None) -> None:
        self.model, self.data_dir, self.log, self.launcher, self.env = model, data_dir, log, launcher, env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, *, timeout: float = 120.0) -> str:
        port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FLIPMATCH_")}
        environment.update({"FLIPMATCH_MODEL_PATH": str(self.model), "FLIPMATCH_DATA_DIR": str(self.data_dir),
                            "FLIPMATCH_HOST": "127.0.0.1", "FLIPMATCH_PORT": str(port), "FLIPMATCH_DEVICE": "cpu",
                            "FLIPMATCH_DTYPE": "float32", "FLIPMATCH_AUTH__ADMIN_KEY": ADMIN,
                            "FLIPMATCH_CPU_THREADS": "1", **self.env})
        environment = {k: v for k, v in environment.items() if v is not None}  # None: leave the variable unset
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH")]))
        command = [sys.executable, str(self.launcher)] if self.launcher else [sys.executable, "-m", "service"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"server exited {self.process.returncode}:\n{self.tail()}"
            with contextlib.suppress(OSError):
                if call("GET", f"{self.url}/health/ready", timeout=2)[0] == 200:
                    return self.url
            assert time.monotonic() < deadline, f"not ready in {timeout}s:\n{self.tail()}"
            time.sleep(0.05)  # poll interval, bounded by the deadline

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a power cut, an OOM kill)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, *, timeout: float = 60.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """Best effort for fixtures' finally blocks: SIGTERM, then SIGKILL if it hangs."""
        if self.process is not None:
            stop_process(self.process)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc; no psutil needed)."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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
