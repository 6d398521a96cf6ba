"""What /docs shows: every request body the services take, every status that can come back, and
never FastAPI's 422 (every refusal is a 400 with a sentence)."""

from __future__ import annotations

from typing import Any

import pytest

from rideshare.config import Settings
from rideshare.orchestrator.api import create_app as orchestrator_app
from rideshare.rides.app import create_app as rides_app
from rideshare.users.app import create_app as users_app


def schema(make: Any) -> dict[str, Any]:
    document: dict[str, Any] = make(Settings()).openapi()
    return document


@pytest.mark.parametrize(("make", "method", "path", "fields"), [
    (users_app, "put", "/api/v1/users", {"username", "password"}),
    (rides_app, "post", "/api/v1/rides", {"created_by", "timestamp", "source", "destination"}),
    (rides_app, "post", "/api/v1/rides/{ride_id}", {"username"}),
    (orchestrator_app, "post", "/api/v1/db/write", {"ops"}),
    (orchestrator_app, "post", "/api/v1/db/read", {"table"}),
])
def test_request_bodies_are_documented(make: Any, method: str, path: str, fields: set[str]) -> None:
    body = schema(make)["paths"][path][method]["requestBody"]
    properties = body["content"]["application/json"]["schema"]["properties"]
    assert fields <= set(properties)


@pytest.mark.parametrize("make", [users_app, rides_app, orchestrator_app])
def test_no_endpoint_advertises_a_422(make: Any) -> None:
    for path, methods in schema(make)["paths"].items():
        for method, operation in methods.items():
            assert "422" not in operation["responses"], f"{method} {path}"


def test_errors_are_documented_with_their_body() -> None:
    operation = schema(rides_app)["paths"]["/api/v1/rides"]["post"]
    assert set(operation["responses"]) == {"201", "400", "503"}
    error = operation["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
