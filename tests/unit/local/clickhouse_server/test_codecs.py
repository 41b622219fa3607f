"""Request body decoding (across frames and chunk boundaries) and response encoding."""

from __future__ import annotations

import gzip
import zlib

import lz4.frame
import pytest
import zstandard

from llmops.local.clickhouse_server.codecs import (
    CorruptBody,
    UnsupportedEncoding,
    body_decoder,
    encode,
    response_encoding,
)

PARTS = [b"INSERT INTO t FORMAT Native\n", bytes(range(256)) * 40, b"tail" * 1000]


def _frames(encoding: str) -> bytes:
    """One frame (member) per part, as clickhouse-connect compresses block by block."""
    if encoding == "lz4":
        return b"".join(lz4.frame.compress(p) for p in PARTS)
    if encoding == "zstd":
        return b"".join(zstandard.ZstdCompressor().compress(p) for p in PARTS)
    if encoding == "gzip":
        return b"".join(gzip.compress(p) for p in PARTS)
    if encoding == "deflate":
        return zlib.compress(b"".join(PARTS))
    return b"".join(PARTS)


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate", "identity", ""])
@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_decoding_across_frames_and_chunks(encoding: str, chunk: int) -> None:
    wire = _frames(encoding)
    decoder = body_decoder(encoding)
    out = b"".join(decoder.feed(wire[i : i + chunk]) for i in range(0, len(wire), chunk))
    decoder.finish()
    assert out == b"".join(PARTS)


def test_encoding_names_are_case_insensitive() -> None:
    assert body_decoder("LZ4").feed(lz4.frame.compress(b"x")) == b"x"


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip"])
def test_truncated_body_is_reported(encoding: str) -> None:
    wire = _frames(encoding)
    decoder = body_decoder(encoding)
    decoder.feed(wire[: len(wire) - 5])
    with pytest.raises(CorruptBody):
        decoder.finish()


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip"])
def test_garbage_is_reported(encoding: str) -> None:
    with pytest.raises(CorruptBody):
        body_decoder(encoding).feed(b"\x00not compressed at all" * 10)


def test_unknown_encoding() -> None:
    with pytest.raises(UnsupportedEncoding):
        body_decoder("snappy")


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("lz4,zstd,gzip,deflate", "lz4"),
        ("gzip, deflate, br", "gzip"),
        ("br, zstd", "zstd"),
        ("gzip;q=0, deflate", "deflate"),
        ("identity", None),
        ("", None),
        (None, None),
    ],
)
def test_response_encoding_follows_the_client_order(accept: str | None, chosen: str) -> None:
    assert response_encoding(accept) == chosen


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate"])
def test_encoded_responses_decode(encoding: str) -> None:
    data = b"".join(PARTS)
    encoded = encode(data, encoding)
    assert encoded != data
    decoder = body_decoder(encoding)
    assert decoder.feed(encoded) == data
    decoder.finish()
