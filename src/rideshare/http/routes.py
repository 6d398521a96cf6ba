"""The routes of an app, the ones of included routers too: recent FastAPI keeps an included
router whole, as one entry that holds it, where older ones copied its routes in."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import FastAPI
from starlette.routing import BaseRoute


def every_route(app: FastAPI) -> Iterator[BaseRoute]:
    return _flatten(app.router.routes)


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _flatten(included.routes)
        else:
            yield route
