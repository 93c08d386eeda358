"""Unknown query parameters are refused, never silently ignored.

A client that misspells a filter (`year_from` where the operation takes `year_min`, `genre` on
an operation without one) would otherwise get an unfiltered answer that looks right. Installed
as an app-wide FastAPI dependency, `reject_unknown_query_params` compares the request's query
keys with the parameters the matched operation declares (its OpenAPI parameters) and answers
422 `unknown_parameter`, naming the unknown keys and the accepted ones. Likewise a key given
more than once where the operation takes one value (`?k=5&k=6`, `?genre=Action&genre=Horror`)
is 422 `repeated_parameter` instead of quietly keeping the last value; list parameters
(`exclude`) take repeats.
"""

from __future__ import annotations

import types
import typing
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from movierec_common.api_errors import ApiError

# id(route) → (declared query names in declaration order, those that take several values)
_DECLARED: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter annotation is a list-like type (through Optional/Union/Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _takes_many(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_takes_many(a) for a in typing.get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, (list, tuple, set, frozenset, Sequence))


def _declared(route: APIRoute) -> tuple[tuple[str, ...], frozenset[str]]:
    if id(route) in _DECLARED:
        return _DECLARED[id(route)]
    names: list[str] = []
    many: set[str] = set()
    stack: list[Dependant] = [route.dependant]
    while stack:  # the operation's own parameters and those of every sub-dependency
        dep = stack.pop(0)
        for p in dep.query_params:
            names.append(p.alias)
            if _takes_many(p.field_info.annotation):
                many.add(p.alias)
        stack.extend(dep.dependencies)
    _DECLARED[id(route)] = (tuple(dict.fromkeys(names)), frozenset(many))
    return _DECLARED[id(route)]


def declared_query_params(route: APIRoute) -> tuple[str, ...]:
    """The query parameter names (aliases) `route` declares, in declaration order; cached."""
    return _declared(route)[0]


def list_query_params(route: APIRoute) -> frozenset[str]:
    """The declared query parameters of `route` that take several values; cached."""
    return _declared(route)[1]


async def reject_unknown_query_params(request: Request) -> None:
    """Raises ApiError(422, "unknown_parameter") when the query has a key the operation lacks,
    and ApiError(422, "repeated_parameter") when a one-value key comes more than once."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = declared_query_params(route)
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in allowed]
    if not unknown:
        _reject_repeats(request, route)
        return
    operators = [k for k in unknown if "$" in k or "[" in k or "]" in k]
    if operators:  # probing for operator injection: the same answer as the catalog's check
        raise ApiError(
            422,
            "validation_error",
            "query parameter names may not contain '$', '[' or ']'",
            details=[
                {"loc": ["query", k], "msg": "operator-like parameter refused"} for k in operators
            ],
        )
    takes = ", ".join(allowed) if allowed else "no query parameters"
    raise ApiError(
        422,
        "unknown_parameter",
        f"unknown query parameter(s) {', '.join(unknown)}; "
        f"{request.method} {route.path} takes: {takes}",
        details={"unknown": unknown, "allowed": list(allowed)},
    )


def _reject_repeats(request: Request, route: APIRoute) -> None:
    """Raises ApiError(422, "repeated_parameter") for a one-value parameter given twice."""
    many = list_query_params(route)
    counts = Counter(k for k, _ in request.query_params.multi_items())
    repeated = [k for k, n in counts.items() if n > 1 and k not in many]
    if repeated:
        raise ApiError(
            422,
            "repeated_parameter",
            f"query parameter(s) {', '.join(repeated)} given more than once; "
            f"{request.method} {route.path} takes one value for each",
            details=[
                {"loc": ["query", k], "msg": f"given {counts[k]} times; takes one value"}
                for k in repeated
            ],
        )
