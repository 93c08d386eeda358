"""The one error body both APIs send (contract 5), as an OpenAPI model, and the error statuses
every route can answer with.

Declared once and attached to every router, so the published schemas say what clients really
receive: a malformed body (400), a missing or bad credential (401/403), an unknown id (404), a
body over the size limit (413), failed validation (422), and a database or model outage (503).
Schemathesis checks responses against these declarations (tests/hardening/test_fuzz.py).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from movierec_common.training_params import validation_message


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


log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)


class ApiError(Exception):
    """Raised anywhere in a request to answer with the error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> OrjsonResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return OrjsonResponse({"error": body}, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        item = {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        out.append(item)  # the offending input is not echoed back (it may be a password)
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Every failure, including router 404/405, validation, a database outage (503) and an
    unexpected exception (500), answers with the one error body; never `{"detail": ...}`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> OrjsonResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        details = _validation_details(exc)
        return error_response(422, "validation_error", validation_message(details), details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(ConnectionFailure)
    async def _db_down(_: Request, exc: ConnectionFailure) -> OrjsonResponse:
        log.warning("database unavailable", extra={"error": str(exc)[:300]})
        return error_response(
            503,
            "database_unavailable",
            "the database is unreachable; try again shortly",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(PyMongoError)
    async def _db_error(_: Request, exc: PyMongoError) -> OrjsonResponse:
        log.exception("database error")
        return error_response(500, "database_error", "the database refused the operation")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> OrjsonResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error")
