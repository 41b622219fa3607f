"""`llmops experiments`: A/B experiments over prompt versions.

    llmops experiments start NAME --prompt P --variant control=P@1:50 --variant new=P@2:50
        [--sticky user|session] [--ramp 10,25,50 --ramp-every 1h]
        [--guardrail refusal_rate,pii_rate,error_rate] [--control NAME]
    llmops experiments status [NAME] [--json]
    llmops experiments weights NAME control=40 new=60
    llmops experiments stop NAME [--reason ...]
    llmops experiments promote NAME [VARIANT] [--force --reason ...]
    llmops experiments report NAME [--json]

Every change is a new signed state of the experiment on llm.experiments (the router follows
it within a second); the current states are read from the topics (llmops.prompts.live).
The report reads ClickHouse (llmops.experiments.report).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from llmops.cli.console import console
from llmops.cli.errors import Mistake
from llmops.config import Settings, get_settings
from llmops.experiments import events
from llmops.experiments.events import ExperimentError
from schemas import Experiment, utc_now
from schemas.experiments import GUARDRAIL_METRICS

if TYPE_CHECKING:
    from llmops.experiments.analysis import Analysis, MetricResult
    from llmops.prompts.registry import PromptSet

commands = typer.Typer(
    name="experiments",
    help="A/B experiments over prompt versions: start, status, weights, stop, promote, report.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PROMOTE_LABEL = "production"


def parse_duration(text: str) -> float:
    found = _DURATION.match(text.strip())
    if found is None:
        raise Mistake(f"--ramp-every {text!r}: expected a duration such as 30m, 1h, 1d")
    seconds = float(found[1]) * _UNIT_S[found[2]]
    if not 0 < seconds <= 366 * 86400 / 32:
        raise Mistake(f"--ramp-every {text!r}: between 1s and about 11 days")
    return seconds


def parse_ramp(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        steps = [float(part.strip().rstrip("%")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise Mistake(f"--ramp {text!r}: expected percentages such as 10,25,50") from None
    if not steps or steps != sorted(steps) or any(not 0 < s <= 100 for s in steps):
        raise Mistake(f"--ramp {text!r}: increasing percentages in (0, 100], e.g. 10,25,50")
    return steps


def parse_guardrails(text: str | None) -> list[str]:
    if not text:
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in GUARDRAIL_METRICS]
    if unknown:
        raise Mistake(
            f"--guardrail: unknown {', '.join(unknown)}; known: {', '.join(GUARDRAIL_METRICS)}"
        )
    return names


def parse_weights(pairs: Sequence[str]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            weight = float(value)
        except ValueError:
            raise Mistake(f"{pair!r}: expected VARIANT=WEIGHT, e.g. control=40") from None
        if not name or not math.isfinite(weight) or weight < 0:
            raise Mistake(f"{pair!r}: expected VARIANT=WEIGHT with a weight >= 0")
        weights[name] = weight
    if not weights:
        raise Mistake("give the new weights as VARIANT=WEIGHT ...")
    return weights


# ---------------------------------------------------------------- IO


def read_prompts(settings: Settings) -> PromptSet:
    from llmops.prompts.live import RegistryUnavailable, read_registry

    try:
        return asyncio.run(read_registry(settings))
    except RegistryUnavailable as exc:
        raise ConnectionError(f"{exc} (KAFKA_BOOTSTRAP_SERVERS)") from None


def publish(settings: Settings, experiment: Experiment) -> None:
    from llmops.experiments.publish import publish_with_settings

    asyncio.run(publish_with_settings(settings, experiment))


def current(prompts: PromptSet, name: str) -> Experiment:
    found = prompts.experiments.get(name)
    if found is None:
        known = ", ".join(sorted(prompts.experiments)) or "none"
        raise Mistake(f"no experiment named {name!r} (known: {known})")
    return found


def _checked(call: Any, *args: Any, **kwargs: Any) -> Experiment:
    try:
        result: Experiment = call(*args, **kwargs)
    except (ExperimentError, KeyError) as exc:
        raise Mistake(str(exc).strip("'\"")) from None
    return result


# ---------------------------------------------------------------- rendering


def share_text(experiment: Experiment) -> str:
    shares = experiment.shares()
    parts = []
    for v in experiment.variants:
        state = " stopped" if v.stopped else ""
        control = "*" if v.name == experiment.control_name else ""
        parts.append(f"{v.name}{control}=v{v.prompt_version} {shares[v.name]:.0%}{state}")
    return ", ".join(parts)


def status_table(experiments: Sequence[Experiment]) -> Table:
    table = Table("experiment", "prompt", "status", "variants (*control)", "sticky", "guardrails",
                  "rev", "last change", title="experiments")  # fmt: skip
    style = {"running": "green", "stopped": "yellow", "promoted": "cyan", "draft": "dim"}
    for e in experiments:
        status = e.status + (f" ({e.winner})" if e.winner else "")
        table.add_row(
            e.name, e.prompt_name, f"[{style[e.status]}]{status}[/]", escape(share_text(e)),
            e.sticky, ",".join(e.guardrails) or "-", str(e.revision), escape(e.reason[:60]),
        )  # fmt: skip
    return table


def status_json(experiment: Experiment) -> dict[str, Any]:
    doc = experiment.model_dump(mode="json", exclude_none=True)
    doc["shares"] = experiment.shares()
    return doc


def _number(value: float, kind: str) -> str:
    if kind == "rate":
        return f"{value:.2%}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _interval(r: MetricResult) -> str:
    scale = 100 if r.kind == "rate" else 1
    unit = " pt" if r.kind == "rate" else ""

    def f(v: float) -> str:
        return "∞" if math.isinf(v) else f"{v * scale:+.3g}"

    return f"{f(r.difference.estimate)}{unit} [{f(r.difference.low)}, {f(r.difference.high)}]"


def _arm(value: float, quantiles: tuple[float, float] | None, kind: str) -> str:
    text = _number(value, kind)
    if quantiles is not None:
        text = f"p50 {quantiles[0]:,.0f} / p95 {quantiles[1]:,.0f}"
    return text


DIRECTION = {"better": "[green]better[/]", "worse": "[bold red]WORSE[/]",
             "different": "[yellow]differs[/]", "none": "[dim]—[/]"}  # fmt: skip


def report_table(analysis: Analysis) -> Table:
    table = Table(
        "metric", "variant", analysis.control, "treatment", "Δ (95% CI)", "relative", "test",
        "p", "p Holm", "always-valid p", "verdict",
        title=f"experiment {analysis.experiment}: each variant against {analysis.control}",
    )  # fmt: skip
    for r in analysis.results:
        relative = "" if r.relative is None else f"{r.relative:+.1%}"
        table.add_row(
            r.label, r.variant, _arm(r.control, r.quantiles_control, r.kind),
            _arm(r.treatment, r.quantiles_treatment, r.kind), _interval(r), relative, r.test,
            f"{r.p_value:.2g}", f"{r.p_adjusted:.2g}", f"{r.always_valid_adjusted:.2g}",
            DIRECTION[r.direction],
        )  # fmt: skip
    return table


def print_report(analysis: Analysis) -> None:
    srm = analysis.srm
    if srm is not None and srm.mismatch:
        console.print(
            Panel(
                escape(analysis.verdict[0]),
                title="[bold white on red] SAMPLE RATIO MISMATCH [/]",
                border_style="bold red",
            )
        )
    counts = ", ".join(f"{v}: {n:,}" for v, n in analysis.responses.items())
    console.print(f"responses: {counts}")
    console.print(report_table(analysis))
    if srm is not None:
        state = "[bold red]MISMATCH[/]" if srm.mismatch else "[green]ok[/]"
        console.print(
            f"sample ratio: {state} (units {list(srm.observed)} vs expected "
            f"{[round(e) for e in srm.expected]}, chi-square p = {srm.p_value:.3g})"
        )
    console.print(
        "[dim]always-valid p: mSPRT, safe to read at any time; p and p Holm: fixed-horizon, "
        "valid once at a planned sample size. Holm across each variant's metrics.[/]"
    )
    for line in analysis.verdict:
        style = "bold red" if "WORSE" in line or "MISMATCH" in line else "bold"
        console.print(f"[{style}]verdict:[/] {escape(line)}")


# ---------------------------------------------------------------- commands


@commands.command()
def start(
    name: Annotated[str, typer.Argument(help="the experiment's name")],
    prompt: Annotated[str, typer.Option("--prompt", help="the prompt whose versions compete")],
    variant: Annotated[
        list[str], typer.Option("--variant", help="NAME=PROMPT@VERSION:WEIGHT (at least two)")
    ],
    sticky: Annotated[
        str, typer.Option(help="keep each user (or session) on one variant")
    ] = "user",
    ramp: Annotated[
        str | None, typer.Option(help="treatment share steps in percent, e.g. 10,25,50")
    ] = None,
    ramp_every: Annotated[str, typer.Option(help="time between ramp steps")] = "1h",
    guardrail: Annotated[
        str | None,
        typer.Option(help=f"rates that stop a worse variant: {','.join(GUARDRAIL_METRICS)}"),
    ] = None,
    control: Annotated[str | None, typer.Option(help="the control (default: the first)")] = None,
) -> None:
    """Start an experiment: the router splits the prompt's traffic at once."""
    if sticky not in ("user", "session"):
        raise Mistake(f"--sticky {sticky!r}: user or session")
    specs = [_checked_spec(v) for v in variant]
    steps = parse_ramp(ramp)
    every = parse_duration(ramp_every)
    guards = parse_guardrails(guardrail)
    settings = get_settings()
    prompts = read_prompts(settings)
    known = prompts.versions.get(prompt)
    if not known:
        raise Mistake(f"unknown prompt {prompt!r}; push it first (`llmops prompts push`)")
    for spec in specs:
        if spec.version not in known:
            raise Mistake(
                f"prompt {prompt!r} has no version {spec.version} (--variant {spec.name})"
            )
    old = prompts.experiments.get(name)
    if old is not None and old.status == "running":
        raise Mistake(f"experiment {name!r} is already running; stop it first")
    running = prompts.running_experiment(prompt)
    if running is not None:
        raise Mistake(f"prompt {prompt!r} already has running experiment {running.name!r}")
    experiment = _checked(
        events.start, name, prompt, specs, utc_now(), sticky=sticky, guardrails=guards,
        ramp=steps, ramp_every_s=every, control=control,
        revision=(old.revision + 1) if old is not None else 1,
    )  # fmt: skip
    publish(settings, experiment)
    console.print(f"[green]✓[/] experiment {name} started: {escape(share_text(experiment))}")
    if experiment.ramp:
        console.print(f"  ramp: {len(experiment.ramp)} steps, every {ramp_every}")


def _checked_spec(text: str) -> events.VariantSpec:
    try:
        return events.parse_variant(text)
    except ExperimentError as exc:
        raise Mistake(str(exc)) from None


@commands.command()
def status(
    name: Annotated[str | None, typer.Argument(help="one experiment (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The experiments and their current split, as the router sees them."""
    prompts = read_prompts(get_settings())
    found = (
        [current(prompts, name)]
        if name
        else sorted(prompts.experiments.values(), key=lambda e: e.name)
    )
    if as_json:
        print(json.dumps([status_json(e) for e in found], default=str))
        return
    if not found:
        console.print("no experiments yet (`llmops experiments start ...`)")
        return
    console.print(status_table(found))


@commands.command()
def weights(
    name: Annotated[str, typer.Argument(help="the experiment")],
    pairs: Annotated[list[str], typer.Argument(help="VARIANT=WEIGHT ...")],
) -> None:
    """Change the split, moving as few users as possible."""
    new = parse_weights(pairs)
    settings = get_settings()
    experiment = current(read_prompts(settings), name)
    changed = _checked(events.with_weights, experiment, new, utc_now(), "weights changed")
    publish(settings, changed)
    console.print(f"[green]✓[/] {name}: {escape(share_text(changed))}")


@commands.command()
def stop(
    name: Annotated[str, typer.Argument(help="the experiment")],
    reason: Annotated[str, typer.Option(help="why (kept in its history)")] = "stopped by hand",
) -> None:
    """Stop assigning variants: the prompt's label serves everyone again."""
    settings = get_settings()
    experiment = current(read_prompts(settings), name)
    stopped = _checked(events.stop, experiment, utc_now(), reason)
    publish(settings, stopped)
    console.print(f"[green]✓[/] experiment {name} stopped")


def _winner(settings: Settings, name: str) -> str:
    """The treatment the report calls better on something and worse on nothing."""
    analysis = build_analysis(settings, name)
    if analysis.srm is not None and analysis.srm.mismatch:
        raise Mistake(f"experiment {name!r} has a sample ratio mismatch: name the VARIANT yourself")
    winners = []
    for variant in analysis.variants[1:]:
        mine = [r.direction for r in analysis.results if r.variant == variant]
        if "better" in mine and "worse" not in mine:
            winners.append(variant)
    if len(winners) != 1:
        raise Mistake(
            f"the report names {len(winners)} clear winners of {name!r}: "
            "name the VARIANT to promote"
        )
    return winners[0]


@commands.command()
def promote(
    name: Annotated[str, typer.Argument(help="the experiment")],
    variant: Annotated[
        str | None, typer.Argument(help="the winner (default: the report's clear winner)")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="move a protected label without a passing suite")
    ] = False,
    reason: Annotated[str, typer.Option(help="why (recorded; needed with --force)")] = "",
) -> None:
    """Move the prompt's production label to the winner's version and end the experiment."""
    from llmops.cli.prompts import gate_evidence
    from llmops.prompts.gate import GateEvidence, LabelRefused, decide_move
    from llmops.prompts.publish import current_actor
    from llmops.prompts.publish import publish_with_settings as publish_moves

    settings = get_settings()
    prompts = read_prompts(settings)
    experiment = current(prompts, name)
    winner = variant or _winner(settings, name)
    promoted = _checked(
        events.promote, experiment, winner, utc_now(), reason or f"promoted {winner}"
    )
    version = promoted.variant(winner).prompt_version
    assert version is not None  # events.promote checks it
    evidence = GateEvidence(None)
    if PROMOTE_LABEL in settings.protected_labels and not force:
        evidence = gate_evidence(settings, experiment.prompt_name, version, force=False)
    try:
        move = decide_move(
            prompts, experiment.prompt_name, version, PROMOTE_LABEL,
            protected=settings.protected_labels, evidence=evidence, actor=current_actor(),
            force=force, reason=reason or f"experiment {name}: {winner} won",
        )  # fmt: skip
    except LabelRefused as exc:
        raise Mistake(str(exc)) from None
    asyncio.run(publish_moves(settings, [], [move] if move is not None else []))
    publish(settings, promoted)
    console.print(
        f"[green]✓[/] {experiment.prompt_name}@{PROMOTE_LABEL} -> v{version} ({winner}); "
        f"experiment {name} promoted"
    )


def build_analysis(settings: Settings, name: str) -> Analysis:
    from llmops.clickhouse.client import connect_settings
    from llmops.experiments.report import NoData, build_report

    client = connect_settings(settings)
    try:
        with console.status(f"reading experiment {name} from ClickHouse..."):
            return build_report(client, name)
    except NoData as exc:
        raise Mistake(str(exc)) from None
    finally:
        client.close()


@commands.command()
def report(
    name: Annotated[str, typer.Argument(help="the experiment")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Each variant against control on every metric, safe to read at any time."""
    from llmops.experiments.report import analysis_text

    analysis = build_analysis(get_settings(), name)
    if as_json:
        print(analysis_text(analysis))
        return
    print_report(analysis)
