"""The systems under test: start one server process, wait for readiness (bounded), stop it. Loopback only."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.processes import stop_process
from tests.fixtures.server import free_port, service_environment, spawn, wait_ready

REPO = Path(__file__).resolve().parents[1]
INFINITY_TORCH = "torch==2.13.0"  # the CPU build this machine's pip finds locally; others pull CUDA wheels
INFINITY_SPEC = "infinity-emb[torch,server]"


@dataclass
class System:
    name: str
    command: list[str]
    health_path: str
    embed_path: str
    env: dict[str, str] = field(default_factory=dict)
    model_field: str | None = None  # OpenAI-style "model" in the request body (Infinity wants it)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def body(self, text: str) -> dict[str, object]:
        body: dict[str, object] = {"input": [text]}
        if self.model_field:
            body["model"] = self.model_field
        return body


def _start(system: System, log: Path) -> subprocess.Popen[bytes]:
    command = [c.replace("{port}", str(system.port)) for c in system.command]
    env = service_environment({k: v.replace("{port}", str(system.port)) for k, v in system.env.items()})
    log.write_bytes(b"")  # one log per start: the tail in an error message is this start's
    return spawn(command, log=log, env=env, new_session=True)


@contextlib.contextmanager
def running_all(pairs: list[tuple[System, Path]], *, timeout: float = 300.0
                ) -> Iterator[tuple[list[System], dict[str, str]]]:
    """Start every system at once (their start-ups overlap), then wait for each through the tests' one readiness
    helper, all under one deadline; yields (the systems that got ready, {name: why not} for the others). Every
    process is stopped on exit."""
    processes = [(system, log, _start(system, log)) for system, log in pairs]
    deadline = time.monotonic() + timeout
    up, failed = [], {}
    try:
        for system, log, process in processes:
            try:
                wait_ready(process, system.url + system.health_path, log=log, name=system.name, interval=0.25,
                           timeout=max(deadline - time.monotonic(), 0.0))
                up.append(system)
            except AssertionError as err:
                failed[system.name] = str(err)[-1500:]
                stop_process(process)
        yield up, failed
    finally:
        for _, _, process in processes:
            stop_process(process)


def flipmatch(model: Path, data_dir: Path, admin_key: str, **env: str) -> System:
    return System("flipmatch", [sys.executable, "-m", "service"], "/health/ready", "/v1/embeddings", env={
        "FLIPMATCH_MODEL_PATH": str(model), "FLIPMATCH_DATA_DIR": str(data_dir), "FLIPMATCH_HOST": "127.0.0.1",
        "FLIPMATCH_PORT": "{port}", "FLIPMATCH_DEVICE": "cpu", "FLIPMATCH_AUTH__ADMIN_KEY": admin_key,
        "FLIPMATCH_LOG_LEVEL": "warning", **env})


def naive(model: Path) -> System:
    return System("naive ST.encode", [sys.executable, "-m", "bench.naive_server", "--model", str(model),
                                      "--port", "{port}"], "/health", "/v1/embeddings")


def ensure_infinity(venv: Path, log: Path) -> tuple[Path | None, str]:
    """Create `venv` with torch 2.13.0 (CPU) first, then infinity-emb, refusing any torch replacement.
    Returns (the infinity_emb executable or None, what happened)."""
    exe = venv / "bin" / "infinity_emb"
    if exe.exists():
        return exe, "already installed"
    pip = venv / "bin" / "pip"
    steps = [[sys.executable, "-m", "venv", str(venv)], [str(pip), "install", "-q", INFINITY_TORCH]]
    with log.open("ab") as out:
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode:
                return None, f"`{' '.join(step)}` failed; see {log}"
        # Dry run first: if resolving infinity-emb would touch torch, stop rather than pull CUDA wheels.
        # The report goes to a file: older pips (a fresh venv's bundled one) also print progress on stdout.
        report = venv / "pip-dry-run.json"
        dry = subprocess.run([str(pip), "install", "-q", "--dry-run", "--report", str(report), INFINITY_SPEC,
                              INFINITY_TORCH], capture_output=True, text=True, timeout=900)
        if dry.returncode:
            out.write(dry.stderr.encode())
            return None, f"pip could not resolve {INFINITY_SPEC} next to {INFINITY_TORCH}: {dry.stderr[-500:]}"
        install = json.loads(report.read_text())["install"]
        planned = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in install}
        if "torch" in planned:
            return None, f"pip wanted to replace torch with {planned['torch']}; refused"
        if subprocess.run([str(pip), "install", "-q", INFINITY_SPEC, INFINITY_TORCH], stdout=out,
                          stderr=subprocess.STDOUT, timeout=1500).returncode:
            return None, f"pip install {INFINITY_SPEC} failed; see {log}"
    return (exe, "installed") if exe.exists() else (None, f"{exe} missing after install")


def infinity(exe: Path, model: Path, served_name: str) -> System:
    return System("infinity", [str(exe), "v2", "--model-id", str(model), "--served-model-name", served_name,
                               "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", "{port}"],
                  "/health", "/embeddings", model_field=served_name,
                  env={"INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"})


def st_compat_copy(model: Path, target: Path) -> Path:
    """The same weights and tokenizer, with configs spelled for sentence-transformers 3.x / transformers 4.x
    (Infinity pins ST < 4, which knows neither ST 6's `sentence_transformers.base.modules.*` paths nor its config
    keys, and transformers 4.x reads `rope_theta` at the top level). Weight files are symlinked, not copied."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in model.rglob("*"):
        if item.is_file():
            dest = target / item.relative_to(model)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(item.resolve())

    def rewrite(name: str, change: Callable[[dict[str, Any]], Any]) -> None:
        path = target / name
        data = json.loads((model / name).read_text())
        data = change(data) or data
        path.unlink()
        path.write_text(json.dumps(data, indent=2))

    old = {"Transformer": "sentence_transformers.models.Transformer", "Pooling": "sentence_transformers.models.Pooling",
           "Dense": "sentence_transformers.models.Dense", "Normalize": "sentence_transformers.models.Normalize"}

    def modules(items: list[dict[str, Any]]) -> None:
        for m in items:
            m["type"] = old.get(m["type"].rsplit(".", 1)[-1], m["type"])

    card = json.loads((model / "flipmatch.json").read_text()) if (model / "flipmatch.json").exists() else {}
    rewrite("modules.json", modules)
    rewrite("sentence_bert_config.json", lambda d: {"max_seq_length": d.get("max_seq_length",
                                                                           card.get("max_seq_length", 512)),
                                                    "do_lower_case": d.get("do_lower_case", False)})
    rewrite("config.json", lambda d: {**d, **d.get("rope_parameters", {})})
    # transformers 5 names the fast tokenizer class TokenizersBackend; 4.x calls it PreTrainedTokenizerFast.
    rewrite("tokenizer_config.json", lambda d: {**d, "tokenizer_class": "PreTrainedTokenizerFast"})
    for sub in sorted(p.name for p in model.iterdir() if p.is_dir()):
        if sub.endswith("Pooling"):
            rewrite(f"{sub}/config.json", lambda d: {
                "word_embedding_dimension": d.get("embedding_dimension", d.get("word_embedding_dimension")),
                f"pooling_mode_{_ST3_POOLING.get(d.get('pooling_mode', 'mean'), 'mean_tokens')}": True,
                **({"pooling_mode_mean_tokens": False} if d.get("pooling_mode", "mean") != "mean" else {}),
                "include_prompt": d.get("include_prompt", True)})
        elif sub.endswith("Dense"):
            rewrite(f"{sub}/config.json", lambda d: {k: v for k, v in d.items() if not k.startswith("module_")})
    return target


_ST3_POOLING = {"mean": "mean_tokens", "cls": "cls_token", "lasttoken": "lasttoken", "max": "max_tokens"}
