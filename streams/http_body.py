"""Reading a JSON request body safely, for both of rillet's HTTP servers (serve and the registry).

Hostile or broken clients must get a 4xx naming the problem, never a 500 or a
hang: a body sent too slowly, a charset Python does not know, bytes that are
not text or not JSON, and JSON nested deeper than the parser's stack.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from streams.errors import BodyError

__all__ = ["BodyError", "read_json_body"]


async def read_json_body(request: web.Request, timeout_s: float = 10.0) -> Any:
    """The body as parsed JSON.

    Raises:
        BodyError: 408 (too slow), 415 (unknown charset) or 400 (not text, not JSON, nested too deeply).
    """
    try:
        if request.content.is_eof():  # the usual case: the body came with the headers, nothing to wait for
            raw = await request.read()
        else:
            async with asyncio.timeout(timeout_s):
                raw = await request.read()
    except TimeoutError:
        raise BodyError(408, f"the body did not arrive within {timeout_s:.0f} s") from None
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        try:
            raw = raw.decode(charset).encode("utf-8", "surrogatepass")
        except LookupError:
            raise BodyError(415, f"unknown charset {charset!r} in Content-Type; send UTF-8") from None
        except UnicodeDecodeError:
            raise BodyError(400, f"the body is not valid {charset}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc)
        if "depth limit" in reason:
            raise BodyError(400, "the body's JSON is nested too deeply") from None
        if "UTF-8" in reason or "surrogate" in reason:
            raise BodyError(400, f"the body is not valid UTF-8 text: {reason.split(':')[0]}") from None
        raise BodyError(400, "the body is not JSON") from None
