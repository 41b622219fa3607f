"""Settings: every address and knob, from env (and an optional YAML file), with bounds."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import (
    AliasChoices,
    BaseModel,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from llmops.monitoring_config import MonitoringSettings
from llmops.routing_config import RoutingConfig
from schemas.base import MAX_COST_USD

EngineKind = Literal["transformers", "fake", "vllm"]
# What stored text fields keep (streams/privacy.py); "redacted" joins once PII detection exists.
StoreText = Literal["redacted", "raw", "none"]
CONFIG_FILE_ENV = "LLMOPS_CONFIG"
# The effective settings of a parent process (`llmops up`), as JSON, for its children.
SETTINGS_FILE_ENV = "LLMOPS_SETTINGS_FILE"
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


# Hosts that mean "this machine": the embedded stack's addresses, whose secrets (store login,
# signing key) a client on the same machine may read from the data dir.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class VllmOptions(BaseModel):
    """What a vllm pool passes to vLLM's engine (AsyncEngineArgs); defaults suit one GPU."""

    tensor_parallel_size: int = Field(default=1, ge=1, le=256)
    pipeline_parallel_size: int = Field(default=1, ge=1, le=256)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(default=None, ge=16)  # None: the model's own
    max_num_seqs: int | None = Field(default=None, ge=1)  # None: the pool's capacity
    max_num_batched_tokens: int | None = Field(default=None, ge=16)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    enforce_eager: bool = False  # True skips graph capture/compilation: faster start
    seed: int = 0
    enable_lora: bool = False
    max_loras: int = Field(default=4, ge=1)
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = 16
    # adapter name (as requests and `PoolConfig.adapters` name it) -> local adapter directory
    lora_paths: dict[str, str] = Field(default_factory=dict)
    # vllm-cpu only: KV cache size in GiB (exported as VLLM_CPU_KVCACHE_SPACE)
    cpu_kvcache_space_gib: int | None = Field(default=None, ge=1)
    # anything else AsyncEngineArgs takes (quantization, kv_cache_dtype, ...), passed as is
    engine_args: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class PoolBase(BaseModel):
    """What every inference pool has, whatever its engine: a consumer group over its own
    topic, a model, a place and a price. Built as one of its engine's kinds below."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=64)
    engine: EngineKind
    model: str = "gemma-3-270m"
    provider: str = "local"
    region: str = "local"
    gpu: str = "cpu"
    # Prices: finite and within what a heartbeat and a result carry (schemas.base).
    cost_per_gpu_hour: float = Field(default=0.0, ge=0.0, le=MAX_COST_USD, allow_inf_nan=False)
    cost_per_1k_tokens: float = Field(default=0.0, ge=0.0, le=MAX_COST_USD, allow_inf_nan=False)
    capacity: int = Field(default=8, ge=1, le=1024)
    adapters: list[str] = Field(default_factory=list)
    priority: int = 0
    weight: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="before")
    @classmethod
    def _own_engine_options_only(cls, data: Any) -> Any:
        # Another engine's option would be silently ignored: refuse it, naming its engine.
        if isinstance(data, dict):
            engine = cls.model_fields["engine"].default
            foreign = {
                key: owner
                for key, owner in _engine_options().items()
                if key in data and owner != engine
            }
            if foreign:
                named = ", ".join(f"{key} ({owner} pools only)" for key, owner in foreign.items())
                raise ValueError(f"not an option of a {engine} pool: {named}")
        return data


class FakePool(PoolBase):
    """A pool of the fake engine: canned text at simulated speeds, for tests and demos."""

    engine: Literal["fake"] = "fake"
    # simulated time to first token and per output token
    fake_ttft_ms: float = Field(default=0.0, ge=0.0)
    fake_tpot_ms: float = Field(default=0.0, ge=0.0)


class TransformersPool(PoolBase):
    """A pool of the transformers engine (the default kind)."""

    engine: Literal["transformers"] = "transformers"
    # the torch device ("cpu", "cuda", "cuda:1"); on a GPU it computes in bfloat16, on the
    # CPU in float32
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?)$")


class VllmPool(PoolBase):
    """A pool of the vllm engine."""

    engine: Literal["vllm"] = "vllm"
    vllm: VllmOptions = Field(default_factory=VllmOptions)

    @model_validator(mode="after")
    def _adapters_have_paths(self) -> VllmPool:
        # A vllm pool must be able to load every adapter the router may send it.
        if self.adapters:
            if not self.vllm.enable_lora:
                raise ValueError(f"pool {self.name!r} serves adapters: set vllm.enable_lora")
            missing = [a for a in self.adapters if a not in self.vllm.lora_paths]
            if missing:
                raise ValueError(f"pool {self.name!r}: no vllm.lora_paths entry for {missing}")
        return self


_POOL_KINDS: tuple[type[PoolBase], ...] = (FakePool, TransformersPool, VllmPool)


@lru_cache(maxsize=1)
def _engine_options() -> dict[str, str]:
    """Each engine-specific option -> the engine it belongs to."""
    common = set(PoolBase.model_fields)
    return {
        key: kind.model_fields["engine"].default
        for kind in _POOL_KINDS
        for key in kind.model_fields
        if key not in common
    }


def _engine_of(value: Any) -> str:
    # A pool that names no engine is a transformers pool, as it always was.
    if isinstance(value, dict):
        return str(value.get("engine", "transformers"))
    return str(getattr(value, "engine", "transformers"))


# One inference pool, of the kind its `engine` names: an option of another engine is refused.
PoolConfig = Annotated[
    Annotated[FakePool, Tag("fake")]
    | Annotated[TransformersPool, Tag("transformers")]
    | Annotated[VllmPool, Tag("vllm")],
    Discriminator(_engine_of),
]
POOL_ADAPTER: TypeAdapter[PoolConfig] = TypeAdapter(PoolConfig)


def _default_pools() -> list[PoolConfig]:
    return [TransformersPool(name="local-cpu")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLMOPS_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    # Addresses: standard variable names first, so the same deployment files work everywhere.
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "LLMOPS_KAFKA_BOOTSTRAP_SERVERS"),
    )
    # How every Kafka client we create authenticates (llmops/kafka/security.py): standard
    # names, as Kafka's own clients call them. SASL needs a mechanism, a user and a password.
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "LLMOPS_KAFKA_SECURITY_PROTOCOL"),
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "LLMOPS_KAFKA_SASL_MECHANISM"),
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        max_length=256,
        validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "LLMOPS_KAFKA_SASL_USERNAME"),
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "LLMOPS_KAFKA_SASL_PASSWORD"),
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "LLMOPS_KAFKA_SSL_CAFILE")
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_SSL_CERTFILE", "LLMOPS_KAFKA_SSL_CERTFILE"),
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_SSL_KEYFILE", "LLMOPS_KAFKA_SSL_KEYFILE")
    )
    clickhouse_url: str = Field(
        default="http://127.0.0.1:18123/llmops",
        validation_alias=AliasChoices("CLICKHOUSE_URL", "LLMOPS_CLICKHOUSE_URL"),
    )
    # Used when CLICKHOUSE_URL carries no user:password (credentials out of the URL). Neither
    # set and the URL names the embedded store: its credentials file in data_dir is used.
    clickhouse_user: str | None = Field(
        default=None,
        max_length=256,
        validation_alias=AliasChoices("CLICKHOUSE_USER", "LLMOPS_CLICKHOUSE_USER"),
    )
    clickhouse_password: str | None = Field(
        default=None,
        max_length=1024,
        validation_alias=AliasChoices("CLICKHOUSE_PASSWORD", "LLMOPS_CLICKHOUSE_PASSWORD"),
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT")
    )

    # Embedded stack (`llmops up`): where its state lives and which ports it takes.
    data_dir: Path = Path(".llmops")
    broker_port: int = Field(default=19092, ge=1, le=65535)
    store_port: int = Field(default=18123, ge=1, le=65535)
    # The embedded store's service (read-write) password; unset: the one generated on its
    # first start into data_dir/store-credentials.json (mode 0600), with the analyst's.
    store_password: str | None = None
    # Embedded store limits: decoded request body and result body, in bytes.
    store_max_body_bytes: int = Field(default=64 << 20, ge=1 << 20, le=4 << 30)
    store_max_result_bytes: int = Field(default=256 << 20, ge=1 << 20, le=4 << 30)
    # Browser origins (scheme://host[:port]) allowed to query the store; empty: none.
    store_allowed_origins: list[str] = Field(default_factory=list)
    # Per-query ceilings for the read-only analyst (the analyst may lower them, not raise).
    store_analyst_max_execution_s: int = Field(default=60, ge=1, le=3600)
    store_analyst_max_memory_bytes: int = Field(default=2 << 30, ge=64 << 20, le=256 << 30)
    traces_port: int = Field(default=18124, ge=1, le=65535)
    metrics_base_port: int = Field(default=19400, ge=0, le=65000)
    # Where /metrics listens: loopback for the embedded stack, 0.0.0.0 in containers.
    metrics_host: str = "127.0.0.1"
    # Replicas of the topics our services create (1 for one broker, 3 on a real cluster).
    topic_replication_factor: int = Field(default=1, ge=1, le=7)

    # Platform
    pools: list[PoolConfig] = Field(default_factory=_default_pools)
    default_model: str = "gemma-3-270m"
    prompts_file: Path | None = None
    # Prompt labels that move only to a version with a passing suite run (eval_runs), unless
    # forced with a reason (llmops/prompts/gate.py).
    protected_labels: list[str] = Field(default_factory=lambda: ["production"], max_length=64)
    # Per prompt, the suite whose passing run a protected label needs (JSON, e.g.
    # {"support-answer": "support-answer-gate"}); a prompt not named here: any passing suite.
    gate_suites: dict[str, str] = Field(default_factory=dict, max_length=10_000)
    # Experiment guardrails (llmops/experiments/guardrail.py, run by the metrics worker): how
    # often running experiments are checked; the always-valid test's alpha (split across the
    # watched variant-metric pairs), its mixing scale (the size of rise it is most powerful
    # for, absolute) and the responses each arm needs before a variant can be stopped.
    guardrail_interval_s: float = Field(default=5.0, ge=0.5, le=3600)
    guardrail_alpha: float = Field(default=0.05, gt=0.0, le=0.5)
    guardrail_tau: float = Field(default=0.02, gt=0.0, le=1.0)
    guardrail_min_per_arm: int = Field(default=100, ge=10, le=10_000_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    default_deadline_s: float = Field(default=120.0, gt=0, le=3600)
    # The tumbling window of metric and quality windows and the monitor (issue 9: 60 s);
    # `llmops up --demo` uses DEMO_WINDOW_S unless this is configured.
    metrics_window_s: float = Field(default=60.0, gt=0, le=3600)
    sink_batch_size: int = Field(default=500, ge=1, le=100_000)
    sink_flush_s: float = Field(default=1.0, gt=0, le=60)
    commit_interval_s: float = Field(default=0.2, gt=0, le=30)
    # Privacy at rest: "redacted" (default) stores response text, dead letters' keys and
    # header values with detected personal data replaced by typed placeholders (<EMAIL>) and
    # drops dead letters' raw bytes; "raw" stores everything as it came (a locked-down store);
    # "none" stores no text at all. Counts, lengths and flags stay in every mode.
    store_text: StoreText = "redacted"
    # Detectors (by registered name, streams/detectors/drivers.py) the metrics worker runs on
    # every response, their signals stored in its row; an unknown name stops the worker at
    # start. The default is written out here because llmops must not import streams (a unit
    # test holds it equal to streams.detectors.drivers.DEFAULT_DETECTORS).
    detectors: list[str] = Field(
        default_factory=lambda: [
            "lengths",
            "refusal_patterns",
            "pii_regex",
            "profanity_check",
            "json_validity",
            "lexical_grounding",
        ]
    )
    # Request attributes that split quality windows, drift and fairness by segment (e.g.
    # ["locale", "plan"]): each value gets windows of its own besides the whole group's.
    segment_attributes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:/\-]{1,128}$")]] = Field(
        default_factory=list, max_length=16
    )
    # Distinct values per segment attribute and window; rarer ones are counted as "(other)".
    segment_max_values: int = Field(default=32, ge=1, le=10_000)
    # Share of responses the sampled tiers see (embeddings; NER PII and the judge below),
    # chosen by request-id hash so a replay samples the same responses.
    embedding_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    deep_sample_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # The model-graded check: a request through our own router to this model's pool for a
    # `judge_sample_rate` share of app responses; "" turns it off. Checks: rubric names.
    judge_model: str = ""
    judge_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    judge_checks: list[Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]] = Field(
        default_factory=lambda: ["faithfulness"], max_length=8
    )
    # What the quality monitor checks and when it alerts (llmops/monitoring_config.py).
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    # Days the tables that hold text (requests, responses, dead_letters) keep a row after
    # storing it (a ClickHouse TTL the metrics worker sets at start); 0 keeps rows forever.
    retention_days: int = Field(default=30, ge=0, le=36500)
    # Tansu answers a fetch only when its wait runs out (Kafka answers as soon as data
    # arrives), so each hop costs about half this wait there. Raise it on Apache Kafka.
    fetch_max_wait_ms: int = Field(default=5, ge=0, le=10_000)
    # That short wait costs an idle consumer a broker round trip every few ms. After
    # `fetch_quiet_after_s` without records the wait grows (half the quiet time) up to this,
    # and the first record brings the short wait back (llmops/kafka/fetchwait.py). The first record
    # after a pause is then late by at most this per hop. <= fetch_max_wait_ms: a fixed wait.
    fetch_idle_wait_ms: int = Field(default=500, ge=0, le=10_000)
    fetch_quiet_after_s: float = Field(default=0.5, ge=0.0, le=60.0)

    # Signed heartbeats and results (llmops/kafka/signing.py): HMAC-SHA256 under this deployment
    # key; readers dead-letter records without a valid signature. `llmops up` generates a
    # key into the data dir; a service without one refuses to start unless signing is "off".
    signing: Literal["required", "off"] = "required"
    signing_key: SecretStr | None = None
    signing_key_id: str = Field(default="k1", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Earlier keys (id -> key) still accepted while every producer moves to the current one.
    signing_previous_keys: dict[str, SecretStr] = Field(default_factory=dict, max_length=16)

    # Pools and routing: each pool instance beats on llm.pools.status this often, with
    # rates and latency percentiles over its last `health_window_s`.
    heartbeat_interval_s: float = Field(default=1.0, ge=0.05, le=60)
    health_window_s: float = Field(default=10.0, ge=1.0, le=3600)
    # `llmops up` says "platform up" once every pool beats "serving"; past this wait it says
    # which pools are not, and goes on (a model may take long on a slow machine).
    pools_ready_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[PoolConfig]) -> list[PoolConfig]:
        if not pools:
            raise ValueError("configure at least one pool")
        names = [p.name for p in pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique: {names}")
        return pools

    @model_validator(mode="after")
    def _shifts_name_pools(self) -> Settings:
        names = {p.name for p in self.pools}
        for shift in self.routing.shifts:
            unknown = {shift.source, shift.target} - names
            if unknown:
                raise ValueError(f"traffic shift {shift.name!r} names unknown pools {unknown}")
        return self

    def pool(self, name: str) -> PoolConfig:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no pool named {name!r}; configured: {[p.name for p in self.pools]}")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments > environment > the settings file a parent wrote
        # (LLMOPS_SETTINGS_FILE) > YAML file named by LLMOPS_CONFIG.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get(SETTINGS_FILE_ENV)
        if settings_file:
            if not Path(settings_file).is_file():
                raise FileNotFoundError(f"{SETTINGS_FILE_ENV}={settings_file} does not exist")
            sources.append(JsonConfigSettingsSource(settings_cls, json_file=settings_file))
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} does not exist")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _revealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_revealed(item) for item in value]
    return value


def write_settings_file(settings: Settings, path: Path) -> Path:
    """Every field of `settings` (secrets included, nested pools and routing alike) as JSON
    in `path`, mode 0600 from the first byte, replaced whole: what LLMOPS_SETTINGS_FILE
    loads back into the same settings."""
    text = pydantic_core.to_json(_revealed(settings.model_dump()), indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
        os.replace(staging, path)  # readers never see half a file
    finally:
        staging.unlink(missing_ok=True)
    return path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
