"""The one id type of the HTTP APIs: a plain ASCII integer 0..2^53.

Used by every route and schema that takes a userId or movieId (path, query and body), so the
rule is written once: JSON integers are accepted, and so are strings of ASCII digits (path and
query values are strings); everything else is refused with a message naming the value —
booleans (`true` is not user 1), floats and float-looking strings (`620.0`), signs, white
space, and non-ASCII digits such as `²` or `٣` (which `str.isdigit()` accepts but `int()` does
not). Matching is whole-string (`re.fullmatch`), so a trailing newline is refused too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_ID = 2**53  # beyond this ids are not exact as JSON numbers (doubles)
_DIGITS = re.compile(r"[0-9]{1,16}")


def parse_id(value: Any, what: str = "id") -> int:
    """`value` as an id, or ValueError naming the value (repr, at most 32 characters)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        n = int(value)
    else:
        raise ValueError(f"{what} {_show(value)} is not a plain integer 0..2^53")
    if not 0 <= n <= MAX_ID:
        raise ValueError(f"{what} {_show(value)} is outside 0..2^53")
    return n


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 32 else text[:29] + "..."


def _json_id(value: Any) -> int:
    if isinstance(value, str):  # a JSON body carries ids as numbers, like the catalog's ratings
        raise ValueError(f"id {_show(value)} is a string, not a JSON integer")
    return parse_id(value)


def _param_id(value: Any) -> int:
    return parse_id(value)


StrictId = Annotated[int, BeforeValidator(_json_id)]
"""An id in a JSON body: an integer 0..2^53; booleans, floats and strings are refused."""

IdParam = Annotated[int, BeforeValidator(_param_id)]
"""An id in a path or query: ASCII digits only (`Annotated[IdParam, Path(...)]`)."""
