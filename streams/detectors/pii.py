"""Cheap-tier PII detector: regular expressions for candidates, arithmetic to validate them. Pure.

Entities (kind = the placeholder's name):
- EMAIL: an ASCII local part, a dotted domain and a 2-63 letter TLD.
- PHONE: international (`+CC`, 8-15 digits in all, as E.164 allows), North American
  (`(415) 555-2671`, `415-555-2671`, area and exchange starting 2-9) and trunk-0 national
  (`020 7946 0958`, `01 23 45 67 89`: 10-12 digits in separated groups). Bare digit runs,
  dates, times, versions and prices are not phones: a national number needs its separators,
  used consistently.
- CREDIT_CARD: 13-19 digits, bare or grouped 4-4-4-4(-3), 4-6-5 or 4-6-4 with one separator
  kind, a known issuer prefix for that length and a valid Luhn check.
- IBAN: a country of the IBAN registry, its exact length, and the ISO 7064 mod-97 check;
  bare or in groups of four.
- IP_ADDRESS: IPv4 (four octets 0-255, no leading zeros, not written as a version
  `v1.2.3.4`) and IPv6 (candidates validated by the stdlib `ipaddress`; at least two groups
  with digits, so `::` and `::1` are not counted).
- US_SSN: `123-45-6789` or spaced; area not 000, 666 or 900-999, group not 00, serial not
  0000. Bare nine-digit runs are not taken (too many are order numbers).
- UK_NINO: two prefix letters from the allowed sets (not BG, GB, KN, NK, NT, TN, ZZ), six
  digits, suffix A-D; uppercase, bare or spaced.
Overlapping candidates: the longer wins; at equal length the more specific kind (order of
`KINDS`). Spans never overlap and are reported in text order.

Hostile text: Unicode decimal digits (Arabic-Indic, fullwidth, ...), Unicode spaces and dashes
are read as their ASCII counterparts, and invisible format characters (zero-width spaces and
joiners, bidi controls, soft hyphens) are skipped, so `jo<ZWJ>hn@example.com` is still an
email; spans are always offsets into the text as given. Only the first `MAX_SCAN_CHARS`
characters are scanned.

`redact(text)` is the `streams.privacy.Redactor`: each entity becomes `<KIND>`; text past
what was scanned is never kept unscanned: it is cut and `<UNSCANNED>` marks the cut.

`PiiDetector` ("pii_regex", version "1") gives, per exchange:
- `pii_input`, `pii_output`: the number of entities in that text, with their findings
  (`where` = "input" / "output"); always present, 0 when none;
- `pii_input.<KIND>`, `pii_output.<KIND>` (e.g. `pii_output.EMAIL`): the count of that kind,
  only for kinds present;
- `pii_input_truncated`, `pii_output_truncated`: 1.0, only when that text was longer than
  `MAX_SCAN_CHARS` (its tail was not scanned).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from streams.detectors.base import Detector, Exchange, Finding, Signal, Where

# Bounds the work per text: a 1 MB answer costs what its first 100 K characters cost.
MAX_SCAN_CHARS = 100_000
# redact() keeps text only up to this far before the scan limit, so no entity that the limit
# cut in half (too short to be recognised) is stored in the clear.
_REDACT_MARGIN = 256
UNSCANNED = "<UNSCANNED>"

# Most specific first: breaks ties between overlapping candidates of equal length.
KINDS = ("EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "UK_NINO", "IP_ADDRESS", "PHONE")
_RANK = {kind: i for i, kind in enumerate(KINDS)}


class PiiEntity(NamedTuple):
    kind: str
    start: int  # offsets into the text given, end exclusive
    end: int


# --- normalisation -------------------------------------------------------------------------

# Non-ASCII decimal digits, spaces and dashes: each mapped to one ASCII character, so offsets
# are unchanged.
_LOOKALIKE = re.compile(
    r"(?![0-9])\d|[\u00a0\u2000-\u200a\u202f\u205f\u3000]|[\u2010-\u2015\u2212]"
)
# Invisible format characters that would otherwise split an entity in two.
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")


def _ascii_lookalike(match: re.Match[str]) -> str:
    ch = match.group()
    if ch.isdecimal():
        return str(unicodedata.decimal(ch))
    return " " if unicodedata.category(ch) == "Zs" else "-"


def _normalise(text: str) -> tuple[str, list[int] | None]:
    """The text to scan, and for each of its characters the offset in `text` (None: same)."""
    if text.isascii():
        return text, None
    text = _LOOKALIKE.sub(_ascii_lookalike, text)
    if _INVISIBLE.search(text) is None:
        return text, None
    kept = [i for i, ch in enumerate(text) if not _INVISIBLE.match(ch)]
    return "".join(text[i] for i in kept), kept


# --- recognisers: each yields (kind, start, end) in the scanned text ------------------------

# Anchored on "@" (a literal the regex engine finds fast); the local part is read backwards.
_EMAIL_DOMAIN = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9-])"
)
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,65}$")


def _emails(text: str) -> Iterator[PiiEntity]:
    if "@" not in text:
        return
    for m in _EMAIL_DOMAIN.finditer(text):
        at = m.start()
        local = _EMAIL_LOCAL.search(text, max(0, at - 65), at)
        if local is None or local.end() - local.start() > 64:
            continue  # no local part, or one longer than RFC 5321 allows
        start, part = local.start(), local.group()
        if part[0] == "." or part[-1] == "." or ".." in part or m.end() - start > 254:
            continue
        yield PiiEntity("EMAIL", start, m.end())


_PHONE_INTL = re.compile(r"\+(?<![\w+]\+)[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}(?!\w)")
_PHONE_NANP = re.compile(
    r"(?=[1-9(])(?<![\w+.-])(?<![0-9][ .-])(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}([ .-]))"
    r"[2-9][0-9]{2}(?(1)\1|[ .-])[0-9]{4}(?!\w|[.-][0-9])"
)
_PHONE_NATIONAL = re.compile(
    r"0(?<![\w+.-]0)(?<![0-9][ .-]0)[1-9][0-9]{0,4}([ .-])[0-9]{2,8}(?:\1[0-9]{2,8}){0,3}"
    r"(?!\w|[.-][0-9])"
)


def _digits(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def _phones(text: str) -> Iterator[PiiEntity]:
    if "+" in text:
        for m in _PHONE_INTL.finditer(text):
            s = m.group()
            if 8 <= _digits(s) <= 15 and s.count("(") == s.count(")") <= 1:
                yield PiiEntity("PHONE", m.start(), m.end())
    for m in _PHONE_NANP.finditer(text):
        yield PiiEntity("PHONE", m.start(), m.end())
    for m in _PHONE_NATIONAL.finditer(text):
        if 10 <= _digits(m.group()) <= 12:
            yield PiiEntity("PHONE", m.start(), m.end())


_CARD = re.compile(
    r"[0-9](?<![\w.,-][0-9])(?<![0-9][ .-][0-9])(?:[0-9]{12,18}"
    r"|[0-9]{3}([ -])[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{3})?"
    r"|[0-9]{3}([ -])[0-9]{6}\2[0-9]{4,5})(?!\w|[.,-][0-9])"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer_known(d: str) -> bool:
    """An issuer (IIN) range that issues cards of this length."""
    n = len(d)
    p2, p4, p6 = int(d[:2]), int(d[:4]), int(d[:6])
    return (
        (d[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16)  # Mastercard
        or (p2 in (34, 37) and n == 15)  # American Express
        or ((300 <= p4 // 10 <= 305 or p2 in (36, 38, 39)) and 14 <= n <= 19)  # Diners
        or (3528 <= p4 <= 3589 and 16 <= n <= 19)  # JCB
        or ((p4 == 6011 or 644 <= p4 // 10 <= 649 or p2 == 65) and 16 <= n <= 19)  # Discover
        or ((p2 == 62 or 622126 <= p6 <= 622925) and 16 <= n <= 19)  # UnionPay
        or ((p2 == 50 or 56 <= p2 <= 69) and 13 <= n <= 19)  # Maestro
    )


def _cards(text: str) -> Iterator[PiiEntity]:
    for m in _CARD.finditer(text):
        d = m.group().replace(" ", "").replace("-", "")
        if _card_issuer_known(d) and luhn_valid(d):
            yield PiiEntity("CREDIT_CARD", m.start(), m.end())


# The IBAN registry's countries and lengths (SWIFT, ISO 13616).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}")


def iban_valid(iban: str) -> bool:
    """Country length and the mod-97 check of an IBAN without spaces, uppercase."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    # Letters count as 10-35; the first four characters move to the end.
    return int("".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])) % 97 == 1


def _ibans(text: str) -> Iterator[PiiEntity]:
    for m in _IBAN.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # The candidate may run into the words after it: take the country's length of
        # characters, and only if the IBAN ends at a word boundary.
        taken, end = 0, m.start()
        while end < m.end() and taken < want:
            taken += text[end] != " "
            end += 1
        if taken != want or (end < len(text) and text[end].isalnum()):
            continue
        if iban_valid(text[m.start() : end].replace(" ", "")):
            yield PiiEntity("IBAN", m.start(), end)


_IPV4 = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\w|\.[0-9])")


def _ipv4_valid(s: str) -> bool:
    # Octets 0-255 without leading zeros (as ipaddress reads them).
    return all(int(o) <= 255 and (o == "0" or o[0] != "0") for o in s.split("."))


# Four dotted numbers right after "version", "v", "build" ... are a version, not an address.
_VERSION_BEFORE = re.compile(r"(?:\b(?:version|ver|release|build|rev)|v)[ :]*$", re.IGNORECASE)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?"
    r"(?![\w:]|\.[0-9])"
)


def _ips(text: str) -> Iterator[PiiEntity]:
    if "." in text:
        for m in _IPV4.finditer(text):
            if not _ipv4_valid(m.group()):
                continue
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()) is None:
                yield PiiEntity("IP_ADDRESS", m.start(), m.end())
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            s = m.group()
            if sum(1 for g in s.split(":") if g) < 2:
                continue
            try:
                ipaddress.IPv6Address(s)
            except ValueError:
                continue
            yield PiiEntity("IP_ADDRESS", m.start(), m.end())


_SSN = re.compile(
    r"[0-9](?<![\w.-][0-9])(?<![0-9][ .-][0-9])[0-9]{2}([ -])([0-9]{2})\1([0-9]{4})(?!\w|[.-][0-9])"
)


def _ssns(text: str) -> Iterator[PiiEntity]:
    for m in _SSN.finditer(text):
        area, group, serial = m.group()[:3], m.group(2), m.group(3)
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            yield PiiEntity("US_SSN", m.start(), m.end())


# First letter not D F I Q U V; second not D F I O Q U V.
_NINO = re.compile(
    r"[A-CEGHJ-PR-TW-Z](?<![A-Za-z0-9][A-Z])[A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]"
    r"(?![A-Za-z0-9])"
)
_NINO_NOT_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _ninos(text: str) -> Iterator[PiiEntity]:
    for m in _NINO.finditer(text):
        if m.group()[:2] not in _NINO_NOT_ISSUED:
            yield PiiEntity("UK_NINO", m.start(), m.end())


_HAS_DIGIT = re.compile(r"[0-9]")


def _candidates(text: str) -> Iterator[PiiEntity]:
    yield from _emails(text)
    if _HAS_DIGIT.search(text) is None:
        return  # every other kind has digits
    yield from _ibans(text)
    yield from _cards(text)
    yield from _ssns(text)
    yield from _ninos(text)
    yield from _ips(text)
    yield from _phones(text)


# --- API -----------------------------------------------------------------------------------


def find_pii(text: str) -> list[PiiEntity]:
    """The entities in the first MAX_SCAN_CHARS characters of `text`, in text order."""
    scan, where = _normalise(text[:MAX_SCAN_CHARS])
    taken: list[PiiEntity] = []
    # Longest first, then most specific: each kept span claims its characters.
    for c in sorted(_candidates(scan), key=lambda e: (e.start - e.end, _RANK[e.kind], e.start)):
        if all(c.end <= t.start or t.end <= c.start for t in taken):
            taken.append(c)
    if where is not None:
        taken = [PiiEntity(e.kind, where[e.start], where[e.end - 1] + 1) for e in taken]
    return sorted(taken, key=lambda e: e.start)


def redact(text: str) -> str:
    """`text` with each entity replaced by `<KIND>`; cut (marked `<UNSCANNED>`) where the
    scan stopped, so nothing unscanned is kept."""
    entities = find_pii(text)
    cut = len(text) if len(text) <= MAX_SCAN_CHARS else MAX_SCAN_CHARS - _REDACT_MARGIN
    parts: list[str] = []
    pos = 0
    for e in entities:
        if e.start >= cut:
            break
        parts += (text[pos : e.start], f"<{e.kind}>")
        pos = e.end
    if pos < cut:
        parts.append(text[pos:cut])
    if cut < len(text):
        parts.append(UNSCANNED)
    return "".join(parts)


class PiiDetector(Detector):
    """PII in the input and the output of each exchange, by regular expressions (module doc)."""

    name = "pii_regex"
    version = "1"

    def detect(self, exchanges: Sequence[Exchange]) -> list[list[Signal]]:
        return [self._signals(x) for x in exchanges]

    def _signals(self, exchange: Exchange) -> list[Signal]:
        return self._text_signals("input", exchange.input) + self._text_signals(
            "output", exchange.output
        )

    def _text_signals(self, where: Where, text: str) -> list[Signal]:
        entities = find_pii(text)
        name = f"pii_{where}"
        findings = [Finding(e.kind, where, e.start, e.end) for e in entities]
        signals = [self.signal(name, len(findings), findings)]
        counts: dict[str, int] = {}
        for e in entities:
            counts[e.kind] = counts.get(e.kind, 0) + 1
        signals += [self.signal(f"{name}.{kind}", n) for kind, n in sorted(counts.items())]
        if len(text) > MAX_SCAN_CHARS:
            signals.append(self.signal(f"{name}_truncated", 1.0))
        return signals
