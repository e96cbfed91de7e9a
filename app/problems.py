"""Errors as RFC 9457 `application/problem+json`, with a message a person can act on.

`Problem` is raised by routes and dependencies; the handlers here turn it, Starlette's HTTP
errors, request validation errors and anything unexpected into one document shape, which the
OpenAPI schema describes as `Problem` for every status a route declares with
`problem_responses`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.logs import request_id_var

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
SCHEMA_NAME = "Problem"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    422: "Invalid request",
    500: "Internal error",
    503: "Service unavailable",
}
_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    401: "No token, or a token that is unknown, revoked or expired",
    403: "The token's role does not allow this",
    404: "No such object, or not one this token may see",
    409: "The request conflicts with the current state",
    422: "A parameter is malformed or out of range; `errors` says which and why",
}


class FieldProblem(BaseModel):
    location: str = Field(description="Which parameter or body field, e.g. `query.start`.")
    message: str = Field(description="What was wrong and what was expected.")


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(
        title=SCHEMA_NAME,
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Invalid request",
                    "status": 422,
                    "detail": "query.end: must be after start (2026-10-01); periods are "
                    "half-open [start, end)",
                    "request_id": "3f2b9c0e7d6a4e1f8b5c2d9a0e1f7b3c",
                    "errors": [
                        {
                            "location": "query.end",
                            "message": "must be after start (2026-10-01); periods are "
                            "half-open [start, end)",
                        }
                    ],
                }
            ]
        },
    )

    type: str = Field(default="about:blank", description="Always `about:blank`.")
    title: str = Field(description="The HTTP status in words.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, and what to do about it.")
    request_id: str | None = Field(
        default=None, description="Quote this when asking the operator; it is in their logs."
    )
    errors: list[FieldProblem] | None = Field(
        default=None, description="For 422: each malformed parameter."
    )


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def invalid(location: str, message: str) -> Problem:
    """A 422 about one parameter, shaped like a request validation error."""
    return Problem(
        422,
        "Invalid request",
        f"{location}: {message}",
        errors=[{"location": location, "message": message}],
    )


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem statuses a route can answer with."""
    return {
        status: {
            "description": _DESCRIPTIONS.get(status, _TITLES.get(status, "Error")),
            "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}}},
        }
        for status in statuses
    }


_DATE_ERRORS = {"date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"}


def _describe_validation_error(error: dict[str, Any]) -> dict[str, str]:
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if error.get("type") in _DATE_ERRORS or error.get("type") == "date_type":
        message = f"expected a date as YYYY-MM-DD (a UTC day); {message[:1].lower()}{message[1:]}"
    given = error.get("input")
    if isinstance(given, str | int | float) and error.get("type") != "missing":
        message += f", got {str(given)[:80]!r}"
    return {"location": location, "message": message}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            _TITLES.get(exc.status_code, "Error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe_validation_error(dict(error)) for error in exc.errors()]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return problem_response(422, "Invalid request", detail, errors=errors)

    async def _out_of_range(request: Request, exc: Exception) -> JSONResponse:
        # The database (or SQLite's driver, for integers beyond 64 bits) refused a value the
        # request carried: the caller's to fix, so 422 rather than 500. Routes bound their
        # parameters; this is the net under any that do not.
        log.warning(
            "the database refused a value of %s %s: %s",
            request.method,
            request.url.path,
            type(getattr(exc, "orig", exc)).__name__,
        )
        return problem_response(
            422,
            "Invalid request",
            "a value in the request is out of range for hubmeter's database (ids are whole "
            "numbers from 1 to 2147483647)",
        )

    async def _database_busy(request: Request, exc: Exception) -> JSONResponse:
        # Every pooled connection is in use, or the database is unreachable: nothing the
        # caller did wrong, and likely gone in a moment.
        log.warning(
            "database unavailable answering %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return problem_response(
            503,
            "Service unavailable",
            "hubmeter's database is busy or unreachable; retry in a few seconds",
            headers={"Retry-After": "5"},
        )

    app.add_exception_handler(SQLAlchemyTimeoutError, _database_busy)
    app.add_exception_handler(OperationalError, _database_busy)
    app.add_exception_handler(DataError, _out_of_range)
    # Python raises OverflowError only for integers too large for the database driver here.
    app.add_exception_handler(OverflowError, _out_of_range)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "Internal error",
            "hubmeter could not answer this request; the error is in the service log "
            "under this request id",
        )

    app.openapi = _openapi_with_problems(app, app.openapi)  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema


def _openapi_with_problems(
    app: FastAPI, build: Callable[[], dict[str, Any]]
) -> Callable[[], dict[str, Any]]:
    """Describe FastAPI's 422 responses as the problem documents the handler really sends,
    and add the `Problem` schema the routes' problem responses refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components[SCHEMA_NAME] = ProblemDocument.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        nested = components[SCHEMA_NAME].pop("$defs", {})
        components.update(nested)
        problem = problem_responses(422)[422]
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    responses["422"] = problem
                # Every error this app sends is a problem document, whatever a route declared.
                for status, response in responses.items():
                    if status.isdigit() and int(status) >= 400 and "content" not in response:
                        response["content"] = problem["content"]
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    return openapi
