"""Read an encoder folder's description: its modules, pooling, max length, flipmatch.json and fingerprint.

Plain JSON and file reading, no torch (the encoder builds the network from what this returns). Accepts both the
legacy sentence-transformers config keys (`pooling_mode_mean_tokens: true`) and the v5+ ones
(`pooling_mode: "mean"`), since artifacts come from either.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ArtifactError

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "lasttoken")
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh"}
# Files that do not change what vectors the model computes (model card, the threshold manifest, VCS noise).
_NOT_FINGERPRINTED = {"README.md", "flipmatch.json"}


@dataclass(frozen=True)
class Probe:
    text: str
    vector: tuple[float, ...]


@dataclass(frozen=True)
class ModelCard:
    """flipmatch.json (format_version 1), with the documented defaults filled in."""

    format_version: int = 1
    student_id: str = "unknown"
    teacher_id: str = "unknown"
    embedding_dim: int | None = None
    max_seq_length: int | None = None
    match_threshold: float = 0.5
    metrics: dict[str, float] = field(default_factory=dict)
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True)
class DenseSpec:
    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str  # "identity" or "tanh"


@dataclass(frozen=True)
class ArtifactSpec:
    root: Path
    name: str
    transformer_path: Path
    max_seq_length: int | None  # from sentence_bert_config.json; None: read from the tokenizer
    do_lower_case: bool
    causal: bool  # sentence-transformers pads causal ("text-generation") models on the left
    pooling: str
    dense: tuple[DenseSpec, ...]
    normalize: bool
    prompt: str  # the default prompt prepended to every text ("" almost always)
    card: ModelCard
    fingerprint: str


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ArtifactError(f"cannot read {path}: {err}") from err


def resolve_model_path(model_path: str) -> Path:
    """A local folder as is; otherwise a Hugging Face model id, resolved through the local cache (downloaded
    when the hub is reachable). Something that is clearly a local path is never looked up on the hub."""
    local = Path(model_path).expanduser()
    if local.is_dir():
        return local.resolve()
    looks_local = model_path.startswith(("/", ".", "~")) or local.parent.is_dir() and local.parent != Path(".")
    if not looks_local:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model_path))
        except Exception as err:  # any hub failure (offline, unknown id, auth) means the same to the operator
            raise ArtifactError(
                f"model {model_path!r} is neither a folder nor a reachable model id ({type(err).__name__}); "
                "set FLIPMATCH_MODEL_PATH to an exported artifact (see docs/artifact.md)"
            ) from err
    raise ArtifactError(
        f"model folder {str(local)!r} does not exist; export one (flipmatch distill / flipmatch export) or set "
        "FLIPMATCH_MODEL_PATH to an artifact folder (see docs/artifact.md)"
    )


def fingerprint(root: Path) -> str:
    """sha256 over every file's relative path, size and content (README.md and flipmatch.json excluded, so a
    retuned threshold or model card does not force corpora to be re-embedded). ~1.4 GB/s: <1 s for 700 MB."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.name in _NOT_FINGERPRINTED or any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def read_card(root: Path) -> ModelCard:
    path = root / "flipmatch.json"
    if not path.exists():
        logger.info("flipmatch.json missing in %s: using defaults (match_threshold=0.5, no probes)", root)
        return ModelCard()
    raw = _read_json(path)
    defaults = ModelCard()
    for key in ("student_id", "teacher_id", "embedding_dim", "max_seq_length", "match_threshold", "metrics", "probes"):
        if key not in raw:
            logger.info("flipmatch.json: %s missing, using default %r", key, getattr(defaults, key))
    try:
        probes = tuple(Probe(str(p["text"]), tuple(float(v) for v in p["vector"])) for p in raw.get("probes", []))
        return ModelCard(
            format_version=int(raw.get("format_version", 1)),
            student_id=str(raw.get("student_id", defaults.student_id)),
            teacher_id=str(raw.get("teacher_id", defaults.teacher_id)),
            embedding_dim=raw.get("embedding_dim"),
            max_seq_length=raw.get("max_seq_length"),
            match_threshold=float(raw.get("match_threshold", defaults.match_threshold)),
            metrics={str(k): float(v) for k, v in raw.get("metrics", {}).items() if isinstance(v, int | float)},
            probes=probes,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"flipmatch.json in {root} is malformed: {err}") from err


def _pooling_mode(config: dict[str, Any], where: Path) -> str:
    mode = config.get("pooling_mode")
    if mode is None:
        active = [name for key, name in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        mode = active if len(active) != 1 else active[0]
        mode = mode or "mean"
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode not in POOLING_MODES:
        raise ArtifactError(f"pooling {mode!r} in {where} is not supported; supported: {', '.join(POOLING_MODES)}")
    return str(mode)


def _dense(path: Path) -> DenseSpec:
    config = _read_json(path / "config.json")
    activation = _ACTIVATIONS.get(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if activation is None or config.get("use_residual", False):
        raise ArtifactError(
            f"Dense module in {path} uses {config.get('activation_function')!r}"
            f"{' with a residual' if config.get('use_residual') else ''}; supported: Identity or Tanh, no residual"
        )
    return DenseSpec(path, int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True)),
                     activation)


def read_artifact(root: Path, name: str | None = None) -> ArtifactSpec:
    """Describe the encoder in `root`. A folder without modules.json is a plain Hugging Face model: mean pooling,
    no normalization (what sentence-transformers does with it)."""
    modules = _read_json(root / "modules.json") if (root / "modules.json").exists() else [
        {"type": "Transformer", "path": ""}, {"type": "Pooling", "path": None}
    ]
    transformer_path: Path | None = None
    bert_config: dict[str, Any] = {}
    pooling, dense, normalize = None, [], False
    for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(module["type"]).rsplit(".", 1)[-1]
        path = root / module["path"] if module.get("path") is not None else root
        if kind == "Transformer" and transformer_path is None:
            transformer_path = path
            if (path / "sentence_bert_config.json").exists():
                bert_config = _read_json(path / "sentence_bert_config.json")
        elif kind == "Pooling" and pooling is None:
            cfg = _read_json(path / "config.json") if (path / "config.json").exists() else {}
            pooling = _pooling_mode(cfg, path)
        elif kind == "Dense":
            dense.append(_dense(path))
        elif kind == "Normalize":
            normalize = True
        else:
            raise ArtifactError(
                f"module {module['type']!r} in {root / 'modules.json'} is not supported; "
                "supported: Transformer -> Pooling -> optional Dense -> optional Normalize"
            )
    if transformer_path is None or pooling is None:
        raise ArtifactError(f"{root} needs a Transformer and a Pooling module (see docs/artifact.md)")
    if "message" in bert_config.get("modality_config", {}):
        raise ArtifactError(f"{root} renders text through a chat template; export the tokenizer without one")

    st_config = _read_json(root / "config_sentence_transformers.json") if (
        root / "config_sentence_transformers.json").exists() else {}
    prompt_name = st_config.get("default_prompt_name")
    prompt = str(st_config.get("prompts", {}).get(prompt_name, "")) if prompt_name else ""
    max_len = bert_config.get("max_seq_length")
    return ArtifactSpec(
        root=root,
        name=name or root.name,
        transformer_path=transformer_path,
        max_seq_length=int(max_len) if max_len else None,
        do_lower_case=bool(bert_config.get("do_lower_case", False)),
        causal=bert_config.get("transformer_task") in ("text-generation", "any-to-any"),
        pooling=pooling,
        dense=tuple(dense),
        normalize=normalize,
        prompt=prompt,
        card=read_card(root),
        fingerprint=fingerprint(root),
    )
