"""ServiceSettings: every knob of the online service, with its default and its operator documentation.

The only place defaults live. Built once at the edge (`python -m service` or `service.serve`), never at import.
Every field is also an environment variable: `FLIPMATCH_<FIELD>`, nested with `__`
(e.g. `FLIPMATCH_BATCHING__MAX_BATCH_TOKENS=16384`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchingSettings(_Section):
    max_batch_tokens: int = Field(
        8192,
        ge=1,
        description="Padded tokens (texts x longest text) per forward pass. Must be at least the model's "
        "max sequence length; checked at start-up.",
    )
    max_batch_size: int = Field(64, ge=1, description="Most texts in one forward pass.")
    batch_overhead_tokens: float | None = Field(
        None,
        ge=0,
        description="Fixed cost of one forward pass, in padded tokens: the batcher splits waiting texts into "
        "similar-length batches when the padding saved exceeds it. None: fitted on CPU from the start-up "
        "calibration's timings (fixed ms per pass / ms per padded token, shown in /v1/info), else 32 on CPU and "
        "512 on CUDA (kernel launches dominate short batches).",
    )
    max_wait_ms: float = Field(
        0,
        ge=0,
        description="Longest wait of the first queued text for others to join its batch. 0 (the default): a free "
        "worker takes whatever is queued at once; under load the queue grows into larger passes while the workers "
        "are busy. Above 0 the wait is adaptive: a lone text after a lone batch goes at once, and the wait ends "
        "when as many texts wait as the last batch took. On CPU a wait kept a worker idle while another ran: "
        "make bench-serve measures the 25-ms window side by side (docs/performance.md, section 0).",
    )
    max_queue: int = Field(
        1024, ge=1, description="Texts waiting for a forward pass; beyond it requests get 429 + Retry-After."
    )
    packing: bool = Field(
        True,
        description="On CPU, run each forward pass's texts as one unpadded row (positions restart per text), "
        "where the model keeps packed texts apart: checked against padded passes when the model loads "
        "(/v1/info -> compute.packed); a model that fails the check keeps padded batches. No effect on CUDA.",
    )
    forward_workers: int | None = Field(
        None,
        ge=1,
        description="Forward passes that run at once. None: on CPU, the start-up calibration's choice (cores / "
        "threads per pass, shown in /v1/info); 1 on CUDA.",
    )
    forward_processes: bool = Field(
        True,
        description="On Linux CPUs, run 1-thread forward workers as child processes forked after the model loads "
        "(one GIL each; the weights are shared copy-on-write) instead of threads: lower search p99 under load, a "
        "little slower for a lone request (docs/performance.md, measured side by side by make bench-serve). "
        "Shown in /v1/info -> compute.forward_processes. No effect on CUDA or with more than one thread per pass.",
    )
    max_packed_tokens: int = Field(
        256,
        ge=1,
        description="Tokens per packed forward pass (128-256 measured best on 2 cores, bench/results/layout.json). "
        "A packed row's attention grows with its square, so very long "
        "rows lose what packing saves; a text longer than this still gets a pass of its own.",
    )

    def overhead_tokens(self, device: str, measured: float | None = None) -> float:
        """batch_overhead_tokens if set, else the calibration's fitted value, else the default for the device."""
        if self.batch_overhead_tokens is not None:
            return self.batch_overhead_tokens
        if measured is not None:
            return measured
        return 512.0 if device == "cuda" else 32.0


class CacheSettings(_Section):
    max_entries: int = Field(
        10_000,
        ge=0,
        description="Query embeddings kept in the LRU cache (keyed on the model fingerprint and the text after "
        "Unicode NFC and whitespace folding); 0 turns the cache off.",
    )
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Memory bound of the query cache (vectors plus keys), in bytes."
    )


class LimitsSettings(_Section):
    max_texts: int = Field(256, ge=1, description="Most texts (or pairs, or queries) in one request.")
    max_text_chars: int = Field(8192, ge=1, description="Longest text in characters.")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1, description="Largest request body; beyond it 413.")
    truncate: bool = Field(
        True,
        description="Truncate texts longer than max_text_chars or the model's token limit (and report it); "
        "when false such texts are refused with 422.",
    )
    max_top_k: int = Field(100, ge=1, description="Largest top_k a search may ask for.")
    max_calibration_queries: int = Field(
        5000, ge=1, description="Most labelled queries in one POST /v1/corpora/{name}/calibrate."
    )
    max_corpora: int = Field(
        100, ge=1, description="Most corpora; bounds the corpus label of the Prometheus metrics."
    )


class IndexSettings(_Section):
    hnsw_threshold: int = Field(
        50_000,
        ge=1,
        description="Vectors in a corpus above which its index is HNSW (approximate) instead of exact "
        "inner product.",
    )


class StoreSettings(_Section):
    url: SecretStr | None = Field(
        None,
        description="Where corpora are stored. Unset: an embedded SQLite file in data_dir (one replica). "
        "postgresql://user:password@host:5432/db: a PostgreSQL database that several replicas share; each one "
        "follows the others' writes. Needs the [postgres] extra (psycopg).",
    )
    password_file: Path | None = Field(
        None, description="PostgreSQL: file holding the password (e.g. a mounted secret), so the URL can leave it out."
    )
    catchup_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="PostgreSQL: how often a replica reads the change sequence even without a notification, so a "
        "missed NOTIFY or a reconnect loses nothing (notifications usually apply changes within milliseconds).",
    )
    connect_timeout_s: float = Field(
        2.0, gt=0, le=60, description="PostgreSQL: longest wait for a connection; writes fail with 503 after it."
    )
    statement_timeout_s: float = Field(
        10.0, gt=0, le=600, description="PostgreSQL: longest a single statement may run before it is cancelled."
    )

    @model_validator(mode="after")
    def _postgres_url(self) -> StoreSettings:
        if self.url is not None and not self.url.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("FLIPMATCH_STORE__URL must start with postgresql:// (unset it for the SQLite default)")
        return self

    def dsn(self) -> str | None:
        """The connection string, with the password from password_file added as a libpq parameter."""
        if self.url is None:
            return None
        url = self.url.get_secret_value()
        if self.password_file is not None:
            from psycopg.conninfo import make_conninfo  # the [postgres] extra; only needed with a password file

            url = make_conninfo(url, password=self.password_file.read_text(encoding="utf-8").strip())
        return url


class AuthSettings(_Section):
    admin_key: SecretStr | None = Field(None, description="API key for write routes (and query routes).")
    admin_key_file: Path | None = Field(None, description="File holding the admin key (e.g. a mounted secret).")
    query_key: SecretStr | None = Field(
        None, description="API key for query routes. Unset: query routes are open."
    )
    query_key_file: Path | None = Field(None, description="File holding the query key.")

    @model_validator(mode="after")
    def _one_source_per_key(self) -> AuthSettings:
        for name in ("admin_key", "query_key"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                raise ValueError(
                    f"set either FLIPMATCH_AUTH__{name.upper()} or FLIPMATCH_AUTH__{name.upper()}_FILE, not both"
                )
        return self


class DemoSettings(_Section):
    preload: bool = Field(
        False, description="Load the Banking77 and MedQuAD demo corpora on start-up if they do not exist."
    )
    data_dir: Path = Field(
        Path("../shared/data"), description="Folder holding banking77/train.csv and medquad/medquad.jsonl."
    )
    medquad_max_entries: int = Field(2000, ge=1, description="Most MedQuAD entries to load.")
    banking77_max_alternates: int = Field(20, ge=0, description="Alternate questions per Banking77 intent.")
    calibrate: bool = Field(
        True, description="Self-calibrate the demo corpora when loaded (and when their calibration was made with "
        "another model)."
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLIPMATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    model_path: str = Field(
        "artifacts/flipmatch-default",
        description="Encoder to serve: a FlipMatch artifact folder, any sentence-transformers folder, "
        "or a model id in the local Hugging Face cache.",
    )
    data_dir: Path = Field(Path("data/service"), description="Where corpora (SQLite + index files) live.")
    host: str = Field("0.0.0.0", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when available, else CPU."
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = Field(
        "auto",
        description="auto on CPU: a start-up calibration times float32 and bfloat16 (and float16 on AVX512-FP16 "
        "CPUs) and keeps the fastest that reproduces the model's probe vectors (cosine >= 0.999 in float32, "
        ">= 0.99 in bfloat16); shown in "
        "/v1/info. auto on CUDA: float16, then bfloat16, then float32. int8 (CPU, opt-in): int8 joins the "
        "calibration and is served only if it is the fastest and keeps cosine >= 0.99. An explicit float dtype is "
        "used as given (no fallback).",
    )
    cpu_threads: int = Field(
        0,
        ge=0,
        description="Threads per CPU forward pass and for index search; 0: measured at start-up (one pass on all "
        "cores, or one 1-thread pass per core at once, timed with each dtype; the most throughput kept).",
    )
    cpu_prepack: bool = Field(
        True,
        description="Hold the CPU forward's linear weights in oneDNN's packed layout (float32 and bfloat16), kept "
        "only where it reproduces the eager vectors at load (/v1/info -> compute.prepacked). Measured 1.38x "
        "faster for a lone question, 1.06x for 12-question passes, in bf16 on a 2-core AMD EPYC "
        "(bench/results/layout.json).",
    )
    dev_mode: bool = Field(
        False, description="Open write routes when no admin key is configured. Never in production."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="Log level.")
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS, as JSON: ["https://a.example"].'
    )
    batching: BatchingSettings = Field(default_factory=BatchingSettings, description="Dynamic batching.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Request limits.")
    index: IndexSettings = Field(default_factory=IndexSettings, description="Vector index.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="Corpus store.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="API keys.")
    demo: DemoSettings = Field(default_factory=DemoSettings, description="Demo corpora.")
    cache: CacheSettings = Field(default_factory=CacheSettings, description="Query embedding cache.")

    @model_validator(mode="after")
    def _queue_holds_one_request(self) -> ServiceSettings:
        # A /v1/match call embeds up to two texts per pair.
        if self.batching.max_queue < 2 * self.limits.max_texts:
            raise ValueError(
                f"batching.max_queue ({self.batching.max_queue}) is below 2 x limits.max_texts "
                f"({self.limits.max_texts}): a full-size /v1/match request could never be queued. Raise "
                "FLIPMATCH_BATCHING__MAX_QUEUE or lower FLIPMATCH_LIMITS__MAX_TEXTS."
            )
        return self

    def threads(self) -> int | None:
        """cpu_threads, or None when the start-up calibration should measure it."""
        return self.cpu_threads or None


def read_key(value: SecretStr | None, file: Path | None, *, setting: str = "the key file") -> str | None:
    """The key from its value or its file (stripped), or None when neither is set. Never logged. An empty key
    is refused: it would be a misconfiguration, not a wish for open routes."""
    if value is not None:
        key = value.get_secret_value().strip()
    elif file is not None:
        key = file.read_text(encoding="utf-8").strip()
    else:
        return None
    if not key:
        raise ValueError(f"{setting} is set but empty; put a key in it or unset it")
    return key
