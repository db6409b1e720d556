"""Readers for the deployment files (Dockerfile, compose, Prometheus, Grafana, docs) used by tests/deploy.

Parsing only: no processes, no network. The service's own names come from `service.settings` and
`service.metrics`; the contract sets below are the names the issue fixed, used until the service is importable.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "deploy" / "prometheus" / "alerts.test.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "flipmatch.json"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

# Exposition names the issue fixed for service/metrics.py (counters with their _total suffix).
CONTRACT_METRICS = frozenset({
    "flipmatch_requests_total",
    "flipmatch_request_duration_seconds",
    "flipmatch_queue_depth",
    "flipmatch_queue_rejections_total",
    "flipmatch_batch_size",
    "flipmatch_batch_tokens",
    "flipmatch_inference_duration_seconds",
    "flipmatch_search_duration_seconds",
    "flipmatch_corpus_vectors",
    "flipmatch_corpus_entries",
    "flipmatch_decisions_total",
    "flipmatch_truncated_texts_total",
    "flipmatch_model_info",
})

# Environment variables the issue fixed for service.settings.ServiceSettings.
CONTRACT_SETTINGS = frozenset({
    "FLIPMATCH_MODEL_PATH", "FLIPMATCH_DATA_DIR", "FLIPMATCH_HOST", "FLIPMATCH_PORT", "FLIPMATCH_DEVICE",
    "FLIPMATCH_DTYPE", "FLIPMATCH_DEV_MODE", "FLIPMATCH_LOG_LEVEL", "FLIPMATCH_CORS_ORIGINS",
    "FLIPMATCH_BATCHING__MAX_BATCH_TOKENS", "FLIPMATCH_BATCHING__MAX_BATCH_SIZE",
    "FLIPMATCH_BATCHING__MAX_WAIT_MS", "FLIPMATCH_BATCHING__MAX_QUEUE", "FLIPMATCH_LIMITS__MAX_TEXTS",
    "FLIPMATCH_LIMITS__MAX_TEXT_CHARS", "FLIPMATCH_LIMITS__MAX_BODY_BYTES", "FLIPMATCH_LIMITS__TRUNCATE",
    "FLIPMATCH_LIMITS__MAX_TOP_K", "FLIPMATCH_INDEX__HNSW_THRESHOLD", "FLIPMATCH_AUTH__ADMIN_KEY",
    "FLIPMATCH_AUTH__ADMIN_KEY_FILE", "FLIPMATCH_AUTH__QUERY_KEY", "FLIPMATCH_AUTH__QUERY_KEY_FILE",
    "FLIPMATCH_DEMO__PRELOAD", "FLIPMATCH_DEMO__DATA_DIR",
})
CONTRACT_PORT = 8000

# The compose services that run the FlipMatch API (one per profile).
SERVICE_CONTAINERS = ("flipmatch-cpu", "flipmatch-gpu")
TRAINER_CONTAINERS = ("trainer", "trainer-gpu")


# ---- Dockerfile ----

@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def dockerfile_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, args in dockerfile_instructions(text):
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def stage_chain(stages: list[Stage], final: Stage, variables: dict[str, str]) -> list[Stage]:
    """The final stage and every stage it is built FROM, for one set of build arguments."""
    by_name = {s.name: s for s in stages if s.name}
    chain = [final]
    while (base := substitute(chain[-1].base, variables)) in by_name:
        chain.append(by_name[base])
    return chain


def key_values(args: str) -> dict[str, str]:
    """ENV/LABEL/ARG `k=v k2="v 2"` pairs (also the legacy `ENV k v` form)."""
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(t.partition("=")[::2] for t in tokens)


def exec_form(args: str) -> list[str]:
    """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD, or [] when it is the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def dockerignore_rules() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def _glob_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        regex = _glob_regex(rule.lstrip("!").strip("/"))
        if any(re.fullmatch(regex, p) for p in prefixes):
            excluded = not negate
    return excluded


# ---- compose ----

def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?+]([^}]*))?\}")


def resolve_defaults(value: str) -> str:
    """Replace every `${VAR:-default}` with its default, as compose does with VAR unset."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as name -> value; None for a pass-through entry (no value given)."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {k: (None if v is None else str(v)) for k, v in env.items()}
    out: dict[str, str | None] = {}
    for item in env:
        name, sep, value = str(item).partition("=")
        out[name] = value if sep else None
    return out


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) for each short-syntax volume entry, interpolation defaults resolved."""
    mounts = []
    for entry in service.get("volumes") or []:
        parts = resolve_defaults(str(entry)).split(":")
        mounts.append((parts[0], parts[1]))
    return mounts


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


# ---- Prometheus and Grafana ----

METRIC = re.compile(r"(?<![A-Za-z0-9_:])flipmatch_[a-z0-9_]+")
_SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")


def base_metric(name: str) -> str:
    for suffix in _SERIES_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression reads, histogram/counter series suffixes stripped."""
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values are not metric names
    return {base_metric(m) for m in METRIC.findall(no_strings)}


def exposition_names(text: str) -> set[str]:
    """Metric names in Prometheus text exposition (TYPE lines and samples), series suffixes stripped."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(base_metric(line.split()[2]))
        elif line and not line.startswith("#"):
            names.add(base_metric(re.split(r"[{\s]", line, maxsplit=1)[0]))
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return panels


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    exprs = [(f"panel {p['title']!r}", t["expr"]) for p in dashboard_panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append((f"variable ${var['name']}", query))
    return exprs


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def as_plain_promql(expr: str, variables: dict[str, str]) -> str:
    """A Grafana query with its variables replaced, so promtool can parse it."""
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    for name, value in variables.items():
        expr = expr.replace(f"${name}", value).replace(f"${{{name}}}", value)
    label_values = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", expr.strip())
    if label_values:  # Grafana's own function: the series selector inside is the PromQL part
        expr = label_values.group(1)
    return expr


# ---- settings and docs ----

def settings_env_names(settings_cls: type) -> set[str]:
    """Every environment variable a pydantic-settings class reads, nested models expanded."""
    from pydantic import BaseModel

    config = settings_cls.model_config
    prefix = config.get("env_prefix", "")
    delimiter = config.get("env_nested_delimiter") or "__"
    names: set[str] = set()

    def nested_model(annotation: Any) -> type | None:
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)

    def walk(model: type, path: list[str]) -> None:
        for name, info in model.model_fields.items():
            sub = nested_model(info.annotation)
            if sub is not None:
                walk(sub, [*path, name])
            else:
                names.add((prefix + delimiter.join([*path, name])).upper())

    walk(settings_cls, [])
    return names


def documented_variables() -> dict[str, list[str]]:
    """Rows of the settings tables in docs/deploy.md: `VAR` in the first cell -> the other cells.

    A variable listed twice (FLIPMATCH_DATA_DIR: the service's, then the trainer's) keeps its first row.
    """
    rows = {}
    for line in DEPLOY_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2:
            match = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", cells[0])
            if match:
                rows.setdefault(match.group(1), cells[1:])
    return rows
