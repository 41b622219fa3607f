"""presidio_pii: NER PII on a stable sample of outputs. The model loads once per session (the
analyzer is shared by every detector in the process, the contract suite's included)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from streams.detectors import drivers
from streams.detectors.base import Exchange
from streams.detectors.factory import DETECTORS
from streams.detectors.presidio import (
    DEFAULT_SAMPLE_RATE,
    MAX_NER_CHARS,
    PresidioPiiDetector,
    readable,
)
from streams.sampling import sampled

TEXT = "Angela Merkel met the French delegation in Berlin on Monday. Write to a@b.example."


@pytest.fixture(scope="session")
def every() -> PresidioPiiDetector:
    return PresidioPiiDetector(1.0)


def test_registered_off_by_default_at_the_settings_rate() -> None:
    assert "presidio_pii" not in drivers.DEFAULT_DETECTORS
    built = DETECTORS.create("presidio_pii")
    assert isinstance(built, PresidioPiiDetector)
    assert built.sample_rate == DEFAULT_SAMPLE_RATE == 0.05


def test_people_places_and_groups_with_their_spans(every: PresidioPiiDetector) -> None:
    [signals] = every.detect([Exchange("r1", "who?", TEXT)])
    by_name = {s.name: s for s in signals}
    assert by_name["pii_ner_output"].value == 3
    assert by_name["pii_ner_output.PERSON"].value == 1
    assert by_name["pii_ner_output.LOCATION"].value == 1
    assert by_name["pii_ner_output.NRP"].value == 1
    found = {(f.kind, TEXT[f.start : f.end]) for f in by_name["pii_ner_output"].findings}
    assert found == {("PERSON", "Angela Merkel"), ("NRP", "French"), ("LOCATION", "Berlin")}
    assert all(f.where == "output" and 0 < f.score <= 1 for f in by_name["pii_ner_output"].findings)
    # Patterned PII (the email) is the cheap tier's: not reported twice.
    assert all(s.detector == "presidio_pii" and s.version == "1" for s in signals)
    assert "pii_ner_output.EMAIL" not in by_name


def test_the_input_is_not_read(every: PresidioPiiDetector) -> None:
    [signals] = every.detect([Exchange("r1", TEXT, "Nothing here.")])
    assert [(s.name, s.value) for s in signals] == [("pii_ner_output", 0.0)]


def test_only_the_sampled_share_is_read_and_a_replay_agrees() -> None:
    half = PresidioPiiDetector(0.5)
    exchanges = [Exchange(f"req-{i}", "", TEXT) for i in range(40)]
    first = half.detect(exchanges)
    for exchange, signals in zip(exchanges, first, strict=True):
        assert bool(signals) == sampled(exchange.request_id, 0.5)
    assert 0 < sum(bool(s) for s in first) < len(exchanges)
    assert half.detect(exchanges) == first
    assert PresidioPiiDetector(0.0).detect(exchanges) == [[] for _ in exchanges]


def test_a_long_output_is_read_up_to_the_bound_and_flagged(every: PresidioPiiDetector) -> None:
    output = "x " * MAX_NER_CHARS + "Angela Merkel lives in Berlin."
    [signals] = every.detect([Exchange("r", "", output)])
    by_name = {s.name: s.value for s in signals}
    assert by_name == {"pii_ner_output": 0.0, "pii_ner_output_truncated": 1.0}


def test_hostile_text_keeps_offsets_and_costs_little(every: PresidioPiiDetector) -> None:
    hostile = "\ud800" + "[" * 5000 + " Angela Merkel met us."
    assert len(readable(hostile)) == len(hostile)
    [signals] = every.detect([Exchange("r", "", hostile)])
    [person] = signals[0].findings
    assert hostile[person.start : person.end] == "Angela Merkel"


def test_bounds_are_enforced() -> None:
    for rate in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sample_rate"):
            PresidioPiiDetector(rate)
    with pytest.raises(ValueError, match="entities"):
        PresidioPiiDetector(1.0, entities=["EMAIL"])
    with pytest.raises(ValueError, match="entities"):
        PresidioPiiDetector(1.0, entities=[])
    with pytest.raises(ValueError, match="max_chars"):
        PresidioPiiDetector(1.0, max_chars=0)
    with pytest.raises(ValueError, match="batch_size"):
        PresidioPiiDetector(1.0, batch_size=0)


def test_loading_and_detecting_never_touch_the_network() -> None:
    # A fresh interpreter (this one has the model loaded already) in which any connection or
    # name lookup raises: the model loads from the installed package and tldextract is never
    # called, so nothing tries the network and nothing waits for it.
    code = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise AssertionError(f"network used: {args!r}")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.getaddrinfo = refuse
        socket.create_connection = refuse

        from streams.detectors.base import Exchange
        from streams.detectors.presidio import PresidioPiiDetector

        text = "Mail john@example.com or ask Angela Merkel in Berlin."
        [signals] = PresidioPiiDetector(1.0).detect([Exchange("r", "", text)])
        print(sorted((s.name, s.value) for s in signals))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "('pii_ner_output.PERSON', 1.0)" in done.stdout


def test_the_deep_rate_applies_through_the_factory() -> None:
    from streams.detectors.factory import create_detectors

    [built] = create_detectors(["presidio_pii"], sample_rates={"deep": 0.25, "embedding": 1.0})
    assert isinstance(built, PresidioPiiDetector)
    assert (built.sample_tier, built.sample_rate) == ("deep", 0.25)
    assert built.with_sample_rate(1.0).sample_rate == 1.0
