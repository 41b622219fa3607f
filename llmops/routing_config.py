"""Routing knobs: when a pool counts as dead, saturated or failing, and traffic shifts.

Part of Settings (`routing:` in the YAML file, `LLMOPS_ROUTING__*` in the environment).
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field, field_validator, model_validator


class TrafficShift(BaseModel):
    """Move a share of the traffic that would go to `source` onto `target` (a canary).

    The share is `percent`, or ramps linearly from `percent` to `ramp_to_percent` over
    `ramp_s` seconds from `ramp_start`. Sticky: a request key keeps its side as the share
    grows. `target` takes no other traffic while the shift is configured.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$", max_length=64)
    source: str
    target: str
    percent: float = Field(default=1.0, ge=0.0, le=100.0)
    ramp_to_percent: float | None = Field(default=None, ge=0.0, le=100.0)
    ramp_start: datetime | None = None
    ramp_s: float = Field(default=3600.0, gt=0.0)

    @field_validator("ramp_start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # A time written without a zone in the YAML file is UTC, like every time here.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _ramp_is_complete(self) -> TrafficShift:
        if self.source == self.target:
            raise ValueError(f"shift {self.name!r}: source and target are the same pool")
        if (self.ramp_to_percent is None) != (self.ramp_start is None):
            raise ValueError(f"shift {self.name!r}: a ramp needs ramp_to_percent and ramp_start")
        return self


class RoutingConfig(BaseModel):
    # A pool with no heartbeat for this long is dead: no traffic, its queue is rescued.
    dead_after_s: float = Field(default=3.0, gt=0.0, le=300.0)
    # Headroom: a pool takes requests while in flight + queued < capacity * this.
    headroom_factor: float = Field(default=2.0, gt=0.0, le=100.0)
    # The breaker opens when, over `error_window_s`, at least `min_requests` finished and
    # this share of them failed.
    error_rate_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    error_window_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    min_requests: int = Field(default=5, ge=1, le=100_000)
    # An open breaker waits this long, then lets `probe_requests` through (half-open).
    cooldown_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    probe_requests: int = Field(default=3, ge=1, le=1000)
    # A configured pool never heard from counts as dead this long after the router starts.
    startup_grace_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    # An instance loading its engine (its beats say "starting") counts as dead only after this
    # long without a beat: loading a model can starve its heartbeat for seconds.
    starting_dead_after_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    # A request that finds no healthy pool waits this long for one (never past its deadline)
    # before it is answered `no_healthy_pool`: a restart of the only pool is not an error.
    # At most `max_parked` wait at once; beyond that they are answered at once. 0: no waiting.
    wait_for_pool_s: float = Field(default=30.0, ge=0.0, le=3600.0)
    max_parked: int = Field(default=1000, ge=0, le=100_000)
    shifts: list[TrafficShift] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_shift_per_target(self) -> RoutingConfig:
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"traffic shift names must be unique: {names}")
        targets = [s.target for s in self.shifts]
        if len(set(targets)) != len(targets):
            raise ValueError(f"a pool can be the target of one shift only: {targets}")
        return self
