"""The app state, and who is calling (movierec_common.callers, shared with the catalog).

The catalog issues the tokens; here they are only verified (Bearer header or the httpOnly
cookie). Other services send an API key and get the `service` role. Users read only their own
lists; admins and services read anyone's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from movierec_common import callers

from .state import AppState


async def get_state(request: Request) -> AppState:
    """`async def` so FastAPI calls it on the event loop (a `def` dependency costs a thread hop
    per request)."""
    return request.app.state.recs


State = Annotated[AppState, Depends(get_state)]
CurrentCaller = callers.CurrentCaller
OptionalCaller = callers.OptionalCaller
require_read = callers.require_read
require_privileged = callers.require_privileged


async def peek_caller(request: Request) -> callers.Caller | None:
    """The caller for a route that does not declare credentials in OpenAPI (GET /model shows
    file paths to privileged callers only): like OptionalCaller, never an error."""
    return await callers.resolver_of(request).optional(request)
