"""The cheap-tier PII detector: each recogniser on true positives and look-alikes, exact spans
and redactions, hostile text, and the detector's signals in batch order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detectors.base import Exchange, Finding
from streams.detectors.pii import (
    MAX_SCAN_CHARS,
    UNSCANNED,
    PiiDetector,
    find_pii,
    iban_valid,
    luhn_valid,
    redact,
)


def found(text: str) -> list[tuple[str, str]]:
    return [(e.kind, text[e.start : e.end]) for e in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.doe+x@example.co.uk now.", [("EMAIL", "john.doe+x@example.co.uk")]),
        ("a@b.io", [("EMAIL", "a@b.io")]),
        # phones: international, North American, trunk-0 national
        ("call +44 20 7946 0958 today", [("PHONE", "+44 20 7946 0958")]),
        ("call +4915112345678", [("PHONE", "+4915112345678")]),
        ("call +1 (415) 555-2671", [("PHONE", "+1 (415) 555-2671")]),
        ("call (415) 555-2671", [("PHONE", "(415) 555-2671")]),
        ("call 415-555-2671.", [("PHONE", "415-555-2671")]),
        ("call 1-800-555-0199", [("PHONE", "1-800-555-0199")]),
        ("call 020 7946 0958", [("PHONE", "020 7946 0958")]),
        ("call 07700 900123", [("PHONE", "07700 900123")]),
        ("appel 01 23 45 67 89", [("PHONE", "01 23 45 67 89")]),
        # cards: grouped, bare, Amex 4-6-5
        ("card 4111 1111 1111 1111, ok", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("card 4111-1111-1111-1111", [("CREDIT_CARD", "4111-1111-1111-1111")]),
        ("mc 5555555555554444.", [("CREDIT_CARD", "5555555555554444")]),
        ("amex 3782 822463 10005", [("CREDIT_CARD", "3782 822463 10005")]),
        # IBANs: printed and electronic
        ("iban DE89 3704 0044 0532 0130 00 AND more", [("IBAN", "DE89 3704 0044 0532 0130 00")]),
        ("GB82WEST12345698765432", [("IBAN", "GB82WEST12345698765432")]),
        ("NO9386011117947", [("IBAN", "NO9386011117947")]),
        # IP addresses
        ("from 192.168.1.10, then", [("IP_ADDRESS", "192.168.1.10")]),
        ("from 0.0.0.0", [("IP_ADDRESS", "0.0.0.0")]),
        ("v6 2001:db8::8a2e:370:7334 ok", [("IP_ADDRESS", "2001:db8::8a2e:370:7334")]),
        ("link fe80::1", [("IP_ADDRESS", "fe80::1")]),
        (
            "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            [("IP_ADDRESS", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")],
        ),
        # national ids
        ("ssn 123-45-6789", [("US_SSN", "123-45-6789")]),
        ("ssn 536 22 1234", [("US_SSN", "536 22 1234")]),
        ("nino AB123456C", [("UK_NINO", "AB123456C")]),
        ("nino AB 12 34 56 C.", [("UK_NINO", "AB 12 34 56 C")]),
    ],
)
def test_true_positives_with_exact_spans(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no at sign here, user(at)example.com, @handle, a@b, x@.com, .a@b.com.x..",
        "double dot a..b@example.com",
        # cards: Luhn-invalid, unknown issuer, wrong length
        "card 4111 1111 1111 1112",
        "card 1234 5678 9012 3456",
        "ts 1700000000000 ms",
        # IBANs: wrong check digits, wrong length, unknown country
        "iban DE89 3704 0044 0532 0130 01",
        "iban DE89370400440532013",
        "code XX82WEST12345698765432",
        # IPs: octets out of bounds, versions, times, MACs
        "999.1.1.1 and 256.0.0.1 and 1.2.3.256 and 01.2.3.4",
        "upgrade to v1.2.3.4 or version 10.0.0.1, build 4.3.2.1",
        "released 1.2.3 and 10.0.19041.1",
        "at 10:30:00 and 12:30, mac 00:1A:2B:3C:4D:5E, std::vector, ::1",
        # dates, prices, order numbers, timestamps
        "date 2024-01-15, 15/01/2024, 12.03.2024, 01-02-2024",
        "at 2024-01-15T10:30:00+05:30 epoch 1700000000",
        "price $1,234.56 or +12.5% or +20.00 USD",
        "order 1234567890, #123-456-7890, ORD-2024-000123, ref 48213",
        "tracking 0123456789",
        # SSNs and NINOs that cannot be issued
        "000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000",
        "GB123456A DA123456A QQ123456C AB123456E",
    ],
)
def test_look_alikes_are_not_pii(text: str) -> None:
    assert found(text) == []


def test_checks() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB83WEST12345698765432")
    assert not iban_valid("GB82WEST1234569876543")  # one short for GB


def test_overlaps_longest_wins_and_no_duplicates() -> None:
    # The card's digits inside an email, an IBAN's digit groups: one entity each.
    text = "4111111111111111@example.com DE89 3704 0044 0532 0130 00"
    assert found(text) == [
        ("EMAIL", "4111111111111111@example.com"),
        ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ]
    spans = [(e.start, e.end) for e in find_pii(text)]
    assert spans == sorted(set(spans))


def test_redaction_exact() -> None:
    text = "Mail a.b@example.com, card 4111 1111 1111 1111, from 10.0.0.7; ssn 123-45-6789."
    assert redact(text) == "Mail <EMAIL>, card <CREDIT_CARD>, from <IP_ADDRESS>; ssn <US_SSN>."
    assert redact("nothing to hide") == "nothing to hide"
    assert redact("") == ""


def test_unicode_digits_spaces_and_invisible_characters() -> None:
    zwj = "jo\u200dhn@exam\u200bple.com"
    assert found(f"write {zwj}!") == [("EMAIL", zwj)]
    assert redact(f"write {zwj}!") == "write <EMAIL>!"
    fullwidth = "\uff14\uff11\uff11\uff11 1111 1111 1111"  # fullwidth 4111
    assert found(f"card {fullwidth}") == [("CREDIT_CARD", fullwidth)]
    arabic = "\u0664" + "\u0661" * 15  # Arabic-Indic 4111111111111111
    assert found(arabic) == [("CREDIT_CARD", arabic)]
    nbsp = "+44\u00a020\u00a07946\u00a00958"
    assert found(nbsp) == [("PHONE", nbsp)]


def test_rtl_and_control_characters() -> None:
    rtl = "\u05e9\u05dc\u05d5\u05dd \u202ejohn@example.com\u202c \u0645\u0631\u062d\u0628\u0627"
    assert found(rtl) == [("EMAIL", "john@example.com")]
    ctrl = "\x00\x01a@b.io\x07\x1b[0m 4111111111111111\x7f"
    assert found(ctrl) == [("EMAIL", "a@b.io"), ("CREDIT_CARD", "4111111111111111")]
    assert redact(ctrl) == "\x00\x01<EMAIL>\x07\x1b[0m <CREDIT_CARD>\x7f"
    assert found("\ud800 lone surrogate \udfff") == []


def test_huge_text_is_scanned_up_to_the_limit_and_redaction_never_keeps_unscanned_text() -> None:
    head = "x@example.com "
    text = head + "a" * (1_000_000 - len(head) - 20) + " tail@example.com"
    assert len(text) > MAX_SCAN_CHARS
    assert found(text) == [("EMAIL", "x@example.com")]
    out = redact(text)
    assert out.startswith("<EMAIL> aaa") and out.endswith(UNSCANNED)
    assert "tail@example.com" not in out
    assert len(out) < MAX_SCAN_CHARS


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=300))
def test_any_text_spans_are_in_bounds_ordered_and_disjoint(text: str) -> None:
    entities = find_pii(text)
    last = 0
    for e in entities:
        assert last <= e.start < e.end <= len(text)
        last = e.end
    assert isinstance(redact(text), str)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789 .-+()@:/abcDEF", max_size=80))
def test_digit_soup_never_raises(text: str) -> None:
    for e in find_pii(text):
        assert 0 <= e.start < e.end <= len(text)


def test_detector_signals_per_exchange_in_batch_order() -> None:
    batch = [
        Exchange("r1", input="my mail is a@b.io", output="call +44 20 7946 0958 or c@d.io"),
        Exchange("r2", input="", output=""),
        Exchange("r3", input="x" * (MAX_SCAN_CHARS + 1), output="ok"),
    ]
    d = PiiDetector()
    out = d.detect(batch)
    assert len(out) == 3
    first = {s.name: s for s in out[0]}
    assert sorted(first) == [
        "pii_input",
        "pii_input.EMAIL",
        "pii_output",
        "pii_output.EMAIL",
        "pii_output.PHONE",
    ]
    assert first["pii_input"].value == 1.0
    assert first["pii_input"].findings == (Finding("EMAIL", "input", 11, 17),)
    assert first["pii_output"].value == 2.0
    assert first["pii_output"].findings == (
        Finding("PHONE", "output", 5, 21),
        Finding("EMAIL", "output", 25, 31),
    )
    assert first["pii_output.PHONE"].value == 1.0
    assert all((s.detector, s.version) == ("pii_regex", "1") for s in out[0])
    assert [(s.name, s.value) for s in out[1]] == [("pii_input", 0.0), ("pii_output", 0.0)]
    assert [(s.name, s.value) for s in out[2]] == [
        ("pii_input", 0.0),
        ("pii_input_truncated", 1.0),
        ("pii_output", 0.0),
    ]
    assert d.detect([]) == []
    # Same exchanges in reverse: the signals come back in that order.
    assert d.detect(batch[::-1]) == out[::-1]
