"""HTTP body compression as ClickHouse speaks it: streaming request decoders (clickhouse-connect
sends one lz4/zstd frame per block, so every decoder reads across concatenated frames) and
one-shot response encoders. Brotli is left out: no brotli package is a dependency."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from typing import Protocol

import lz4.frame
import zstandard


class UnsupportedEncoding(ValueError):
    """A Content-Encoding this server cannot decode."""


class CorruptBody(ValueError):
    """The body does not decode with the encoding it claims."""


class _Frames(Protocol):
    """What the standard and lz4/zstd streaming decompressors have in common."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


class BodyDecoder:
    """Feed compressed chunks, get plain bytes; a new frame starts wherever one ends."""

    def __init__(self, new_frame: Callable[[], _Frames] | None) -> None:
        self._new_frame = new_frame
        self._frame: _Frames | None = None
        self._in_frame = False

    def feed(self, data: bytes) -> bytes:
        if self._new_frame is None:
            return data
        out: list[bytes] = []
        try:
            while data:
                if self._frame is None or self._frame.eof:
                    self._frame = self._new_frame()
                out.append(self._frame.decompress(data))
                self._in_frame = not self._frame.eof
                data = self._frame.unused_data if self._frame.eof else b""
        except (OSError, RuntimeError, ValueError, zlib.error, zstandard.ZstdError) as exc:
            raise CorruptBody(f"cannot decompress the request body: {exc}") from exc
        return b"".join(out)

    def finish(self) -> None:
        """Raise if the body stopped in the middle of a frame."""
        if self._in_frame:
            raise CorruptBody("the compressed request body is truncated")


def _zlib_frames(wbits: int) -> Callable[[], _Frames]:
    return lambda: zlib.decompressobj(wbits=wbits)


def _decoders() -> dict[str, Callable[[], _Frames] | None]:
    table: dict[str, Callable[[], _Frames] | None] = {
        "": None,
        "identity": None,
        "gzip": _zlib_frames(16 + zlib.MAX_WBITS),
        "x-gzip": _zlib_frames(16 + zlib.MAX_WBITS),
        # zlib-wrapped (RFC 1950) or, auto-detected, gzip: what clients send as "deflate"
        "deflate": _zlib_frames(32 + zlib.MAX_WBITS),
        "lz4": lz4.frame.LZ4FrameDecompressor,
        "zstd": lambda: zstandard.ZstdDecompressor().decompressobj(),
    }
    return table


_DECODERS = _decoders()


def body_decoder(content_encoding: str | None) -> BodyDecoder:
    name = (content_encoding or "").strip().lower()
    if name not in _DECODERS:
        raise UnsupportedEncoding(f"Unknown HTTP compression method: {content_encoding!r}")
    return BodyDecoder(_DECODERS[name])


def _lz4_encode(data: bytes) -> bytes:
    # One frame for the whole body: clickhouse-connect reads responses with one decompressor.
    return bytes(lz4.frame.compress(data, store_size=False))


def _encoders() -> dict[str, Callable[[bytes], bytes]]:
    table: dict[str, Callable[[bytes], bytes]] = {
        "lz4": _lz4_encode,
        "zstd": lambda data: zstandard.ZstdCompressor(level=1).compress(data),
        "gzip": lambda data: gzip.compress(data, compresslevel=3),
        "deflate": lambda data: zlib.compress(data, 3),
    }
    return table


_ENCODERS = _encoders()


def response_encoding(accept_encoding: str | None) -> str | None:
    """The first encoding in the client's Accept-Encoding that we can produce (q=0 excluded)."""
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        if params.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        if name in _ENCODERS:
            return name
    return None


def encode(data: bytes, encoding: str) -> bytes:
    return _ENCODERS[encoding](data)
