"""The experiments controller: a timer on the one worker of the group that owns llm.experiments'
partition (the experiment-history sink's; one partition, so one owner), that, for each
running experiment,

- applies its ramp's next step when due (a new state with the step's weights), and
- checks its guardrail metrics per variant against control (llmops.experiments.guardrail:
  the always-valid test); a variant significantly worse is stopped: a new signed Experiment
  state on llm.experiments (the variant stopped, its slots back to control), an Alert on
  llm.alerts and in `alerts`, and the decision with its evidence in `experiment_decisions`.

The running experiments are the newest states in `experiment_events` (the history sink,
streams/agents/feedback.py), overlaid with the states this controller published itself (the
sink may not have stored them yet), so a decision is never taken twice on a stale state.
Order: decision and alert rows first, then the events; a crash in between decides again on
the next tick (same decision id: the rows collapse).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import faust

from llmops.experiments.events import ExperimentError, due_ramp_step
from llmops.experiments.guardrail import (
    DECISION_COLUMNS,
    Decision,
    GuardrailConfig,
    alert_for,
    apply,
    check,
    counts_from_rows,
    decision_row,
    rates_query,
)
from llmops.kafka.signing import SigningKeys
from schemas import Alert, Experiment
from schemas.topics import ALERTS, EXPERIMENTS
from streams import rows
from streams.agents.delivery import Delivery
from streams.records import Outgoing, json_headers
from streams.sink import Reader, TableWriter

if TYPE_CHECKING:
    from llmops.config import Settings

log = logging.getLogger(__name__)

DECISIONS_TABLE = "experiment_decisions"
INTERVAL_S = 5.0
MAX_EXPERIMENTS = 1000
NEWEST_SQL = (
    "SELECT name, argMax(payload, revision) AS payload FROM experiment_events FINAL "
    f"GROUP BY name LIMIT {MAX_EXPERIMENTS}"
)


class GuardrailAgent:
    def __init__(
        self,
        reader: Reader,
        decision_writer: TableWriter,
        alert_writer: TableWriter,
        delivery: Delivery,
        signing: SigningKeys | None,
        interval_s: float = INTERVAL_S,
        config: GuardrailConfig | None = None,
    ) -> None:
        self.reader = reader
        self.decision_writer = decision_writer
        self.alert_writer = alert_writer
        self.delivery = delivery
        self.signing = signing
        self.interval_s = interval_s
        self.config = config or GuardrailConfig()
        self._published: dict[str, Experiment] = {}
        self.app: faust.App | None = None
        self._unusable: set[tuple[str, int]] = set()
        self.decisions = 0

    @classmethod
    def build(
        cls,
        url: str,
        login: tuple[str, str] | None,
        delivery: Delivery,
        signing: SigningKeys | None,
        settings: Settings,
    ) -> GuardrailAgent:
        """The agent with the settings' guardrail knobs (interval, alpha, tau, arm size)."""
        return cls(
            Reader(url, login=login),
            TableWriter(url, DECISIONS_TABLE, DECISION_COLUMNS, login=login),
            TableWriter(url, rows.ALERTS_TABLE, rows.ALERT_COLUMNS, login=login),
            delivery,
            signing,
            interval_s=settings.guardrail_interval_s,
            config=GuardrailConfig.from_settings(settings),
        )

    def register(self, app: faust.App) -> None:
        self.app = app
        app.timer(self.interval_s, name="streams.experiments_guardrail")(self.tick)

    def owns_experiments(self) -> bool:
        """Whether this worker holds llm.experiments' partition: one controller decides for
        the whole group (faust's leader election is off: topic_disable_leader)."""
        if self.app is None:
            return False
        return any(tp.topic == EXPERIMENTS.name for tp in self.app.consumer.assignment())

    def close(self) -> None:
        self.reader.close()
        self.decision_writer.close()
        self.alert_writer.close()

    async def tick(self) -> None:
        if not self.owns_experiments():
            return
        try:
            await self.run_once(datetime.now(UTC))
        except Exception as error:  # a bad tick must not end the timer (nor the worker)
            log.error("experiment guardrail tick failed: %s", error, exc_info=error)

    async def running(self) -> list[Experiment]:
        found: dict[str, Experiment] = {}
        for row in await self.reader.rows(NEWEST_SQL, {}):
            try:
                found[row["name"]] = Experiment.model_validate_json(row["payload"])
            except ValueError as error:
                log.warning("unusable stored experiment %r: %s", row["name"], error)
        for name, mine in self._published.items():
            if name not in found or found[name].revision < mine.revision:
                found[name] = mine
        return [e for e in found.values() if e.status == "running"]

    async def run_once(self, now: datetime) -> None:
        for experiment in await self.running():
            try:
                await self._control(experiment, now)
            except (ExperimentError, ValueError) as error:
                # A state no step can apply to (a hostile ramp): said once per state, skipped.
                key = (experiment.name, experiment.revision)
                if key not in self._unusable:
                    self._unusable.add(key)
                    log.warning("experiment %s r%d left as is: %s", *key, error)

    async def _control(self, experiment: Experiment, now: datetime) -> None:
        if (experiment.name, experiment.revision) in self._unusable:
            return
        stepped = due_ramp_step(experiment, now)
        if stepped is not None:
            await self._publish(stepped, [], [])
            experiment = stepped
        if experiment.guardrails:
            await self._guard(experiment, now)

    async def _guard(self, experiment: Experiment, now: datetime) -> None:
        metrics = list(dict.fromkeys(experiment.guardrails))
        since = experiment.started_at or datetime(1970, 1, 1, tzinfo=UTC)
        found = await self.reader.rows(rates_query(metrics), {"e": experiment.name, "since": since})
        decisions = check(experiment, counts_from_rows(found, metrics), self.config)
        if not decisions:
            return
        stopped = apply(experiment, decisions, now)
        alerts = [alert_for(d, now) for d in decisions]
        await self._publish(stopped, decisions, alerts, now)

    async def _publish(
        self,
        experiment: Experiment,
        decisions: Sequence[Decision],
        alerts: Sequence[Alert],
        now: datetime | None = None,
    ) -> None:
        when = now or experiment.ts
        refused = await self.decision_writer.write([decision_row(d, when) for d in decisions])
        refused += await self.alert_writer.write([rows.alert_row(a) for a in alerts])
        for failure in refused:
            log.error("guardrail output refused by the store: %s", failure.reason)
        key = experiment.name.encode()
        value = experiment.to_bytes()
        headers: list[Any] = list(json_headers("Experiment"))
        if self.signing is not None:  # the router and the sink accept signed states only
            headers.append(self.signing.header(EXPERIMENTS.name, headers, key, value))
        outgoing = [Outgoing(EXPERIMENTS.name, key, value, headers)]
        outgoing += [
            Outgoing(ALERTS.name, a.subject.encode(), a.to_bytes(), json_headers("Alert"))
            for a in alerts
        ]
        await self.delivery.publish(outgoing)
        self._published[experiment.name] = experiment
        self.decisions += len(decisions)
        for decision in decisions:
            log.warning("guardrail: %s", decision.message)
