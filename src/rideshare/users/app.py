"""The users service: add, list, look up and delete users (docs/api.md, "Users").

Every route validates its input completely before it talks to the DBaaS, so a client can reach
a 400 but never a 500. Deleting a user is one delete of the ``users`` row; the schema's
``ON DELETE CASCADE`` removes that user's rides and ride memberships in the same transaction.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from rideshare.config import Settings
from rideshare.dbclient import DBClient, DBConflict
from rideshare.errors import BadRequest, NotFound
from rideshare.http import idempotency
from rideshare.http.app import create_service_app, read_json
from rideshare.http.errors import empty_response, expect_fields, json_response
from rideshare.http.openapi import UNAVAILABLE, documented
from rideshare.usernames import username_problem
from rideshare.users import rules

SERVICE = "users"


def _db(request: Request) -> DBClient:
    db: DBClient = request.app.state.db
    return db


class NewUser(BaseModel):
    """``PUT /api/v1/users``: a username (1 to 256 characters, no ``/``, not ``.`` or ``..``, no
    control characters) and the SHA1 hex digest of the password (40 hex digits)."""

    username: str = Field(examples=["asha"])
    password: str = Field(pattern="^[0-9a-fA-F]{40}$",
                          examples=["3d725109c7e7c0bfb9d709836735b56d943d263f"])


class FoundUser(BaseModel):
    username: str


router = APIRouter()


@router.put("/api/v1/users", **documented(
    201, "The user was created: ``{}``.",
    {400: "The body is not a valid new user, or the username is taken.", **UNAVAILABLE},
    body=NewUser))
async def add_user(request: Request) -> Response:
    """Create a user. An ``Idempotency-Key`` header makes a retry safe."""
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


@router.get("/api/v1/users", **documented(
    200, "Every username, in order of creation (204, no body, when there are none).",
    {204: "There are no users.", **UNAVAILABLE}, answer=list[str]))
async def list_users(request: Request) -> Response:
    answer = await _db(request).read({
        "table": "users", "columns": ["username"],
        "order_by": [{"column": "created_seq"}, {"column": "username"}],
    })
    names = [row["username"] for row in answer["rows"]]
    return json_response(names) if names else empty_response(204)


@router.get("/api/v1/users/{username}", **documented(
    200, "The user exists.", {404: "There is no such user.", **UNAVAILABLE}, answer=FoundUser))
async def get_user(request: Request) -> Response:
    """(beyond the original) How the rides service checks that a user exists."""
    username = request.path_params["username"]
    if username_problem(username) is None:
        answer = await _db(request).read({
            "table": "users", "columns": ["username"], "where": {"username": username},
        })
        if answer["rows"]:
            return json_response({"username": username})
    raise NotFound(f"There is no user {username!r}.")


@router.delete("/api/v1/users/{username}", **documented(
    200, "The user was deleted, with their rides and memberships: ``{}``.",
    {400: "There is no such user.", **UNAVAILABLE}))
async def delete_user(request: Request) -> Response:
    """Delete a user with their rides and memberships in one atomic write."""
    username = request.path_params["username"]
    if username_problem(username) is None:
        result = await _db(request).write(
            [{"op": "delete", "table": "users", "where": {"username": username}}]
        )
        if result["results"][0]["rowcount"]:
            return json_response({})
    raise BadRequest(f"There is no user {username!r} to delete.")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The users service's ASGI app (``uvicorn --factory rideshare.users.app:create_app``)."""
    return create_service_app(SERVICE, "/api/v1/users", router, settings)
