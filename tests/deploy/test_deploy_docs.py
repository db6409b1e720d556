"""docs/deploy.md matches the files: its settings tables list every variable the stack reads, with the service's
own defaults, and every file, alert, profile and build argument it names exists."""

from __future__ import annotations

import re

import pytest
from stack_files import (
    DEPLOY_DOC,
    DOCKERFILE,
    INTERPOLATION,
    REPO,
    SERVICE_CONTAINERS,
    TRAINER_CONTAINERS,
    alert_rules,
    dockerfile_stages,
    documented_variables,
    environment,
    load_compose,
    settings_env_names,
)


@pytest.fixture(scope="module")
def documented():
    return documented_variables()


def _compose_variables() -> set[str]:
    text = "\n".join(line for line in (REPO / "docker-compose.yml").read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    return {m.group(1) for m in INTERPOLATION.finditer(text)}


def _build_args() -> set[str]:
    global_args, stages = dockerfile_stages(DOCKERFILE.read_text())
    return set(global_args) | {a.partition("=")[0] for s in stages for a in s.all("ARG")}


def test_every_compose_variable_documented(documented):
    services = load_compose()["services"]
    names = _compose_variables()
    for name in SERVICE_CONTAINERS + TRAINER_CONTAINERS:
        names |= set(environment(services[name]))
    assert names - set(documented) == set(), sorted(names - set(documented))


def test_every_setting_documented_with_its_default(documented, service_settings_cls):
    names = settings_env_names(service_settings_cls)
    assert names <= set(documented), sorted(names - set(documented))
    defaults = _settings_defaults(service_settings_cls)
    for name in names:
        stated = documented[name][0]
        assert stated == defaults[name], f"{name}: docs say {stated}, ServiceSettings says {defaults[name]}"


def test_stack_column_matches_compose(documented):
    env = {}
    services = load_compose()["services"]
    for name in SERVICE_CONTAINERS:
        env.update(environment(services[name]))
    for name, cells in documented.items():
        if not name.startswith("FLIPMATCH_") or len(cells) < 3:
            continue
        stack = cells[1]
        if "pass-through" in stack:
            assert env.get(name, "missing") is None, f"{name}: docs say pass-through"
        elif stack.startswith("stack:"):
            assert f"`{env.get(name)}`" in stack, f"{name}: docs say {stack}, compose sets {env.get(name)}"
        else:
            assert name not in env, f"{name}: compose sets it, docs say {stack!r}"


def test_stack_defaults_match_compose(documented):
    text = (REPO / "docker-compose.yml").read_text()
    for match in INTERPOLATION.finditer(text):
        name, default = match.group(1), match.group(2)
        if name in documented:
            assert documented[name][0] == f"`{default}`", f"{name}: docs {documented[name][0]}, compose {default}"


def test_build_args_documented(documented):
    args = _build_args()
    text = DEPLOY_DOC.read_text()
    missing = {a for a in args if f"`{a}`" not in text}
    assert not missing, sorted(missing)
    global_args, stages = dockerfile_stages(DOCKERFILE.read_text())
    values = dict(global_args)
    for stage in stages:
        values.update(a.partition("=")[::2] for a in stage.all("ARG") if "=" in a)
    for name, cells in documented.items():
        if name in values and values[name]:
            assert f"`{values[name]}`" == cells[0], f"build arg {name}: docs {cells[0]}, Dockerfile {values[name]}"


def test_only_real_variables_documented(documented, service_settings_cls):
    known = _compose_variables() | _build_args() | settings_env_names(service_settings_cls)
    services = load_compose()["services"]
    for name in TRAINER_CONTAINERS:
        known |= set(environment(services[name]))
    assert set(documented) <= known, sorted(set(documented) - known)


def test_alerts_profiles_and_files_named_in_docs():
    text = DEPLOY_DOC.read_text()
    for rule in alert_rules():
        assert f"`{rule['alert']}`" in text, rule["alert"]
    for profile in ("cpu", "gpu", "train", "train-gpu"):
        assert f"--profile {profile} " in text, profile
    for link in re.findall(r"\]\((\.\./[^)#]+)\)", text):
        assert (DEPLOY_DOC.parent / link).resolve().exists(), link
    for path in re.findall(r"`((?:deploy|tests/deploy|training/configs)/[\w./-]+\.(?:yml|yaml|json|py))`", text):
        assert (REPO / path).exists(), path


def _settings_defaults(settings_cls) -> dict[str, str]:
    """`ServiceSettings` defaults rendered as the docs write them: `value` in backticks, or `unset`."""
    from pydantic import BaseModel

    out: dict[str, str] = {}

    def render(value) -> str:
        if value is None:
            return "unset"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"`{value}`"

    def walk(model, path):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, [*path, name])
                continue
            value = info.default_factory() if info.default_factory is not None else info.default
            out["FLIPMATCH_" + "__".join([*path, name]).upper()] = render(value)

    walk(settings_cls, [])
    return out
