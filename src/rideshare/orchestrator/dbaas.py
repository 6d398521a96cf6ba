"""The DBaaS's calls as the orchestrator serves them: a body in, a status and an answer out.

``Orchestrator`` is the typed state of a running orchestrator (its settings, the RPC layer and
the cluster); the HTTP endpoints (``api.py``) and the ASGI fast path (``hotpaths.py``) both call
it, so there is one place that turns RPC outcomes into statuses and sentences.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from rideshare.config import Settings
from rideshare.errors import BadRequest
from rideshare.orchestrator.cluster import Cluster
from rideshare.orchestrator.rpc import Rpc, RpcTimeout, RpcUnavailable, StaleEpoch
from rideshare.protocol import WriteRequest, parse_read, parse_write

Answer = tuple[int, Any]


def decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc}).") from exc


@dataclass
class Orchestrator:
    settings: Settings
    rpc: Rpc
    cluster: Cluster

    async def write(self, request: WriteRequest) -> Answer:
        try:
            answer = await self.rpc.write(request)
        except RpcTimeout:
            return 503, {"error": f"No master committed the write within "
                                  f"{self.settings.write_timeout_s} s. It may still be applied:"
                                  " retry with the same 'id' (send one with every write you may"
                                  " retry)."}
        except StaleEpoch:
            return 503, {"error": "The master that answered has been deposed; retry with the"
                                  " same 'id'."}
        except RpcUnavailable as exc:
            return 503, {"error": f"The message broker is unreachable ({exc}); retry with the"
                                  " same 'id'."}
        if not answer.get("ok"):
            return answer.get("status", 503), {"error": answer.get("error", "The write failed.")}
        return 200, {"position": answer["position"], "results": answer["results"],
                     "epoch": answer.get("epoch", 0), "master": answer.get("master")}

    async def serve_write(self, raw: bytes) -> Answer:
        try:
            return await self.write(parse_write(decode(raw)))
        except BadRequest as exc:
            return 400, {"error": str(exc)}

    async def serve_read(self, raw: bytes) -> Answer:
        self.cluster.window.record_read(time.time())
        try:
            read = parse_read(decode(raw))
        except BadRequest as exc:
            return 400, {"error": str(exc)}
        try:
            answer = await self.rpc.read(read)
        except RpcTimeout:
            return 503, {"error": f"No slave answered within {self.settings.read_timeout_s} s;"
                                  " retry."}
        except RpcUnavailable as exc:
            return 503, {"error": f"The message broker is unreachable ({exc}); retry."}
        if not answer.get("ok"):
            return answer.get("status", 503), {"error": answer.get("error", "The read failed.")}
        results = answer["results"]
        return 200, results[0] if read.single else {"results": results}
