"""What ``/docs`` shows for an endpoint: its request body and every status that can come back.

Endpoints read their own bodies (so that every refusal is a 400 with our sentence, never FastAPI's
422), so FastAPI cannot see their bodies; ``documented`` puts the body's JSON schema and each
status in the route's OpenAPI entry instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error, from every part: a sentence a person can act on."""

    error: str


def documented(ok: int, ok_description: str, errors: Mapping[int, str],
               body: type[BaseModel] | None = None,
               answer: Any = None) -> dict[str, Any]:
    """Keyword arguments for a route: ``ok`` and its ``answer`` model, every other status (each
    4xx and 5xx with ``ErrorBody``; a 204 has no body), and ``body`` as the request body."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"description": text} if status < 400 else {"description": text,
                                                             "model": ErrorBody}
        for status, text in errors.items()}
    route: dict[str, Any] = {"status_code": ok, "response_description": ok_description,
                             "responses": responses}
    if answer is not None:
        route["response_model"] = answer
    if body is not None:
        route["openapi_extra"] = {"requestBody": {"required": True, "content": {
            "application/json": {"schema": body.model_json_schema()}}}}
    return route


#: Every endpoint that reaches the DBaaS may answer this.
UNAVAILABLE = {503: "The database service is not answering; retry later."}
