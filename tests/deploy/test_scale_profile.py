"""The compose profile `scale` without a Docker engine: PostgreSQL, two or more FlipMatch replicas sharing it, nginx in
front listing every replica, and Prometheus finding every replica (promtool checks the config with each replica as a
target, as Docker's DNS resolves the alias in that profile)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from stack_files import PROMETHEUS_CONFIG, REPO, environment, load_compose, resolve_defaults, volume_mounts

NGINX_CONFIG = REPO / "deploy" / "nginx" / "nginx.conf"


@pytest.fixture(scope="module")
def compose():
    return load_compose()


def replicas(compose) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if name.startswith("flipmatch-replica-")}


def test_profile_has_postgres_replicas_and_nginx(compose):
    services = compose["services"]
    scale = {name for name, svc in services.items() if "scale" in svc.get("profiles", [])}
    assert {"postgres", "nginx"} <= scale and len(replicas(compose)) >= 2
    assert set(replicas(compose)) <= scale
    postgres = services["postgres"]
    assert re.search(r":\d+\.\d+$", postgres["image"]), "pin the PostgreSQL image"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert environment(postgres)["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert ("postgres-data", "/var/lib/postgresql/data") in volume_mounts(postgres)


def test_every_replica_shares_the_database_and_holds_no_corpora_volume(compose):
    for name, svc in replicas(compose).items():
        env = environment(svc)
        assert env["FLIPMATCH_STORE__URL"].startswith("postgresql://") and "@postgres:" in env["FLIPMATCH_STORE__URL"]
        assert ":" not in env["FLIPMATCH_STORE__URL"].split("//")[1].split("@")[0], f"{name}: no password in the URL"
        secret = env["FLIPMATCH_STORE__PASSWORD_FILE"].removeprefix("/run/secrets/")
        assert secret in svc["secrets"] and secret in compose["secrets"]
        assert env["FLIPMATCH_AUTH__ADMIN_KEY_FILE"] == "/run/secrets/flipmatch_admin_key"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert not svc.get("ports"), f"{name}: nginx publishes the API, replicas publish nothing"
        assert "corpora" not in {src for src, _ in volume_mounts(svc)}, f"{name}: corpora live in PostgreSQL"
        assert "flipmatch" in svc["networks"]["default"]["aliases"], f"{name}: Prometheus finds replicas by alias"
        assert "scale" in svc["profiles"] and svc["image"].endswith(":cpu")


def test_nginx_balances_over_every_replica(compose):
    nginx = compose["services"]["nginx"]
    assert ("./deploy/nginx/nginx.conf", "/etc/nginx/nginx.conf") in volume_mounts(nginx)
    (published,) = nginx["ports"]
    assert resolve_defaults(published).endswith(":8000")
    upstream = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", NGINX_CONFIG.read_text(), flags=re.M)
    assert sorted(host for host, _ in upstream) == sorted(replicas(compose))
    assert {port for _, port in upstream} == {"8000"}
    assert set(nginx["depends_on"]) == set(replicas(compose))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not on PATH (apt-get install prometheus)")
def test_prometheus_config_with_every_replica_as_a_target_passes_promtool(compose, tmp_path):
    """In the scale profile the `flipmatch` alias resolves to every replica: the job's targets are exactly them."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "flipmatch"]
    (sd,) = job.pop("dns_sd_configs")
    aliased = [name for name, svc in replicas(compose).items()
               if sd["names"][0] in svc["networks"]["default"]["aliases"]]
    assert sorted(aliased) == sorted(replicas(compose))
    job["static_configs"] = [{"targets": [f"{name}:{sd['port']}" for name in aliased]}]
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    path = tmp_path / "prometheus-scale.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
