"""Real processes for tests/deploy: the service (`python -m service`, as the image runs it) and Prometheus,
both on loopback, with bounded polling and a kill in every exit path."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from stack_files import ALERTS, PROMETHEUS_CONFIG, REPO

from tests.fixtures.server import free_port, running

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25,
             alive: Callable[[], str | None] = lambda: None) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline or when `alive` says
    the process under test died (it returns the reason)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        dead = alive()
        if dead:
            raise AssertionError(f"{what}: {dead}")
        try:
            value = check()
        except (OSError, urllib.error.URLError, ValueError, KeyError) as err:
            last_error, value = err, None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last error: {last_error!r})")


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def service_env(*, model_path: Path, data_dir: Path, port: int, admin_key_file: Path) -> dict[str, str]:
    """The process environment with our FLIPMATCH_* only: settings the machine happens to have never leak in."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FLIPMATCH_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update({
        "FLIPMATCH_MODEL_PATH": str(model_path),
        "FLIPMATCH_DATA_DIR": str(data_dir),
        "FLIPMATCH_HOST": "127.0.0.1",
        "FLIPMATCH_PORT": str(port),
        "FLIPMATCH_DEVICE": "cpu",
        # As compose passes it: the admin key as a file, no dev mode.
        "FLIPMATCH_AUTH__ADMIN_KEY_FILE": str(admin_key_file),
        "FLIPMATCH_DEMO__PRELOAD": "false",
    })
    return env


@contextlib.contextmanager
def running_service(model_path: Path, workdir: Path, *, timeout: float = 240.0) -> Iterator[str]:
    """`python -m service` on a free loopback port; yields its base URL once /health/ready answers 200."""
    port = free_port()
    key_file = workdir / "admin_key"
    key_file.write_text("deploy-test-admin-key\n")
    env = service_env(model_path=model_path, data_dir=workdir / "data", port=port, admin_key_file=key_file)
    base = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "service"], ready_url=f"{base}/health/ready", log=workdir / "service.log",
                 env=env, cwd=workdir, timeout=timeout, interval=0.5, name="service"):
        yield base


def prometheus_config_for(target: str, rules: Path = ALERTS) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the flipmatch job pointed at `target` and 1s intervals.

    Everything else (job name, metrics path, rule files) is the file compose mounts.
    """
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(rules.parent / name) for name in config["rule_files"]]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "flipmatch"]
    for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
        del job[key]
    job["static_configs"] = [{"targets": [target]}]
    return config


@contextlib.contextmanager
def running_prometheus(config: dict[str, Any], workdir: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """The real `prometheus` binary on a free loopback port with temporary storage; yields its base URL."""
    port = free_port()
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    args = ["prometheus", f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    base = f"http://127.0.0.1:{port}"
    with running(args, ready_url=f"{base}/-/ready", log=workdir / "prometheus.log", cwd=workdir, timeout=timeout,
                 interval=0.25, name="prometheus"):
        yield base


def promql(base: str, query: str) -> list[dict[str, Any]]:
    """Instant query through Prometheus' HTTP API; the result vector."""
    status, body = http("GET", f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}")
    payload = json.loads(body)
    if status != 200 or payload.get("status") != "success":
        raise ValueError(f"query {query!r} failed: {status} {payload}")
    return payload["data"]["result"]


def scalar(base: str, query: str) -> float | None:
    """The single value of a query whose result has at most one series; None when it has none."""
    result = promql(base, query)
    if not result:
        return None
    assert len(result) == 1, f"{query!r} returned {len(result)} series"
    return float(result[0]["value"][1])
