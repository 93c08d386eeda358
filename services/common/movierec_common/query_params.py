"""Unknown query parameters are refused, never silently ignored.

A client that misspells a filter (`year_from` where the operation takes `year_min`, `genre` on
an operation without one) would otherwise get an unfiltered answer that looks right. Installed
as an app-wide FastAPI dependency, `reject_unknown_query_params` compares the request's query
keys with the parameters the matched operation declares (its OpenAPI parameters) and answers
422 `unknown_parameter`, naming the unknown keys and the accepted ones.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from movierec_common.api_errors import ApiError

_ALLOWED: dict[int, tuple[str, ...]] = {}


def declared_query_params(route: APIRoute) -> tuple[str, ...]:
    """The query parameter names (aliases) `route` declares, in declaration order; cached."""
    key = id(route)
    if key not in _ALLOWED:
        names: list[str] = []
        stack: list[Dependant] = [route.dependant]
        while stack:  # the operation's own parameters and those of every sub-dependency
            dep = stack.pop(0)
            names.extend(p.alias for p in dep.query_params)
            stack.extend(dep.dependencies)
        _ALLOWED[key] = tuple(dict.fromkeys(names))
    return _ALLOWED[key]


async def reject_unknown_query_params(request: Request) -> None:
    """Raises ApiError(422, "unknown_parameter") when the query has a key the operation lacks."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = declared_query_params(route)
    unknown = [k for k in dict.fromkeys(request.query_params.keys()) if k not in allowed]
    if not unknown:
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
