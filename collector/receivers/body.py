"""Reading request bodies safely: size limits before and after decompression."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator


class BodyError(Exception):
    """A body that cannot be read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def read_body(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """Read a (possibly chunked, possibly gzip) body, refusing more than ``limit`` bytes.

    The limit applies after decompression, checked while inflating, so a gzip bomb is
    stopped after ``limit`` bytes instead of exhausting memory.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        inflater = None
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    out = bytearray()
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            if inflater is None:
                out += chunk
            else:
                out += inflater.decompress(chunk, limit + 1 - len(out))
                # Data the inflater held back because of max_length is still pending.
                while inflater.unconsumed_tail and len(out) <= limit:
                    out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
            if len(out) > limit:
                raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
        if inflater is not None:
            out += inflater.flush()
            if not inflater.eof and out:
                raise BodyError(400, "truncated gzip body")
    except zlib.error as exc:
        raise BodyError(400, f"invalid {encoding} body: {exc}") from exc
    if len(out) > limit:
        raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
    return bytes(out)
