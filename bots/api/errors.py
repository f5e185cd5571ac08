"""One JSON error shape for every refusal the API gives, and the helpers that produce it.

Every error body is `{"error": {"code": "<stable_code>", "message": "<human>", "field": "<name or null>"}}`.
`code` is stable (clients branch on it; the README and the OpenAPI document list them), `message` is written
for a person and may change, `field` names the request field at fault (dotted for nested ones, e.g.
`loras.0.weight`) or is null.

Handlers raise `ApiError`; `errors_middleware` turns it (and aiohttp's own 404/405/413) into the response, and
anything unexpected into a 500 `internal_error` whose message carries a reference to find it in the logs.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """A refusal with its HTTP status, stable code, human message and the field at fault (or None)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.message, self.field, self.headers)


def error_body(code: str, message: str, field: str | None = None) -> dict:
    return {"error": {"code": code, "message": message, "field": field}}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(error_body(code, message, field), status=status, headers=headers)


def not_found(what: str, ident: object) -> ApiError:
    """404 for something that does not exist or is another tenant's: the two look the same from outside."""
    return ApiError(404, f"{what}_not_found", f"no {what} {ident!s:.80} here")


_HTTP_CODES = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "this endpoint does not take that method"),
    413: ("body_too_large", "the request body is larger than the limit"),
}


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason))
        if exc.status == 413:
            message = f"{message} ({request.app._client_max_size / 2**20:.0f} MiB)"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, message, None, headers)
    except Exception:
        reference = uuid.uuid4().hex[:12]
        log.exception("api request %s %s failed (reference %s)", request.method, request.path, reference)
        return error_response(
            500, "internal_error", f"Something went wrong on our side. Reference: {reference}", None
        )


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request body parsed into `model` (which forbids unknown fields), or an ApiError: 413 for a body
    over the limit, 400 `malformed_json` for anything that is not a JSON object, 422 for a field at fault."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413,
            "body_too_large",
            f"the request body is larger than the limit of {request.app._client_max_size / 2**20:.0f} MiB",
        ) from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


# pydantic error types → (stable code); anything else is `invalid_value`
_RANGE_TYPES = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "multiple_of",
}


def validation_error(exc: ValidationError) -> ApiError:
    """The first problem pydantic found, as a 422 naming its field."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if kind == "extra_forbidden":
        return ApiError(422, "unknown_field", f"unknown field {field!r}", field)
    if kind == "missing":
        return ApiError(422, "missing_field", f"{field} is required", field)
    code = "out_of_range" if kind in _RANGE_TYPES else "invalid_value"
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return ApiError(422, code, f"{field}: {message}", field)
