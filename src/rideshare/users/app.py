"""The users service: SPEC §2 (add, list, look up and delete users).

Every route validates its input completely before it talks to the DBaaS, so a client can reach
a 400 but never a 500. Deleting a user is one delete of the ``users`` row; the schema's
``ON DELETE CASCADE`` removes that user's rides and ride memberships in the same transaction.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from rideshare.config import Settings
from rideshare.dbclient import DBClient, DBConflict
from rideshare.errors import BadRequest
from rideshare.http import idempotency
from rideshare.http.app import create_service_app, read_json
from rideshare.http.errors import empty_response, expect_fields, json_response
from rideshare.usernames import username_problem
from rideshare.users import rules

SERVICE = "users"


def _db(request: Request) -> DBClient:
    db: DBClient = request.app.state.db
    return db


def add_routes(app: FastAPI) -> None:
    @app.put("/api/v1/users", status_code=201)
    async def add_user(request: Request) -> Response:
        """Create a user from ``{"username", "password"}``: 201, or 400 if taken or invalid."""
        body = expect_fields(await read_json(request), ("username", "password"))
        username = rules.check_username(body["username"])
        password = rules.check_password(body["password"])
        write_id = idempotency.write_id(request, SERVICE, "add-user")
        insert = {"op": "insert", "table": "users",
                  "values": {"username": username, "password_hash": rules.hash_password(password)}}
        try:
            await _db(request).write([insert], write_id)
        except DBConflict:
            raise BadRequest(f"The username {username!r} is taken; choose another.") from None
        return json_response({}, 201)

    @app.get("/api/v1/users")
    async def list_users(request: Request) -> Response:
        """All usernames in order of creation; 204 with no body when there are none."""
        answer = await _db(request).read({
            "table": "users", "columns": ["username"],
            "order_by": [{"column": "created_seq"}, {"column": "username"}],
        })
        names = [row["username"] for row in answer["rows"]]
        return json_response(names) if names else empty_response(204)

    @app.get("/api/v1/users/{username}")
    async def get_user(request: Request, username: str) -> Response:
        """(beyond) 200 ``{"username"}`` or 404: how the rides service checks a user exists."""
        if username_problem(username) is None:
            answer = await _db(request).read({
                "table": "users", "columns": ["username"], "where": {"username": username},
            })
            if answer["rows"]:
                return json_response({"username": username})
        return json_response({"error": f"There is no user {username!r}."}, 404)

    @app.delete("/api/v1/users/{username}")
    async def delete_user(request: Request, username: str) -> Response:
        """Delete a user with their rides and memberships in one atomic write; 400 if unknown."""
        if username_problem(username) is None:
            result = await _db(request).write(
                [{"op": "delete", "table": "users", "where": {"username": username}}]
            )
            if result["results"][0]["rowcount"]:
                return json_response({})
        raise BadRequest(f"There is no user {username!r} to delete.")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The users service's ASGI app (``uvicorn --factory rideshare.users.app:create_app``)."""
    return create_service_app(SERVICE, "/api/v1/users", add_routes, settings)
