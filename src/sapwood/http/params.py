"""Query-string parameters as Riak spells them: quorum values, booleans, timeouts, counts."""

from __future__ import annotations

from aiohttp import web

from sapwood.core.bucket import parse_quorum_param
from sapwood.core.errors import BadRequest
from sapwood.core.requests import Quorum

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


def quorum(request: web.Request, name: str) -> Quorum:
    """`r`, `w`, ... as given (a word stays a word); None when absent (the bucket's value)."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    return parse_quorum_param(text, name)


def flag(request: web.Request, name: str) -> bool | None:
    """A true/false parameter; None when absent."""
    text = request.query.get(name)
    if text is None or text == "":
        return None
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false; got {text!r}")


def positive_int(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise BadRequest(f"{name} must be a positive integer; got {text!r}") from None
    if value < 1:
        raise BadRequest(f"{name} must be a positive integer; got {text!r}")
    return value


def timeout_ms(request: web.Request) -> int | None:
    """`timeout` in milliseconds; its range is checked by the service."""
    return positive_int(request, "timeout")


def choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    text = request.query.get(name)
    if text is None:
        return None
    if text not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}; got {text!r}")
    return text
