"""The local stack behind `llmops up`: infrastructure (embedded or external) plus our services."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from rich.console import Console

from llmops.clickhouse.client import login_for, migrate
from llmops.config import SETTINGS_FILE_ENV, Settings, write_settings_file
from llmops.kafka.security import KafkaSecurity
from llmops.kafka.topics import ensure_topics, platform_topics
from llmops.local.broker import start_broker
from llmops.local.procs import stop_process
from llmops.local.readiness import PoolBoard, StatusFeed
from llmops.local.supervisor import Child, Supervisor, python_child
from llmops.runtime import require_trust_settings
from llmops.secretfile import embedded_signing_key
from schemas import utc_now
from schemas.topics import STREAMS_APP_ID, TopicSpec

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
CHILD_SETTINGS_FILE = "settings.json"  # in the data dir, where the stack's secrets live
# Said when the embedded broker dies: its storage is memory, so this is gone for good.
BROKER_MEMORY_LOSS = (
    "everything it held in memory: every topic with the requests and replies in flight, "
    "every consumer group and committed offset"
)


@dataclass(frozen=True)
class StackAddresses:
    kafka: str
    clickhouse_url: str
    otlp_endpoint: str | None


def embedded_clickhouse_url(settings: Settings) -> str:
    """The configured URL's database on the embedded store's loopback port."""
    database = urlsplit(settings.clickhouse_url).path.strip("/") or "llmops"
    auth = f"default:{settings.store_password}@" if settings.store_password else ""
    return urlunsplit(("http", f"{auth}{LOOPBACK}:{settings.store_port}", f"/{database}", "", ""))


class LocalStack:
    def __init__(self, settings: Settings, console: Console, embedded: bool = True) -> None:
        self.settings = settings
        self.console = console
        self.embedded = embedded
        self.supervisor = Supervisor()
        self._broker_starts = 0
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.addresses = StackAddresses(
            kafka=f"{LOOPBACK}:{settings.broker_port}"
            if embedded
            else settings.kafka_bootstrap_servers,
            clickhouse_url=embedded_clickhouse_url(settings)
            if embedded
            else settings.clickhouse_url,
            otlp_endpoint=settings.otel_exporter_otlp_endpoint,
        )

    # --- start ----------------------------------------------------------------------------

    def start(self, with_model: bool = True) -> StackAddresses:
        if not self.embedded:  # embedded, the stack makes its own key (signing_env)
            require_trust_settings(self.settings)  # one line now, not a crash loop later
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            self._start_infrastructure()
        self._prepare()
        if with_model:
            self._prepare_models()
        since = utc_now()
        self._start_services()
        self._wait_for_pools(since)
        return self.addresses

    @contextlib.contextmanager
    def _step(self, doing: str, done: str) -> Iterator[None]:
        """A spinner while a start step runs, then a line with its time: the line shows in
        logs and pipes too, where a spinner prints nothing."""
        started = time.monotonic()
        with self.console.status(doing):
            yield
        self.console.print(f"[green]✓[/] {done} ({time.monotonic() - started:.1f}s)")

    def _wait_for_pools(self, since: datetime) -> None:
        """Until every pool beats "serving" (its model loaded, its consumer running): the
        platform is not up before it can answer. Each change is printed as it comes; children
        that die meanwhile are restarted and shown as usual."""
        services = [c.name for c in self.supervisor.children if c.tier > 1]
        self.console.print(f"[green]✓[/] started {', '.join(services)}")
        board = PoolBoard([p.name for p in self.settings.pools], since)
        timeout_s = self.settings.pools_ready_timeout_s
        started = time.monotonic()
        shown = ""
        feed = StatusFeed(self.addresses.kafka, KafkaSecurity.from_settings(self.settings))
        try:
            with self.console.status("waiting for the pools ...") as spinner:
                while not board.ready() and time.monotonic() - started < timeout_s:
                    for status in feed.poll(0.5):
                        board.see(status)
                    if board.describe() != shown:
                        shown = board.describe()
                        self.console.print(f"  pools: {shown}")
                    spinner.update(
                        f"waiting for the pools: {shown} ({time.monotonic() - started:.0f}s)"
                    )
                    self.watch()
        finally:
            feed.close()
        elapsed = time.monotonic() - started
        if board.ready():
            self.console.print(f"[green]✓[/] pools serving: {shown} ({elapsed:.1f}s)")
        else:
            self.console.print(
                f"[yellow]![/] pools not all serving after {elapsed:.0f}s: {board.describe()} "
                f"(logs: {self.log_dir}); going on"
            )

    def _start_infrastructure(self) -> None:
        from llmops.local.clickhouse_server.launcher import start_store
        from llmops.local.otlp_receiver.launcher import start_traces

        s = self.settings
        with self._step("starting the broker (Tansu) ...", f"broker on {self.addresses.kafka}"):
            self.supervisor.add(
                Child(
                    "broker",
                    self._start_broker,
                    tier=-1,
                    loses=BROKER_MEMORY_LOSS,
                    restart_note="topics created again",
                )
            )
        with self._step(
            f"starting the store (chDB) on {self.data_dir / 'clickhouse'} ...",
            f"store on {LOOPBACK}:{s.store_port}",
        ):
            self.supervisor.add(
                Child(
                    "store",
                    lambda: start_store(
                        self.data_dir,
                        LOOPBACK,
                        s.store_port,
                        s.store_password,
                        self.log_dir / "store.log",
                    ),
                    tier=0,  # after the services, which may still flush rows
                )
            )
        if self.addresses.otlp_endpoint is None:
            traces_port = s.traces_port
            with self._step(
                "starting the trace receiver ...", f"traces on {LOOPBACK}:{traces_port}"
            ):
                self.supervisor.add(
                    Child(
                        "traces",
                        lambda: start_traces(
                            LOOPBACK,
                            traces_port,
                            self.addresses.clickhouse_url,
                            self.log_dir / "traces.log",
                            env={
                                SETTINGS_FILE_ENV: str(self.write_child_settings()),
                                "LLMOPS_DATA_DIR": str(self.data_dir),
                                "LLMOPS_STORE_PORT": str(s.store_port),
                            },
                        ),
                        tier=1,  # after the services' last spans, before the store
                    )
                )
            self.addresses = StackAddresses(
                self.addresses.kafka,
                self.addresses.clickhouse_url,
                f"http://{LOOPBACK}:{traces_port}",
            )

    def _start_broker(self) -> subprocess.Popen[bytes]:
        """Start the broker; on a restart also make every topic again before the services
        (held by the supervisor meanwhile) come back, so none is auto-created at the wrong
        size. The first start's topics are made in `_prepare`."""
        s = self.settings
        proc = start_broker(LOOPBACK, s.broker_port, self.log_dir / "broker.log")
        if self._broker_starts:
            try:
                self._ensure_topics(self._all_topics())
            except Exception:
                stop_process(proc, 5)
                raise
        self._broker_starts += 1
        return proc

    def _ensure_topics(self, specs: list[TopicSpec]) -> list[str]:
        """Create what is missing, connecting and replicating as the settings say."""
        return ensure_topics(
            self.addresses.kafka,
            specs,
            replication_factor=self.settings.topic_replication_factor,
            security=KafkaSecurity.from_settings(self.settings),
        )

    def _all_topics(self) -> list[TopicSpec]:
        """Every topic of the platform, the metrics worker's own repartition topic included."""
        from streams.__main__ import APP_ID_ENV
        from streams.worker import WorkerOptions, topics_needed

        options = WorkerOptions(app_id=os.environ.get(APP_ID_ENV, STREAMS_APP_ID))
        specs = {t.name: t for t in platform_topics(p.name for p in self.settings.pools)}
        specs.update((t.name, t) for t in topics_needed(options))
        return list(specs.values())

    def _prepare(self) -> None:
        pools = [p.name for p in self.settings.pools]
        started = time.monotonic()
        with self.console.status("creating topics and applying ClickHouse migrations ..."):
            created = self._ensure_topics(platform_topics(pools))
            url = self.addresses.clickhouse_url
            applied = migrate(url, login=login_for(url, self.settings))
            seeded = self._seed_prompts()
        self.console.print(
            f"[green]✓[/] topics: {len(created)} created; migrations: {len(applied)} applied; "
            f"prompts: {seeded} ({time.monotonic() - started:.1f}s)"
        )

    def _seed_prompts(self) -> str:
        """The seed prompt file into the registry (llmops/prompts/publish.py push_seed)."""
        import asyncio

        from llmops.prompts.files import seed_prompts_file
        from llmops.prompts.publish import push_seed

        path = seed_prompts_file(self.settings.prompts_file)
        try:
            plan, moves = asyncio.run(push_seed(self.child_settings(), path))
            started = asyncio.run(seed_experiments(self.child_settings(), path))
        except Exception as exc:  # the routers still start from the file itself
            log.warning("seeding the prompt registry from %s failed: %r", path, exc)
            return f"[yellow]not seeded ({type(exc).__name__}: {exc})[/]"
        return (
            f"{len(plan.new_versions)} versions, {len(moves)} labels and "
            f"{len(started)} experiments seeded"
        )

    def _prepare_models(self) -> None:
        from services.inference.models import prepare_model

        for model in sorted({p.model for p in self.settings.pools if p.engine != "fake"}):
            started = time.monotonic()
            prepare_model(model, self.data_dir, self.console)
            self.console.print(
                f"[green]✓[/] model {model} ready ({time.monotonic() - started:.1f}s)"
            )

    def child_settings(self) -> Settings:
        """The settings every child runs with: ours, whether given by YAML, env or defaults,
        with the addresses, data dir and signing key the stack decided."""
        s = self.settings
        update: dict[str, object] = {
            "kafka_bootstrap_servers": self.addresses.kafka,
            "clickhouse_url": self.addresses.clickhouse_url,
            "otel_exporter_otlp_endpoint": self.addresses.otlp_endpoint,
            "data_dir": self.data_dir,
        }
        if s.prompts_file is not None:
            update["prompts_file"] = s.prompts_file.resolve()  # children may start elsewhere
        if s.signing != "off" and s.signing_key is None and self.embedded:
            update["signing_key"] = SecretStr(embedded_signing_key(self.data_dir))
        return s.model_copy(update=update)

    def write_child_settings(self) -> Path:
        """The children's settings file (0600: it holds the secrets), written afresh."""
        return write_settings_file(self.child_settings(), self.data_dir / CHILD_SETTINGS_FILE)

    def service_env(self) -> dict[str, str]:
        env = {
            # Every setting, nested pools and routing included, however it was given to us.
            SETTINGS_FILE_ENV: str(self.write_child_settings()),
            # The stack's own choices also go as variables: they beat those the children
            # inherit from our environment (which rank above the file).
            "KAFKA_BOOTSTRAP_SERVERS": self.addresses.kafka,
            "CLICKHOUSE_URL": self.addresses.clickhouse_url,
            "LLMOPS_DATA_DIR": str(self.data_dir),
            # with LLMOPS_DATA_DIR: how children find the embedded store's credentials
            "LLMOPS_STORE_PORT": str(self.settings.store_port),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if self.addresses.otlp_endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.addresses.otlp_endpoint
        env.update(self.signing_env())
        return env

    def signing_env(self) -> dict[str, str]:
        """The children's signing key: the configured one, else (embedded) the data dir's,
        made at the first start. Without either, each service refuses to start, saying why."""
        s = self.settings
        if s.signing == "off":
            return {"LLMOPS_SIGNING": "off"}
        if s.signing_key is not None:
            key = s.signing_key.get_secret_value()
        elif self.embedded:
            key = embedded_signing_key(self.data_dir)
        else:
            return {}
        previous = {k: v.get_secret_value() for k, v in s.signing_previous_keys.items()}
        return {
            "LLMOPS_SIGNING_KEY": key,
            "LLMOPS_SIGNING_KEY_ID": s.signing_key_id,
            "LLMOPS_SIGNING_PREVIOUS_KEYS": json.dumps(previous),
        }

    def _start_services(self) -> None:
        env = self.service_env()
        base = self.settings.metrics_base_port
        # Each Kafka client of ours waits for the embedded broker (restarted, they restart).
        needs = "broker" if self.embedded else None

        def port(offset: int) -> str:
            return str(base + offset) if base else "0"

        self.supervisor.add(
            python_child(
                "router",
                ["services.router"],
                {**env, "LLMOPS_METRICS_BASE_PORT": str(base)},
                self.log_dir,
                needs=needs,
            )
        )
        # On a small shared machine one torch thread per pool beats two that wait on each
        # other (measured: 18 vs 2 tok/s at load 6); an explicit OMP_NUM_THREADS wins.
        engine_env = {**env, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        for i, pool in enumerate(self.settings.pools):
            self.supervisor.add(
                python_child(
                    f"inference-{pool.name}",
                    ["services.inference", "--pool", pool.name, "--metrics-port", port(10 + i)],
                    engine_env,
                    self.log_dir,
                    needs=needs,
                )
            )
        self.supervisor.add(
            python_child(
                "streams", ["streams", "--metrics-port", port(2)], env, self.log_dir, needs=needs
            )
        )

    # --- run ------------------------------------------------------------------------------

    def watch(self) -> None:
        for event in self.supervisor.check():
            self.console.print(f"[yellow]![/] {event} (logs: {self.log_dir})")

    def stop(self) -> None:
        with self.console.status("stopping ..."):
            self.supervisor.stop()
        self.console.print("[green]✓[/] stopped every child process")


def log_dir_of(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "logs"


async def seed_experiments(settings: Settings, path: Path) -> list[str]:
    """The seed file's experiments that llm.experiments has never seen, published there (so
    `llmops experiments` shows what the routers run); one that exists, in any state, is the
    operators' and stays as it is."""
    from llmops.experiments.publish import publish_with_settings
    from llmops.prompts.files import load_prompt_set
    from llmops.prompts.live import read_registry

    seeded = load_prompt_set([path]).experiments
    current = await read_registry(settings)
    started = []
    for name, experiment in seeded.items():
        if name not in current.experiments:
            await publish_with_settings(settings, experiment)
            started.append(name)
    return started
