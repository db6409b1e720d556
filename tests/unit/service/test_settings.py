"""ServiceSettings: defaults, environment parsing, strictness, cross-field checks, key files."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from service.settings import BatchingSettings, ServiceSettings, read_key


@pytest.fixture
def clean_env(monkeypatch):
    import os

    for name in [n for n in os.environ if n.upper().startswith("FLIPMATCH_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_match_the_documented_contract(clean_env):
    s = ServiceSettings()
    assert (s.model_path, str(s.data_dir), s.host, s.port) == ("artifacts/flipmatch-default", "data/service",
                                                               "0.0.0.0", 8000)
    assert (s.device, s.dtype, s.dev_mode, s.log_level, s.cors_origins) == ("auto", "auto", False, "info", [])
    b, lim = s.batching, s.limits
    assert (b.max_batch_tokens, b.max_batch_size, b.max_wait_ms, b.max_queue) == (8192, 64, 0, 1024)
    assert b.overhead_tokens("cpu") == 32 and b.overhead_tokens("cuda") == 512  # unset: by device
    assert BatchingSettings(batch_overhead_tokens=0).overhead_tokens("cuda") == 0
    assert (lim.max_texts, lim.max_text_chars, lim.max_body_bytes, lim.truncate, lim.max_top_k) == (
        256, 8192, 10 * 1024 * 1024, True, 100)
    assert s.index.hnsw_threshold == 50_000
    assert s.auth.admin_key is None and s.auth.query_key_file is None
    assert s.demo.preload is False and str(s.demo.data_dir) == "../shared/data"


def test_every_field_has_a_description():
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                missing += [f"{name}.{n}" for n in walk(annotation)]
        return missing

    assert walk(ServiceSettings) == []


def test_environment_with_nested_delimiter(clean_env):
    clean_env.setenv("FLIPMATCH_BATCHING__MAX_BATCH_TOKENS", "16384")
    clean_env.setenv("FLIPMATCH_LIMITS__TRUNCATE", "false")
    clean_env.setenv("FLIPMATCH_CORS_ORIGINS", '["https://a.example"]')
    clean_env.setenv("FLIPMATCH_AUTH__ADMIN_KEY", "s3cret")
    s = ServiceSettings()
    assert s.batching.max_batch_tokens == 16384
    assert s.limits.truncate is False
    assert s.cors_origins == ["https://a.example"]
    assert "s3cret" not in repr(s)  # keys never reach logs through the settings repr


def test_unknown_nested_keys_are_errors(clean_env):
    clean_env.setenv("FLIPMATCH_BATCHING__MAX_TOKENS", "100")  # typo of max_batch_tokens
    with pytest.raises(ValidationError, match="max_tokens"):
        ServiceSettings()
    with pytest.raises(ValidationError):
        ServiceSettings(not_a_field=1)


@pytest.mark.parametrize("values", [{"port": 70000}, {"device": "tpu"}, {"batching": {"max_batch_size": 0}},
                                    {"limits": {"max_texts": -1}}])
def test_out_of_range_values_are_refused(clean_env, values):
    with pytest.raises(ValidationError):
        ServiceSettings(**values)


def test_queue_must_hold_a_full_request(clean_env):
    with pytest.raises(ValidationError, match="FLIPMATCH_BATCHING__MAX_QUEUE"):
        ServiceSettings(batching={"max_queue": 100}, limits={"max_texts": 256})


def test_a_key_and_its_file_together_are_refused(clean_env, tmp_path):
    with pytest.raises(ValidationError, match="either FLIPMATCH_AUTH__ADMIN_KEY or"):
        ServiceSettings(auth={"admin_key": "a", "admin_key_file": tmp_path / "k"})


def test_read_key_from_value_or_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert read_key(SecretStr("direct"), None) == "direct"
    assert read_key(None, key_file) == "from-file"
    assert read_key(None, None) is None
    with pytest.raises(FileNotFoundError):
        read_key(None, tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="FLIPMATCH_AUTH__ADMIN_KEY_FILE is set but empty"):
        read_key(None, tmp_path / "empty", setting="FLIPMATCH_AUTH__ADMIN_KEY_FILE")
