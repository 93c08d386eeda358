"""The one error body both APIs send (contract 5), as an OpenAPI model, and the error statuses
every route can answer with.

Declared once and attached to every router, so the published schemas say what clients really
receive: a malformed body (400), a missing or bad credential (401/403), an unknown id (404), a
body over the size limit (413), failed validation (422), and a database or model outage (503).
Schemathesis checks responses against these declarations (tests/hardening/test_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="snake_case error code", examples=["validation_error"])
    message: str = Field(description="Human-readable explanation")
    details: Any = Field(None, description="Optional structured details")


class ErrorResponse(BaseModel):
    error: ErrorBody


_DESCRIPTIONS = {
    400: "Malformed request (e.g. a body that is not valid JSON)",
    401: "Missing, expired or invalid credentials",
    403: "Authenticated, but not allowed",
    404: "No such resource",
    413: "Request body too large",
    422: "Invalid parameters or body",
    503: "A dependency (database, model) is unavailable",
}

COMMON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in _DESCRIPTIONS.items()
}
