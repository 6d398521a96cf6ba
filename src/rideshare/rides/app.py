"""The rides service: SPEC §3 (create, list, look up, join and delete rides; count them).

Every input is checked before the DBaaS is asked anything, so a client can get a 400 but never a
500. The master decides ride ids (a counter that never goes back), so they are unique for the life
of the deployment. Time is compared against "now" when a request arrives: rides are created only
in the future, and lists show only rides that have not left yet.
"""

from __future__ import annotations

import time
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response

from rideshare.config import Settings
from rideshare.dbclient import DBClient, DBConflict
from rideshare.errors import BadRequest
from rideshare.http import idempotency
from rideshare.http.app import create_service_app, read_json
from rideshare.http.errors import empty_response, expect_fields, json_response
from rideshare.rides import rules
from rideshare.rides.users_check import user_exists

SERVICE = "rides"


class RideIdSegment(Convertor[str]):
    """Any path segment but ``count``, so that ``/api/v1/rides/count`` is its own path and other
    methods on it are a 405, not a join or delete of ride "count". Non-numeric ids still reach
    the routes, which answer 400 as SPEC asks."""

    regex = "(?!count$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ride_segment", RideIdSegment())
RIDE_PATH = "/api/v1/rides/{ride_id:ride_segment}"


def _db(request: Request) -> DBClient:
    db: DBClient = request.app.state.db
    return db


def _zone(request: Request) -> ZoneInfo:
    zone: ZoneInfo = request.app.state.zone
    return zone


def _ride_id(request: Request) -> int:
    return rules.parse_ride_id(request.path_params["ride_id"])


def _areas(source: Any, destination: Any) -> tuple[int, int]:
    s = rules.parse_area(source, "source")
    d = rules.parse_area(destination, "destination")
    if s == d:
        raise BadRequest("The source and destination must be different areas.")
    return s, d


def _one_query_param(request: Request, name: str) -> str:
    values = request.query_params.getlist(name)
    if not values:
        raise BadRequest(f"The query parameter {name!r} is missing; use ?source=S&destination=D.")
    if len(values) > 1:
        raise BadRequest(f"Give the query parameter {name!r} once.")
    return values[0]


async def _require_user(request: Request, username: Any) -> str:
    if not isinstance(username, str):
        raise BadRequest("The username must be a string.")
    if not await user_exists(request.app.state.http, request.app.state.settings, username):
        raise BadRequest(f"There is no user {username!r}; create the user first.")
    return username


async def _find_ride(request: Request, ride_id: int) -> dict[str, Any] | None:
    answer = await _db(request).read({
        "table": "rides", "columns": ["ride_id", "created_by"], "where": {"ride_id": ride_id},
    })
    return answer["rows"][0] if answer["rows"] else None


def add_routes(app: FastAPI) -> None:
    @app.post("/api/v1/rides", status_code=201)
    async def create_ride(request: Request) -> Response:
        """Create a ride; 201 ``{"rideId": n}`` (the id is extra to the original spec's ``{}``)."""
        body = expect_fields(
            await read_json(request), ("created_by", "timestamp", "source", "destination")
        )
        ride_time = rules.parse_timestamp(body["timestamp"], _zone(request))
        if ride_time <= time.time():
            raise BadRequest("The timestamp is in the past; a ride must leave in the future.")
        source, destination = _areas(body["source"], body["destination"])
        if not isinstance(body["created_by"], str):
            raise BadRequest("'created_by' must be a username (a string).")
        write_id = idempotency.write_id(request, SERVICE, "create-ride")
        creator = await _require_user(request, body["created_by"])
        insert = {"op": "insert", "table": "rides", "values": {
            "created_by": creator, "ride_time": ride_time,
            "source": source, "destination": destination,
        }}
        try:
            result = await _db(request).write([insert], write_id)
        except DBConflict:  # the creator was deleted after the check
            raise BadRequest(f"There is no user {creator!r}; create the user first.") from None
        return json_response({"rideId": result["results"][0]["generated"]["ride_id"]}, 201)

    @app.get("/api/v1/rides")
    async def list_rides(request: Request) -> Response:
        """Upcoming rides from source to destination, earliest first; 204 when there are none."""
        source, destination = _areas(
            _one_query_param(request, "source"), _one_query_param(request, "destination")
        )
        answer = await _db(request).read({
            "table": "rides", "columns": ["ride_id", "created_by", "ride_time"],
            "where": {"source": source, "destination": destination,
                      "ride_time": {"gt": int(time.time())}},
            "order_by": [{"column": "ride_time"}, {"column": "ride_id"}],
        })
        zone = _zone(request)
        rides = [
            {"rideId": row["ride_id"], "username": row["created_by"],
             "timestamp": rules.format_timestamp(row["ride_time"], zone)}
            for row in answer["rows"]
        ]
        return json_response(rides) if rides else empty_response(204)

    @app.get("/api/v1/rides/count")
    async def count_rides(request: Request) -> Response:
        """How many rides are stored (past ones included), as ``[n]``."""
        answer = await _db(request).read({"table": "rides", "count": True})
        return json_response([answer["count"]])

    @app.get(RIDE_PATH)
    async def ride_details(request: Request) -> Response:
        """A ride with its riders in join order; 204 when there is no such ride."""
        ride_id = _ride_id(request)
        ride_rows, member_rows = await _db(request).read_many([
            {"table": "rides", "where": {"ride_id": ride_id},
             "columns": ["ride_id", "created_by", "ride_time", "source", "destination"]},
            {"table": "ride_members", "columns": ["username"], "where": {"ride_id": ride_id},
             "order_by": [{"column": "joined_seq"}]},
        ])
        if not ride_rows["rows"]:
            return empty_response(204)
        ride = ride_rows["rows"][0]
        return json_response({
            "rideId": ride["ride_id"],
            "Created_by": ride["created_by"],
            "users": [row["username"] for row in member_rows["rows"]],
            "Timestamp": rules.format_timestamp(ride["ride_time"], _zone(request)),
            "source": ride["source"],
            "destination": ride["destination"],
        })

    @app.post(RIDE_PATH)
    async def join_ride(request: Request) -> Response:
        """Join a ride; joining again is a no-op 200, an unknown ride is a 204."""
        ride_id = _ride_id(request)
        body = expect_fields(await read_json(request), ("username",))
        username = body["username"]
        if not isinstance(username, str):
            raise BadRequest("'username' must be a string.")
        write_id = idempotency.write_id(request, SERVICE, f"join-ride-{ride_id}")
        # The contract's order: a bad body or an unknown user is a 400 even when the ride does
        # not exist; only then is an unknown ride a 204 (the creator check needs the ride).
        await _require_user(request, username)
        ride = await _find_ride(request, ride_id)
        if ride is None:
            return empty_response(204)
        if ride["created_by"] == username:
            raise BadRequest("The ride's creator is already on it and cannot join it.")
        insert = {"op": "insert", "table": "ride_members", "on_conflict": "ignore",
                  "values": {"ride_id": ride_id, "username": username}}
        try:
            await _db(request).write([insert], write_id)
        except DBConflict:  # the ride or the user went away after the checks
            if await _find_ride(request, ride_id) is None:
                return empty_response(204)
            raise BadRequest(f"There is no user {username!r}; create the user first.") from None
        return json_response({})

    @app.delete(RIDE_PATH)
    async def delete_ride(request: Request) -> Response:
        """Delete a ride and its memberships; 400 when there is no such ride."""
        ride_id = _ride_id(request)
        result = await _db(request).write(
            [{"op": "delete", "table": "rides", "where": {"ride_id": ride_id}}]
        )
        if not result["results"][0]["rowcount"]:
            raise BadRequest(f"There is no ride {ride_id} to delete.")
        return json_response({})


def create_app(settings: Settings | None = None) -> FastAPI:
    """The rides service's ASGI app (``uvicorn --factory rideshare.rides.app:create_app``)."""
    app = create_service_app(SERVICE, "/api/v1/rides", add_routes, settings)
    app.state.zone = ZoneInfo(app.state.settings.timezone)
    return app
