"""docker-compose.yml checks without a Docker engine: it parses, everything it names exists or is declared,
and its environment, ports and paths agree with the service's settings, the image and Prometheus."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from stack_files import (
    CONTRACT_PORT,
    CONTRACT_SETTINGS,
    DOCKERFILE,
    GRAFANA,
    INTERPOLATION,
    PROMETHEUS_CONFIG,
    REPO,
    SERVICE_CONTAINERS,
    TRAINER_CONTAINERS,
    dockerfile_stages,
    environment,
    is_bind,
    key_values,
    load_compose,
    resolve_defaults,
    settings_env_names,
    volume_mounts,
)

# Settings the stack decides rather than passes through: the container's listen address and port (Prometheus
# and the published port point at them), where corpora and datasets are mounted, and where the admin key file is.
FIXED_BY_STACK = {
    "FLIPMATCH_HOST", "FLIPMATCH_PORT", "FLIPMATCH_DATA_DIR", "FLIPMATCH_DEMO__DATA_DIR",
    "FLIPMATCH_AUTH__ADMIN_KEY_FILE",
}
# Keys as plain values would sit in `docker inspect`; the stack passes them only as files.
PLAIN_SECRETS = {"FLIPMATCH_AUTH__ADMIN_KEY", "FLIPMATCH_AUTH__QUERY_KEY"}
TRAINER_COMMAND = ["flipmatch", "distill", "--config", "training/configs/default.yaml",
                   "--output", "/models/flipmatch-default"]


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def _service_env_names(services) -> set[str]:
    return {name for svc in SERVICE_CONTAINERS for name in environment(services[svc])}


def test_parses_with_expected_services_and_profiles(services):
    assert services["flipmatch-cpu"]["profiles"] == ["cpu"]
    assert services["flipmatch-gpu"]["profiles"] == ["gpu"]
    assert services["trainer"]["profiles"] == ["train"]
    assert services["trainer-gpu"]["profiles"] == ["train-gpu"]
    assert "profiles" not in services["prometheus"] and "profiles" not in services["grafana"]


def test_gpu_reservation_only_on_gpu_services(services):
    for name, svc in services.items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if name.endswith("-gpu"):
            assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}], name
        else:
            assert not devices, f"{name} must start on a host without a GPU"


def test_images_follow_their_variant(services):
    for name, svc in services.items():
        if "build" not in svc:
            continue
        variant = svc["build"]["args"]["VARIANT"]
        assert variant == ("cuda" if name.endswith("-gpu") else "cpu"), name
        assert resolve_defaults(svc["image"]).endswith(f":{variant}"), name
        assert (REPO / svc["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE


def test_volumes_declared_and_used(compose, services):
    declared = set(compose["volumes"])
    used = {src for svc in services.values() for src, _ in volume_mounts(svc) if not is_bind(src)}
    assert used <= declared, f"undeclared named volumes: {used - declared}"
    assert declared <= used, f"declared but unused volumes: {declared - used}"
    assert {"models", "corpora", "prometheus-data"} <= declared


def test_bind_mounts_inside_repo_exist(services):
    for name, svc in services.items():
        for source, target in volume_mounts(svc):
            if not is_bind(source):
                continue
            path = (REPO / source).resolve()
            if REPO in path.parents:
                assert path.exists(), f"{name}: {source} -> {target} does not exist"


def test_datasets_default_matches_both_packages(services):
    """Demo corpora (service) and training data (trainer) read the same bundled datasets folder."""
    sources = {src for svc in services.values() for src, dst in volume_mounts(svc) if dst == "/datasets"}
    assert sources == {"../shared/data"}, sources
    for name in SERVICE_CONTAINERS:
        assert environment(services[name])["FLIPMATCH_DEMO__DATA_DIR"] == "/datasets"
    for name in TRAINER_CONTAINERS:
        assert environment(services[name])["FLIPMATCH_DATASETS_DIR"] == "/datasets"
    try:
        from service.settings import DemoSettings
    except ImportError:
        return
    assert str(DemoSettings().data_dir) == "../shared/data"


def test_secrets_declared_used_and_kept_out_of_git(compose, services):
    declared = compose["secrets"]
    used = {s if isinstance(s, str) else s["source"] for svc in services.values() for s in svc.get("secrets", [])}
    assert used == set(declared)
    ignore = (REPO / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignore
    for name, spec in declared.items():
        path = Path(resolve_defaults(spec["file"]))
        assert path.parts[:2] == ("deploy", "secrets"), f"secret {name}: keep its file under deploy/secrets/"


def test_contract_settings_reachable(services):
    """Without importing the service: every setting the issue names is passed through or fixed by the stack."""
    for name in SERVICE_CONTAINERS:
        env = environment(services[name])
        assert all(n.startswith("FLIPMATCH_") for n in env), name
        passthrough = {n for n, v in env.items() if v is None}
        missing = CONTRACT_SETTINGS - passthrough - FIXED_BY_STACK - PLAIN_SECRETS
        assert not missing, f"{name}: {sorted(missing)}"
        assert {n for n, v in env.items() if v is not None} <= FIXED_BY_STACK


def test_every_setting_is_passed_through_or_fixed(services, service_settings_cls):
    """Each ServiceSettings field is either an operator pass-through or one the stack decides, never lost."""
    settings = settings_env_names(service_settings_cls)
    env = {}
    for name in SERVICE_CONTAINERS:
        env.update(environment(services[name]))
    unknown = set(env) - settings
    assert not unknown, f"compose sets variables ServiceSettings does not read: {sorted(unknown)}"
    passthrough = {n for n, v in env.items() if v is None}
    fixed = {n for n, v in env.items() if v is not None}
    assert fixed <= FIXED_BY_STACK, f"only the container layout is set in compose: {sorted(fixed - FIXED_BY_STACK)}"
    missing = settings - passthrough - FIXED_BY_STACK - PLAIN_SECRETS
    assert not missing, f"settings an operator cannot reach through compose: {sorted(missing)}"
    assert not (passthrough & (FIXED_BY_STACK | PLAIN_SECRETS))


def test_container_environment_builds_settings(services, service_settings_cls, monkeypatch, tmp_path):
    """The image ENV plus the compose values make a valid ServiceSettings that listens where Prometheus looks."""
    _, stages = dockerfile_stages(DOCKERFILE.read_text())
    image_env = {k: v for a in stages[-1].all("ENV") for k, v in key_values(a).items() if k.startswith("FLIPMATCH_")}
    compose_env = {k: v for k, v in environment(services["flipmatch-cpu"]).items() if v is not None}
    key_file = tmp_path / "flipmatch_admin_key"
    key_file.write_text("test-admin-key\n")
    compose_env["FLIPMATCH_AUTH__ADMIN_KEY_FILE"] = str(key_file)  # /run/secrets/... inside the container
    for name in [n for n in os.environ if n.upper().startswith("FLIPMATCH_")]:
        monkeypatch.delenv(name)
    for name, value in {**image_env, **compose_env}.items():
        monkeypatch.setenv(name, value)
    settings = service_settings_cls()
    assert settings.port == CONTRACT_PORT
    assert str(settings.data_dir) == "/data"
    assert settings.model_path == "/models/flipmatch-default"
    assert settings.auth.admin_key_file == key_file
    assert not settings.dev_mode


def test_no_plain_secrets_and_admin_key_from_secret(compose, services):
    for name in SERVICE_CONTAINERS:
        env = environment(services[name])
        assert not PLAIN_SECRETS & set(env), f"{name}: pass keys as *_FILE secrets"
        key_file = env["FLIPMATCH_AUTH__ADMIN_KEY_FILE"]
        secret = key_file.removeprefix("/run/secrets/")
        assert key_file.startswith("/run/secrets/") and secret in services[name]["secrets"]
        assert secret in compose["secrets"]
    for name, svc in services.items():
        for key, value in environment(svc).items():
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET", key) and value:
                assert key.endswith(("_FILE", "__FILE")) and value.startswith("/run/secrets/"), f"{name}: {key}"


def test_interpolation_only_for_stack_owned_values():
    """`${VAR:-default}` only where compose owns the value; service defaults are never repeated."""
    matches = [m for value in _strings(load_compose()) for m in INTERPOLATION.finditer(value)]
    names = {m.group(1) for m in matches}
    assert names, "compose should let operators change ports and image names"
    assert all(n.startswith("STACK_") for n in names), sorted(n for n in names if not n.startswith("STACK_"))
    for match in matches:
        assert ":-" in match.group(0), f"{match.group(0)}: give the default in place"


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_container_port_matches_settings_image_and_prometheus(services):
    try:
        from service.settings import ServiceSettings

        port = ServiceSettings.model_fields["port"].default
    except ImportError:
        port = CONTRACT_PORT
    assert port == CONTRACT_PORT
    for name in SERVICE_CONTAINERS:
        (mapping,) = services[name]["ports"]
        assert resolve_defaults(mapping).rsplit(":", 1)[1] == str(port)
        assert "flipmatch" in services[name]["networks"]["default"]["aliases"]
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "flipmatch"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["flipmatch"] and sd["port"] == port and sd["type"] == "A"


def test_fixed_paths_agree_with_mounts(services):
    for name in SERVICE_CONTAINERS:
        # uvicorn drains for up to 30s after SIGTERM (service/server.py); Docker's default 10s would cut it short.
        assert int(services[name]["stop_grace_period"].removesuffix("s")) > 30
        targets = {dst for _, dst in volume_mounts(services[name])}
        assert {"/models", "/data", "/datasets"} <= targets
    for name in TRAINER_CONTAINERS:
        svc = services[name]
        assert svc["command"] == TRAINER_COMMAND
        mounts = dict((dst, src) for src, dst in volume_mounts(svc))
        assert mounts["/models"] == "models"
        assert mounts["/app/runs"] == "training-runs"
        assert svc["restart"] == "no"


def test_prometheus_and_grafana_mount_what_their_configs_expect(services):
    prom = dict((dst, src) for src, dst in volume_mounts(services["prometheus"]))
    assert prom["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    rule_files = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    for rule_file in rule_files:
        assert prom[f"/etc/prometheus/{rule_file}"] == f"./deploy/prometheus/{rule_file}"
    assert prom["/prometheus"] == "prometheus-data"
    assert "--storage.tsdb.path=/prometheus" in services["prometheus"]["command"]

    graf = dict((dst, src) for src, dst in volume_mounts(services["grafana"]))
    assert graf["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "flipmatch.yml").read_text())
    (dashboards_path,) = [p["options"]["path"] for p in provider["providers"]]
    assert graf[dashboards_path] == "./deploy/grafana/dashboards"
    home = environment(services["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_path}/flipmatch.json"
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (url,) = [d["url"] for d in datasource["datasources"]]
    assert url == "http://prometheus:9090" and "prometheus" in services


def test_monitoring_images_pinned(services):
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: pin an exact version, not {image}"
