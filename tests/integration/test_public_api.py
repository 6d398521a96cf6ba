"""The public API (docs/api.md) against a running stack (gateway, services, DBaaS, workers).

Every status code the spec names is exercised, success and failure, through the gateway as a
client would use it; ``db/clear`` and the users ``_count`` are reached on the service ports, as
the gateway refuses admin paths and routes ``/api/v1/_count`` to the rides service. Tests that
depend on what is stored clear it first; others use unique usernames. Timestamps are always
built from now plus some days, so the suite never goes stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest

from rideshare.rides.rules import format_timestamp
from rideshare.users.rules import verify_password
from tests.support import wait_until_async

DAY = 86_400
PASSWORD = hashlib.sha1(b"rideshare").hexdigest()
MIB = 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------


def zone(stack: Any) -> ZoneInfo:
    env = getattr(stack, "env", {}) or {}
    return ZoneInfo(env.get("RIDESHARE_TIMEZONE", "UTC"))


def when(stack: Any, days: float = 1, seconds: int = 0) -> str:
    """A timestamp ``days`` (+ ``seconds``) from now, in the stack's zone and the API's format."""
    return format_timestamp(int(time.time() + days * DAY) + seconds, zone(stack))


def uname(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def seg(text: str) -> str:
    """``text`` as one URL path segment (``/``, ``?``, ``#``, ``%`` and spaces escaped)."""
    return quote(text, safe="")


def is_json_error(response: httpx.Response) -> bool:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    body = response.json()
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


class Api:
    """A thin client of one stack: the gateway for the public API, the service ports for the
    admin paths (``db/clear``) and the users service's ``_count``."""

    def __init__(self, stack: Any, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.http = client
        self.gw = stack.gateway_url

    async def add_user(self, name: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
        return await self.http.put(f"{self.gw}/api/v1/users",
                                   json={"username": name, "password": password}, **kw)

    async def new_user(self, tag: str = "u") -> str:
        name = uname(tag)
        response = await self.add_user(name)
        assert response.status_code == 201, response.text
        return name

    async def create_ride(self, creator: str, days: float = 1, source: Any = 1,
                          destination: Any = 2, **kw: Any) -> httpx.Response:
        body = {"created_by": creator, "timestamp": when(self.stack, days),
                "source": source, "destination": destination}
        return await self.http.post(f"{self.gw}/api/v1/rides", json=body, **kw)

    async def new_ride(self, creator: str, days: float = 1, source: int = 1,
                       destination: int = 2) -> int:
        response = await self.create_ride(creator, days, source, destination)
        assert response.status_code == 201, response.text
        ride_id = response.json()["rideId"]
        assert isinstance(ride_id, int) and ride_id > 0
        return ride_id

    async def join(self, ride_id: Any, username: Any, **kw: Any) -> httpx.Response:
        return await self.http.post(f"{self.gw}/api/v1/rides/{ride_id}",
                                    json={"username": username}, **kw)

    async def details(self, ride_id: Any) -> httpx.Response:
        return await self.http.get(f"{self.gw}/api/v1/rides/{ride_id}")

    async def list_rides(self, source: Any, destination: Any) -> httpx.Response:
        return await self.http.get(f"{self.gw}/api/v1/rides",
                                   params={"source": source, "destination": destination})

    async def ride_count(self) -> int:
        response = await self.http.get(f"{self.gw}/api/v1/rides/count")
        assert response.status_code == 200, response.text
        return response.json()[0]

    async def users(self) -> list[str]:
        response = await self.http.get(f"{self.gw}/api/v1/users")
        assert response.status_code in (200, 204), response.text
        return response.json() if response.status_code == 200 else []

    async def clear(self) -> None:
        response = await self.http.post(f"{self.stack.rides_url}/api/v1/db/clear")
        assert response.status_code == 200 and response.json() == {}

    def count_url(self, service: str) -> str:
        base = {"users": self.stack.users_url, "rides": self.stack.rides_url}[service]
        return f"{base}/api/v1/_count"

    async def count(self, service: str) -> int:
        response = await self.http.get(self.count_url(service))
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body, list) and len(body) == 1 and isinstance(body[0], int)
        return body[0]

    async def reset_count(self, service: str) -> None:
        response = await self.http.delete(self.count_url(service))
        assert response.status_code == 200 and response.json() == {}


@pytest.fixture
async def api(stack: Any) -> AsyncIterator[Api]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        yield Api(stack, client)


# --- users service (docs/api.md, "Users") ---------------------------------------------------------


async def test_add_user_is_201_empty_object(api: Api) -> None:
    response = await api.add_user(uname())
    assert response.status_code == 201
    assert response.json() == {}


async def test_usernames_are_case_sensitive_and_taken_is_400(api: Api) -> None:
    base = uname("Case")
    assert (await api.add_user(base)).status_code == 201
    assert (await api.add_user(base.lower())).status_code == 201
    again = await api.add_user(base, password=hashlib.sha1(b"other").hexdigest())
    assert again.status_code == 400 and is_json_error(again)
    assert "taken" in again.json()["error"]


@pytest.mark.parametrize(
    "password",
    ["", "abc", PASSWORD[:-1], PASSWORD + "a", "g" * 40, "-" * 40, " " + PASSWORD[1:],
     hashlib.sha256(b"x").hexdigest()],
)
async def test_password_must_be_40_hex_digits(api: Api, password: str) -> None:
    response = await api.add_user(uname(), password=password)
    assert response.status_code == 400 and is_json_error(response)


async def test_password_hex_in_either_case_is_accepted(api: Api) -> None:
    assert (await api.add_user(uname(), password=PASSWORD.upper())).status_code == 201
    assert (await api.add_user(uname(), password="aB" * 20)).status_code == 201


@pytest.mark.parametrize(
    "username",
    ["", "x" * 257, ".", "..", "a/b", "/", "a\x00b", "a\nb", "tab\there", "bell\x07", "del\x7f",
     "c1\x85"],
)
async def test_bad_usernames_are_400(api: Api, username: str) -> None:
    response = await api.add_user(username)
    assert response.status_code == 400 and is_json_error(response)


async def test_username_of_256_characters_is_accepted(api: Api) -> None:
    name = uname()
    name = name + "x" * (256 - len(name))
    assert (await api.add_user(name)).status_code == 201
    assert (await api.http.get(f"{api.gw}/api/v1/users/{name}")).status_code == 200


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"not json", b"[]", b"null", b'"user"', b'{"username": "a"}',
     b'{"password": "' + PASSWORD.encode() + b'"}',
     b'{"username": "a", "password": "' + PASSWORD.encode() + b'", "role": "admin"}',
     b'{"username": 42, "password": "' + PASSWORD.encode() + b'"}',
     b'{"username": null, "password": "' + PASSWORD.encode() + b'"}',
     b'{"username": ["a"], "password": "' + PASSWORD.encode() + b'"}',
     b'{"username": "a", "password": 1234567890123456789012345678901234567890}'],
)
async def test_bad_user_bodies_are_400(api: Api, content: bytes) -> None:
    response = await api.http.put(f"{api.gw}/api/v1/users", content=content,
                                  headers={"content-type": "application/json"})
    assert response.status_code == 400 and is_json_error(response)


async def test_delete_user_is_200_then_400(api: Api) -> None:
    name = await api.new_user()
    first = await api.http.delete(f"{api.gw}/api/v1/users/{name}")
    assert first.status_code == 200 and first.json() == {}
    second = await api.http.delete(f"{api.gw}/api/v1/users/{name}")
    assert second.status_code == 400 and is_json_error(second)


async def test_delete_unknown_user_is_400(api: Api) -> None:
    response = await api.http.delete(f"{api.gw}/api/v1/users/{uname('nobody')}")
    assert response.status_code == 400 and is_json_error(response)


async def test_list_users_in_creation_order_and_204_when_empty(api: Api) -> None:
    await api.clear()
    empty = await api.http.get(f"{api.gw}/api/v1/users")
    assert empty.status_code == 204 and empty.content == b""
    names = [uname("z"), uname("a"), uname("m")]
    for name in names:
        assert (await api.add_user(name)).status_code == 201
    listed = await api.http.get(f"{api.gw}/api/v1/users")
    assert listed.status_code == 200 and listed.json() == names


async def test_get_user_is_200_or_404_and_never_shows_the_password(api: Api) -> None:
    name = await api.new_user()
    found = await api.http.get(f"{api.gw}/api/v1/users/{name}")
    assert found.status_code == 200 and found.json() == {"username": name}
    assert PASSWORD not in found.text
    missing = await api.http.get(f"{api.gw}/api/v1/users/{uname('ghost')}")
    assert missing.status_code == 404 and is_json_error(missing)


async def test_only_a_salted_hash_of_the_password_is_stored(api: Api) -> None:
    first, second = uname("h1"), uname("h2")
    assert (await api.add_user(first)).status_code == 201
    assert (await api.add_user(second, password=PASSWORD.upper())).status_code == 201
    response = await api.http.post(f"{api.stack.orchestrator_url}/api/v1/db/read", json={
        "table": "users", "columns": ["username", "password_hash"],
        "where": {"username": {"in": [first, second]}}})
    assert response.status_code == 200, response.text
    stored = {row["username"]: row["password_hash"] for row in response.json()["rows"]}
    assert set(stored) == {first, second}
    assert stored[first] != stored[second]  # same password, different salts
    for value in stored.values():
        assert PASSWORD not in value.lower()
        assert verify_password(PASSWORD, value)


async def test_names_with_odd_characters_work_in_paths(api: Api) -> None:
    for name in [uname("sp ace"), uname("ünï"), uname("q?x=1&y"), uname("hash#"), uname("pct%2F")]:
        assert (await api.add_user(name)).status_code == 201, name
        url = f"{api.gw}/api/v1/users/{seg(name)}"
        assert (await api.http.get(url)).json() == {"username": name}
        ride = await api.new_ride(name)  # the rides service quotes the name for its check
        assert (await api.details(ride)).json()["Created_by"] == name
        assert (await api.http.delete(url)).status_code == 200, name


async def test_deleting_a_user_removes_their_rides_and_memberships(api: Api) -> None:
    creator, rider, other = await api.new_user("c"), await api.new_user("r"), await api.new_user()
    own = await api.new_ride(creator, source=5, destination=6)
    theirs = await api.new_ride(other, source=5, destination=6)
    assert (await api.join(theirs, creator)).status_code == 200
    assert (await api.join(theirs, rider)).status_code == 200
    assert (await api.join(own, rider)).status_code == 200
    assert (await api.http.delete(f"{api.gw}/api/v1/users/{creator}")).status_code == 200
    assert (await api.details(own)).status_code == 204
    assert (await api.details(theirs)).json()["users"] == [rider]


# --- rides service (docs/api.md, "Rides") ---------------------------------------------------------


async def test_create_ride_is_201_with_a_fresh_integer_id(api: Api) -> None:
    user = await api.new_user()
    first = await api.create_ride(user)
    second = await api.create_ride(user)
    assert first.status_code == second.status_code == 201
    a, b = first.json()["rideId"], second.json()["rideId"]
    assert isinstance(a, int) and isinstance(b, int) and 0 < a < b
    assert set(first.json()) == {"rideId"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "2031-01-01 10:00:00"),
        ("timestamp", "1-1-2031:00-00-10"),
        ("timestamp", "31-02-2031:00-00-10"),
        ("timestamp", "01-01-2020:00-00-10"),  # past
        ("timestamp", "01-01-2031:00-00-24"),
        ("timestamp", 1924992000),
        ("timestamp", None),
        ("source", 0),
        ("source", 199),
        ("source", 1.0),
        ("source", "1.0"),
        ("source", "1e2"),
        ("source", " 1"),
        ("source", "١"),
        ("source", True),
        ("source", None),
        ("destination", 2.5),
        ("destination", [2]),
        ("destination", "-2"),
        ("destination", 1),  # == source
        ("created_by", 5),
        ("created_by", None),
        ("created_by", ""),
        ("created_by", "a/b"),
    ],
)
async def test_bad_ride_fields_are_400(api: Api, field: str, value: Any) -> None:
    user = await api.new_user()
    body: dict[str, Any] = {"created_by": user, "timestamp": when(api.stack, 3),
                            "source": 1, "destination": 2}
    body[field] = value
    response = await api.http.post(f"{api.gw}/api/v1/rides", json=body)
    assert response.status_code == 400 and is_json_error(response), (field, value)


async def test_ride_by_unknown_user_is_400(api: Api) -> None:
    response = await api.create_ride(uname("ghost"))
    assert response.status_code == 400 and is_json_error(response)


async def test_timestamp_just_in_the_past_is_400(api: Api) -> None:
    user = await api.new_user()
    body = {"created_by": user, "timestamp": when(api.stack, 0, seconds=-2), "source": 1,
            "destination": 2}
    response = await api.http.post(f"{api.gw}/api/v1/rides", json=body)
    assert response.status_code == 400 and is_json_error(response)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b"{}", b'{"created_by": "a"}', b'{"source": 1, "destination": 2}'],
)
async def test_bad_ride_bodies_are_400(api: Api, content: bytes) -> None:
    response = await api.http.post(f"{api.gw}/api/v1/rides", content=content,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 400 and is_json_error(response)


async def test_unknown_ride_field_is_400(api: Api) -> None:
    user = await api.new_user()
    body = {"created_by": user, "timestamp": when(api.stack), "source": 1, "destination": 2,
            "seats": 3}
    response = await api.http.post(f"{api.gw}/api/v1/rides", json=body)
    assert response.status_code == 400 and is_json_error(response)


async def test_areas_as_digit_strings_are_accepted(api: Api) -> None:
    await api.clear()
    user = await api.new_user()
    ride_id = await api.new_ride(user, source="17", destination="198")  # type: ignore[arg-type]
    details = (await api.details(ride_id)).json()
    assert details["source"] == 17 and details["destination"] == 198
    assert (await api.list_rides("17", 198)).json()[0]["rideId"] == ride_id


async def test_list_rides_upcoming_earliest_first(api: Api) -> None:
    await api.clear()
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    later = await api.new_ride(alice, days=3, source=10, destination=20)
    sooner = await api.new_ride(bob, days=1, source=10, destination=20)
    await api.new_ride(bob, days=2, source=20, destination=10)  # the other direction
    response = await api.list_rides(10, 20)
    assert response.status_code == 200
    assert response.json() == [
        {"rideId": sooner, "username": bob,
         "timestamp": (await api.details(sooner)).json()["Timestamp"]},
        {"rideId": later, "username": alice,
         "timestamp": (await api.details(later)).json()["Timestamp"]},
    ]


async def test_list_rides_returns_the_timestamp_as_given(api: Api) -> None:
    await api.clear()
    user = await api.new_user()
    ts = when(api.stack, 4)
    body = {"created_by": user, "timestamp": ts, "source": 30, "destination": 31}
    assert (await api.http.post(f"{api.gw}/api/v1/rides", json=body)).status_code == 201
    assert (await api.list_rides(30, 31)).json()[0]["timestamp"] == ts


async def test_list_rides_is_204_when_none(api: Api) -> None:
    await api.clear()
    response = await api.list_rides(40, 41)
    assert response.status_code == 204 and response.content == b""


async def test_rides_leave_the_list_when_they_depart(api: Api) -> None:
    await api.clear()
    user = await api.new_user()
    body = {"created_by": user, "timestamp": when(api.stack, 0, seconds=3), "source": 50,
            "destination": 51}
    created = await api.http.post(f"{api.gw}/api/v1/rides", json=body)
    assert created.status_code == 201
    assert (await api.list_rides(50, 51)).status_code == 200

    async def gone() -> bool:
        return (await api.list_rides(50, 51)).status_code == 204

    await wait_until_async(gone, 15, "a departed ride leaves the list", every_s=0.25)
    assert (await api.details(created.json()["rideId"])).status_code == 200  # still stored


@pytest.mark.parametrize(
    "params",
    [{}, {"source": 1}, {"destination": 2}, {"source": "a", "destination": 2},
     {"source": 1, "destination": "two"}, {"source": 0, "destination": 2},
     {"source": 1, "destination": 199}, {"source": 3, "destination": 3},
     {"source": "1.0", "destination": 2}, {"source": "", "destination": 2}],
)
async def test_list_rides_bad_parameters_are_400(api: Api, params: dict[str, Any]) -> None:
    response = await api.http.get(f"{api.gw}/api/v1/rides", params=params)
    assert response.status_code == 400 and is_json_error(response)


async def test_ride_details_200_with_the_spec_keys(api: Api) -> None:
    creator, r1, r2 = await api.new_user("c"), await api.new_user("r1"), await api.new_user("r2")
    ts = when(api.stack, 5)
    body = {"created_by": creator, "timestamp": ts, "source": 7, "destination": 8}
    ride_id = (await api.http.post(f"{api.gw}/api/v1/rides", json=body)).json()["rideId"]
    assert (await api.join(ride_id, r2)).status_code == 200
    assert (await api.join(ride_id, r1)).status_code == 200
    response = await api.details(ride_id)
    assert response.status_code == 200
    assert response.json() == {"rideId": ride_id, "Created_by": creator, "users": [r2, r1],
                               "Timestamp": ts, "source": 7, "destination": 8}


async def test_ride_details_204_for_no_such_ride(api: Api) -> None:
    response = await api.details(2**62)
    assert response.status_code == 204 and response.content == b""


@pytest.mark.parametrize("ride_id", ["abc", "0", "-1", "1.5", "1e3", str(2**63), "9" * 60, "%20"])
async def test_bad_ride_ids_are_400(api: Api, ride_id: str) -> None:
    user = await api.new_user()
    for response in [
        await api.details(ride_id),
        await api.join(ride_id, user),
        await api.http.delete(f"{api.gw}/api/v1/rides/{ride_id}"),
    ]:
        assert response.status_code == 400 and is_json_error(response), ride_id


async def test_join_is_200_and_again_a_no_op(api: Api) -> None:
    creator, rider = await api.new_user("c"), await api.new_user("r")
    ride_id = await api.new_ride(creator)
    first = await api.join(ride_id, rider)
    assert first.status_code == 200 and first.json() == {}
    again = await api.join(ride_id, rider)
    assert again.status_code == 200 and again.json() == {}
    assert (await api.details(ride_id)).json()["users"] == [rider]


async def test_join_unknown_ride_is_204(api: Api) -> None:
    response = await api.join(2**62 + 1, await api.new_user())
    assert response.status_code == 204 and response.content == b""


async def test_join_with_a_bad_body_is_400_even_when_the_ride_does_not_exist(api: Api) -> None:
    response = await api.http.post(f"{api.gw}/api/v1/rides/{2**62 + 3}", content=b'{"user": 1}',
                                   headers={"content-type": "application/json"})
    assert response.status_code == 400 and is_json_error(response)


async def test_join_by_an_unknown_user_is_400_even_when_the_ride_does_not_exist(api: Api) -> None:
    response = await api.join(2**62 + 5, uname("ghost"))
    assert response.status_code == 400 and is_json_error(response)


async def test_join_by_unknown_user_is_400(api: Api) -> None:
    ride_id = await api.new_ride(await api.new_user())
    response = await api.join(ride_id, uname("ghost"))
    assert response.status_code == 400 and is_json_error(response)
    assert (await api.details(ride_id)).json()["users"] == []


async def test_creator_cannot_join_own_ride(api: Api) -> None:
    creator = await api.new_user()
    ride_id = await api.new_ride(creator)
    response = await api.join(ride_id, creator)
    assert response.status_code == 400 and is_json_error(response)
    assert (await api.details(ride_id)).json()["users"] == []


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"{}", b"[]", b'{"username": 5}', b'{"username": null}',
     b'{"username": "a", "extra": 1}', b'{"user": "a"}'],
)
async def test_bad_join_bodies_are_400(api: Api, content: bytes) -> None:
    ride_id = await api.new_ride(await api.new_user())
    response = await api.http.post(f"{api.gw}/api/v1/rides/{ride_id}", content=content,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 400 and is_json_error(response)


async def test_delete_ride_is_200_then_400(api: Api) -> None:
    ride_id = await api.new_ride(await api.new_user())
    first = await api.http.delete(f"{api.gw}/api/v1/rides/{ride_id}")
    assert first.status_code == 200 and first.json() == {}
    second = await api.http.delete(f"{api.gw}/api/v1/rides/{ride_id}")
    assert second.status_code == 400 and is_json_error(second)
    assert (await api.details(ride_id)).status_code == 204


async def test_delete_unknown_ride_is_400(api: Api) -> None:
    response = await api.http.delete(f"{api.gw}/api/v1/rides/{2**62 + 7}")
    assert response.status_code == 400 and is_json_error(response)


async def test_ride_count_is_200_list_of_one_integer(api: Api) -> None:
    await api.clear()
    assert await api.ride_count() == 0
    user = await api.new_user()
    await api.new_ride(user)
    doomed = await api.new_ride(user)
    assert await api.ride_count() == 2
    await api.http.delete(f"{api.gw}/api/v1/rides/{doomed}")
    assert await api.ride_count() == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_ride_count_other_methods_are_405(api: Api, method: str) -> None:
    response = await api.http.request(method, f"{api.gw}/api/v1/rides/count", json={})
    assert response.status_code == 405 and is_json_error(response)
    assert "GET" in response.headers["allow"]


async def test_ride_ids_are_never_reused(api: Api) -> None:
    user = await api.new_user()
    first = await api.new_ride(user)
    await api.http.delete(f"{api.gw}/api/v1/rides/{first}")
    second = await api.new_ride(user)
    await api.clear()
    third = await api.new_ride(await api.new_user())
    assert first < second < third


# --- both services (docs/api.md, "On both services") ----------------------------------------------


@pytest.mark.parametrize("service", ["users", "rides"])
async def test_db_clear_is_200_also_when_empty(api: Api, service: str) -> None:
    url = {"users": api.stack.users_url, "rides": api.stack.rides_url}[service]
    await api.new_ride(await api.new_user())
    for _ in range(2):
        response = await api.http.post(f"{url}/api/v1/db/clear")
        assert response.status_code == 200 and response.json() == {}
    assert await api.users() == []
    assert await api.ride_count() == 0


@pytest.mark.parametrize("service", ["users", "rides"])
async def test_count_get_and_delete(api: Api, service: str) -> None:
    await api.reset_count(service)
    assert await api.count(service) == 0
    path = {"users": "/api/v1/users", "rides": "/api/v1/rides/count"}[service]
    base = {"users": api.stack.users_url, "rides": api.stack.rides_url}[service]
    for _ in range(3):
        await api.http.get(base + path)
    assert await api.count(service) == 3
    assert await api.count(service) == 3  # _count itself is not counted
    await api.reset_count(service)
    assert await api.count(service) == 0


@pytest.mark.parametrize(
    ("service", "method", "path", "allowed"),
    [("users", "POST", "/api/v1/users", {"GET", "PUT"}),
     ("users", "PATCH", "/api/v1/users", {"GET", "PUT"}),
     ("users", "POST", "/api/v1/users/someone", {"GET", "DELETE"}),
     ("rides", "PUT", "/api/v1/rides", {"GET", "POST"}),
     ("rides", "PUT", "/api/v1/rides/1", {"GET", "POST", "DELETE"}),
     ("rides", "POST", "/api/v1/_count", {"GET", "DELETE"}),
     ("rides", "GET", "/api/v1/db/clear", {"POST"})],
)
async def test_other_methods_are_405_with_allow(
    api: Api, service: str, method: str, path: str, allowed: set[str]
) -> None:
    url = {"users": api.stack.users_url, "rides": api.stack.rides_url}[service]
    response = await api.http.request(method, url + path, json={})
    assert response.status_code == 405 and is_json_error(response)
    assert allowed <= {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    "path", ["/api/v1/users/a/b", "/api/v1/rides/1/2", "/api/v1/nothing", "/api/v2/rides"]
)
async def test_unknown_paths_are_404_json_and_not_counted(api: Api, path: str) -> None:
    await api.reset_count("users")
    await api.reset_count("rides")
    response = await api.http.get(api.gw + path)
    assert response.status_code == 404 and is_json_error(response)
    assert await api.count("users") == 0
    assert await api.count("rides") == 0


async def test_get_and_delete_ignore_a_body(api: Api) -> None:
    name = await api.new_user()
    listed = await api.http.request("GET", f"{api.gw}/api/v1/users", content=b"{}",
                                    headers={"content-type": "application/json"})
    assert listed.status_code == 200
    garbage = await api.http.request("DELETE", f"{api.gw}/api/v1/users/{name}",
                                     content=b"not json{")
    assert garbage.status_code == 200


async def test_count_formula_both_services(api: Api) -> None:
    await api.clear()
    alice, bob = uname("alice"), uname("bob")
    await api.reset_count("users")
    await api.reset_count("rides")
    users_expected = rides_expected = 0

    # users: every request to /api/v1/users... counts, whatever its status
    assert (await api.add_user(alice)).status_code == 201
    assert (await api.add_user(bob)).status_code == 201
    assert (await api.add_user(bob)).status_code == 400
    assert (await api.http.get(f"{api.gw}/api/v1/users")).status_code == 200
    assert (await api.http.post(f"{api.gw}/api/v1/users", json={})).status_code == 405
    assert (await api.http.delete(f"{api.gw}/api/v1/users/{uname()}")).status_code == 400
    users_expected += 6
    # not counted: unknown paths, health, metrics, docs, _count, db/clear
    assert (await api.http.get(f"{api.gw}/api/v1/users/a/b")).status_code == 404
    for extra in ["/health", "/metrics", "/docs", "/openapi.json"]:
        await api.http.get(api.stack.users_url + extra)
        await api.http.get(api.stack.rides_url + extra)
    await api.http.post(f"{api.stack.users_url}/api/v1/db/clear")
    assert (await api.add_user(alice)).status_code == 201
    assert (await api.add_user(bob)).status_code == 201
    users_expected += 2

    # rides: each creation that reaches the user check adds one request to the users service
    ride = await api.new_ride(alice, source=3, destination=4)
    await api.new_ride(bob, source=3, destination=4)
    assert (await api.create_ride(uname("ghost"))).status_code == 400
    rides_expected += 3
    users_expected += 3
    bad_ts = {"created_by": alice, "timestamp": "soon", "source": 3, "destination": 4}
    assert (await api.http.post(f"{api.gw}/api/v1/rides", json=bad_ts)).status_code == 400
    rides_expected += 1  # refused before the user check
    assert (await api.join(ride, bob)).status_code == 200
    rides_expected += 1
    users_expected += 1
    assert (await api.join(ride, alice)).status_code == 400  # the creator: checked as a user first
    rides_expected += 1
    users_expected += 1
    assert (await api.list_rides(3, 4)).status_code == 200
    assert (await api.list_rides(3, 3)).status_code == 400
    assert (await api.details(ride)).status_code == 200
    assert (await api.details("x")).status_code == 400
    assert (await api.http.get(f"{api.gw}/api/v1/rides/count")).status_code == 200
    assert (await api.http.post(f"{api.gw}/api/v1/rides/count")).status_code == 405
    assert (await api.http.put(f"{api.gw}/api/v1/rides")).status_code == 405
    rides_expected += 7
    assert (await api.http.get(f"{api.gw}/api/v1/rides/1/2")).status_code == 404
    assert (await api.http.get(f"{api.gw}/api/v1/_count")).status_code == 200
    await api.http.post(f"{api.stack.rides_url}/api/v1/db/clear")

    assert await api.count("users") == users_expected
    assert await api.count("rides") == rides_expected


@pytest.mark.parametrize("service", ["users", "rides"])
async def test_count_survives_a_restart(api: Api, service: str) -> None:
    await api.reset_count(service)
    path = {"users": "/api/v1/users", "rides": "/api/v1/rides/count"}[service]
    base = {"users": api.stack.users_url, "rides": api.stack.rides_url}[service]
    for _ in range(4):
        await api.http.get(base + path)
    assert await api.count(service) == 4
    for _ in range(3):  # counted but maybe not yet flushed: a clean stop flushes them
        await api.http.get(base + path)
    await asyncio.to_thread(api.stack.restart_service, service)
    assert await api.count(service) == 7
    await api.http.get(base + path)
    assert await api.count(service) == 8


# --- the gateway -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/db/clear", "/api/v1/db/write", "/api/v1/db/read", "/api/v1/crash/master",
             "/api/v1/crash/slave", "/api/v1/worker/list", "/api/v1/cluster", "/metrics",
             "/dashboard"],
)
async def test_gateway_refuses_admin_paths_with_403_json(api: Api, path: str) -> None:
    await api.new_user()
    for method in ["GET", "POST"]:
        response = await api.http.request(method, api.gw + path, json={})
        assert response.status_code == 403 and is_json_error(response)
    assert await api.users() != []  # the clear never reached anything


@pytest.mark.parametrize(
    "path", ["/api/v1/users", "/api/v1/rides", "/api/v1/rides/1"],
)
async def test_bodies_over_one_mib_are_413_json(api: Api, path: str) -> None:
    method = "PUT" if path == "/api/v1/users" else "POST"
    huge = b'{"username": "' + b"a" * (MIB + 10) + b'"}'
    response = await api.http.request(method, api.gw + path, content=huge,
                                      headers={"content-type": "application/json"})
    assert response.status_code == 413 and is_json_error(response)
    service_url = api.stack.users_url if path.endswith("users") else api.stack.rides_url
    direct = await api.http.request(method, service_url + path, content=huge)
    assert direct.status_code == 413 and is_json_error(direct)


# --- the original grader's flow --------------------------------------------------------------


async def test_original_grader_flow(api: Api) -> None:
    await api.clear()
    user = uname("grader")
    assert (await api.add_user(user)).status_code == 201
    created = await api.http.post(f"{api.gw}/api/v1/rides", json={
        "created_by": user, "timestamp": when(api.stack, 7), "source": "1", "destination": "2"})
    assert created.status_code == 201
    ride_id = created.json()["rideId"]
    listed = await api.list_rides(1, 2)
    assert listed.status_code == 200 and listed.json()[0]["rideId"] == ride_id
    details = await api.details(ride_id)
    assert details.status_code == 200 and details.json()["Created_by"] == user
    assert (await api.http.delete(f"{api.gw}/api/v1/rides/{ride_id}")).status_code == 200
    assert (await api.http.delete(f"{api.gw}/api/v1/users/{user}")).status_code == 200
    assert (await api.http.delete(f"{api.gw}/api/v1/users/{user}")).status_code == 400
    assert (await api.list_rides(1, 2)).status_code == 204


# --- concurrency -----------------------------------------------------------------------------


async def test_user_then_ride_at_once_100_times(api: Api) -> None:
    semaphore = asyncio.Semaphore(10)

    async def pair(i: int) -> tuple[int, int]:
        async with semaphore:
            name = uname(f"p{i}")
            added = await api.add_user(name)
            ride = await api.create_ride(name, source=60, destination=61)
            return added.status_code, ride.status_code

    results = await asyncio.gather(*(pair(i) for i in range(100)))
    assert results == [(201, 201)] * 100


async def test_40_users_join_one_ride_concurrently(api: Api) -> None:
    ride_id = await api.new_ride(await api.new_user("c"))
    riders = await asyncio.gather(*(api.new_user(f"j{i}") for i in range(40)))
    answers = await asyncio.gather(*(api.join(ride_id, r) for r in riders))
    assert [a.status_code for a in answers] == [200] * 40
    members = (await api.details(ride_id)).json()["users"]
    assert sorted(members) == sorted(riders) and len(members) == 40


async def test_30_concurrent_creations_of_one_username_exactly_one_201(api: Api) -> None:
    name = uname("race")
    answers = await asyncio.gather(*(api.add_user(name) for _ in range(30)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [400] * 29
    assert (await api.users()).count(name) == 1


async def test_10_concurrent_deletes_of_one_ride_exactly_one_200(api: Api) -> None:
    ride_id = await api.new_ride(await api.new_user())
    answers = await asyncio.gather(
        *(api.http.delete(f"{api.gw}/api/v1/rides/{ride_id}") for _ in range(10))
    )
    assert sorted(a.status_code for a in answers) == [200] + [400] * 9


# --- Idempotency-Key (beyond) ----------------------------------------------------------------


async def test_idempotent_ride_creation_repeat_gives_the_same_id(api: Api) -> None:
    user = await api.new_user()
    before = await api.ride_count()
    key = {"Idempotency-Key": uuid.uuid4().hex}
    first = await api.create_ride(user, days=2, headers=key)
    second = await api.create_ride(user, days=2, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json()["rideId"] == second.json()["rideId"]
    assert await api.ride_count() == before + 1
    other = await api.create_ride(user, days=2, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert other.json()["rideId"] != first.json()["rideId"]


async def test_idempotent_user_creation_repeat_is_201_once(api: Api) -> None:
    name = uname("idem")
    key = {"Idempotency-Key": "user-" + uuid.uuid4().hex}
    first = await api.add_user(name, headers=key)
    second = await api.add_user(name, headers=key)
    assert first.status_code == second.status_code == 201
    assert (await api.add_user(name)).status_code == 400  # without the key: taken
    assert (await api.users()).count(name) == 1


async def test_idempotent_join_repeat(api: Api) -> None:
    ride_id = await api.new_ride(await api.new_user("c"))
    rider = await api.new_user("r")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert (await api.join(ride_id, rider, headers=key)).status_code == 200
    assert (await api.join(ride_id, rider, headers=key)).status_code == 200
    assert (await api.details(ride_id)).json()["users"] == [rider]


@pytest.mark.parametrize("key", ["x" * 201, "caf\u00e9", "tab\there"])
async def test_bad_idempotency_keys_are_400(api: Api, key: str) -> None:
    response = await api.add_user(uname(), headers={"Idempotency-Key": key.encode("latin-1")})
    assert response.status_code == 400 and is_json_error(response)


# --- hostile input -----------------------------------------------------------------------------

SQLISH = ["'; DROP TABLE users; --", "1 OR 1=1", "\" OR \"\"=\"", "1); DELETE FROM rides; --",
          "%' OR '1'='1", "$1", "\\x00", "NULL"]


async def test_hostile_input_is_4xx_json_and_changes_nothing(api: Api) -> None:
    await api.clear()
    creator, rider = await api.new_user("c"), await api.new_user("r")
    ride_id = await api.new_ride(creator, source=90, destination=91)
    assert (await api.join(ride_id, rider)).status_code == 200
    users_before = await api.users()
    details_before = (await api.details(ride_id)).json()

    gw = api.gw
    attempts: list[tuple[str, str, dict[str, Any]]] = []
    for s in SQLISH:
        attempts += [
            ("PUT", f"{gw}/api/v1/users", {"json": {"username": creator, "password": s}}),
            ("PUT", f"{gw}/api/v1/users", {"json": {"username": s, "password": s}}),
            ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": s, "timestamp": when(api.stack),
                                                     "source": 1, "destination": 2}}),
            ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": creator, "timestamp": s,
                                                     "source": 1, "destination": 2}}),
            ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": creator,
                                                     "timestamp": when(api.stack),
                                                     "source": s, "destination": 2}}),
            ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": creator,
                                                     "timestamp": when(api.stack),
                                                     "source": 1, "destination": s}}),
            ("GET", f"{gw}/api/v1/rides", {"params": {"source": s, "destination": 91}}),
            ("GET", f"{gw}/api/v1/rides", {"params": {"source": 90, "destination": s}}),
            ("POST", f"{gw}/api/v1/rides/{ride_id}", {"json": {"username": s}}),
            ("DELETE", f"{gw}/api/v1/users/{seg(s)}", {}),
            ("GET", f"{gw}/api/v1/users/{seg(s)}", {}),
        ]
        for method in ["GET", "POST", "DELETE"]:
            attempts.append((method, f"{gw}/api/v1/rides/{seg(s)}", {"json": {"username": rider}}))
    attempts += [
        ("PUT", f"{gw}/api/v1/users", {"content": b"\xff\xfe\x00"}),
        ("PUT", f"{gw}/api/v1/users", {"content": b'{"username": "a", "username": 1}'}),
        ("PUT", f"{gw}/api/v1/users", {"content": b"[" * 100_000}),
        ("PUT", f"{gw}/api/v1/users", {"content": b'{"username":"\\ud800","password":"x"}'}),
        ("POST", f"{gw}/api/v1/rides", {"content": b'{"created_by": "' + b"a" * 500_000 + b'"}'}),
        ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": creator, "timestamp": when(
            api.stack), "source": 10**30, "destination": 2}}),
        ("POST", f"{gw}/api/v1/rides", {"json": {"created_by": creator, "timestamp": when(
            api.stack), "source": "9" * 5000, "destination": 2}}),
        ("POST", f"{gw}/api/v1/rides/{ride_id}", {"json": {"username": "x" * 10_000}}),
        ("POST", f"{gw}/api/v1/rides/{ride_id}", {"json": {"username": ".."}}),
        ("POST", f"{gw}/api/v1/rides/{ride_id}", {"json": {"username": "a/../../db/clear"}}),
        ("GET", f"{gw}/api/v1/rides/{'9' * 5000}", {}),
        ("GET", f"{gw}/api/v1/rides/-9223372036854775808", {}),
    ]
    for method, url, kw in attempts:
        response = await api.http.request(method, url, **kw)
        assert 400 <= response.status_code < 500, (method, url, response.text)
        assert is_json_error(response), (method, url, response.text)

    assert await api.users() == users_before
    assert (await api.details(ride_id)).json() == details_before
    assert await api.ride_count() == 1


# --- several processes per service -------------------------------------------------------------


async def test_count_is_exact_with_two_processes_per_service(make_stack: Any) -> None:
    stack = await asyncio.to_thread(make_stack, RIDESHARE_SERVICE_PROCESSES="2")
    async with httpx.AsyncClient(timeout=60) as client:
        api = Api(stack, client)
        await api.reset_count("users")
        await api.reset_count("rides")
        for _ in range(10):  # a new connection each time, so both processes get some
            async with httpx.AsyncClient(timeout=60) as fresh:
                listed = await fresh.get(f"{stack.users_url}/api/v1/users")
                assert listed.status_code == 204
                refused = await fresh.post(f"{stack.rides_url}/api/v1/rides/count")
                assert refused.status_code == 405
        assert await api.count("users") == 10
        assert await api.count("rides") == 10
        await api.reset_count("users")
        assert await api.count("users") == 0
    await asyncio.to_thread(stack.down)
