"""Every error RideShare answers with, and the one error that ends a worker.

An error a part answers with carries an HTTP status and a sentence a person can act on; every
HTTP part turns it into ``{"error": "<sentence>"}`` (``http/errors.py``). Raise the class that
names what went wrong; its status comes with it.

``Fatal`` is not answered: a worker that must stop acting in any role (deposed, cut off, its
database gone) raises it, and only the worker's ``main()`` turns it into an exit.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus


class RideShareError(Exception):
    """An error answered with ``status`` and ``message``; 500 means a bug in this code."""

    status: int = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, status: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})


class BadRequest(RideShareError, ValueError):
    """The request is not what the endpoint takes (a body it cannot read, a rule it breaks):
    nothing is stored."""

    status = HTTPStatus.BAD_REQUEST


class NotFound(RideShareError):
    status = HTTPStatus.NOT_FOUND


class Conflict(RideShareError):
    """The request clashes with what is stored (a duplicate key, a missing referenced row):
    nothing is applied."""

    status = HTTPStatus.CONFLICT


class TooLarge(RideShareError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unavailable(RideShareError):
    """A part this request needs is not answering; retrying later is safe."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class Fatal(Exception):
    """This worker must stop acting in any role now (deposed, cut off, its database gone): only
    ``main()`` turns it into an exit, and the orchestrator replaces the worker."""
