"""The rides service: create, list, look up, join and delete rides; count them (docs/api.md,
"Rides").

Every input is checked before the DBaaS is asked anything, so a client can get a 400 but never a
500. The master decides ride ids (a counter that never goes back), so they are unique for the life
of the deployment. Time is compared against "now" when a request arrives: rides are created only
in the future, and lists show only rides that have not left yet.
"""

from __future__ import annotations

import time
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response

from rideshare.config import Settings
from rideshare.dbclient import DBClient, DBConflict
from rideshare.errors import BadRequest
from rideshare.http import idempotency
from rideshare.http.app import create_service_app, read_json
from rideshare.http.errors import empty_response, expect_fields, json_response
from rideshare.http.openapi import UNAVAILABLE, documented
from rideshare.rides import rules
from rideshare.rides.users_check import user_exists

SERVICE = "rides"


class RideIdSegment(Convertor[str]):
    """Any path segment but ``count``, so that ``/api/v1/rides/count`` is its own path and other
    methods on it are a 405, not a join or delete of ride "count". Non-numeric ids still reach
    the routes, which answer 400."""

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


class NewRide(BaseModel):
    """``POST /api/v1/rides``: who offers it, when it leaves (``DD-MM-YYYY:SS-MM-HH`` in
    ``RIDESHARE_TIMEZONE``, in the future) and two different areas (1 to 198; docs/areas.md)."""

    created_by: str = Field(examples=["asha"])
    timestamp: str = Field(pattern="^[0-9]{2}-[0-9]{2}-[0-9]{4}:[0-9]{2}-[0-9]{2}-[0-9]{2}$",
                           examples=["25-12-2030:00-30-09"])
    source: int | str = Field(examples=["1"])
    destination: int | str = Field(examples=["2"])


class JoinRide(BaseModel):
    username: str = Field(examples=["ravi"])


class RideCreated(BaseModel):
    rideId: int  # noqa: N815 - the API's own name


class RideListed(BaseModel):
    rideId: int  # noqa: N815
    username: str
    timestamp: str


class RideDetails(BaseModel):
    rideId: int  # noqa: N815
    Created_by: str  # noqa: N815
    users: list[str]
    Timestamp: str  # noqa: N815
    source: int
    destination: int


router = APIRouter()


@router.post("/api/v1/rides", **documented(
    201, "The ride was created: ``{\"rideId\": n}``.",
    {400: "The body is not a valid ride: a bad timestamp or area, a past time, an unknown "
          "creator.", **UNAVAILABLE}, body=NewRide, answer=RideCreated))
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

@router.get("/api/v1/rides", **documented(
    200, "The upcoming rides, earliest first (204, no body, when there are none).",
    {204: "There are no such rides.", 400: "A missing or unknown area, or the same one twice.",
     **UNAVAILABLE}, answer=list[RideListed]))
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

@router.get("/api/v1/rides/count", **documented(
    200, "``[n]``: how many rides are stored, past ones included.", UNAVAILABLE,
    answer=list[int]))
async def count_rides(request: Request) -> Response:
    """How many rides are stored (past ones included), as ``[n]``."""
    answer = await _db(request).read({"table": "rides", "count": True})
    return json_response([answer["count"]])

@router.get(RIDE_PATH, **documented(
    200, "The ride and its riders in join order.",
    {204: "There is no such ride.", 400: "The ride id is not a number.", **UNAVAILABLE},
    answer=RideDetails))
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

@router.post(RIDE_PATH, **documented(
    200, "Joined (joining again changes nothing): ``{}``.",
    {204: "There is no such ride.", 400: "A bad body or ride id, an unknown user, or the "
     "ride's own creator.", **UNAVAILABLE}, body=JoinRide))
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

@router.delete(RIDE_PATH, **documented(
    200, "The ride and its memberships were deleted: ``{}``.",
    {400: "There is no such ride, or the id is not a number.", **UNAVAILABLE}))
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
    app = create_service_app(SERVICE, "/api/v1/rides", router, settings)
    app.state.zone = ZoneInfo(app.state.settings.timezone)
    return app
