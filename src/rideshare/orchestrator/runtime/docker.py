"""Workers as Docker containers, started and killed through the Docker Engine API (the Docker SDK
for Python), as the original RideShare did. Each is one container from our image on the stack's
network, its worker process the container's PID 1 (so the container's host PID is what
``worker/list`` and the crash APIs report), its PostgreSQL server inside it, and its copy on a
volume of its own (``<stack>-copy-<id>`` at ``/var/lib/rideshare/pgdata``) that outlives it until
the copy is dropped. Ended containers are removed when reaped (their last log lines kept in
``<run_dir>/logs/worker-<id>.log``). Settings and the orchestrator's own container (whose image,
network and project fill empty settings): ``placement.py``. The engine's events, in a thread of
their own, keep the view of running containers current, so ``alive()`` never waits; every call
that reaches the engine runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading
import time
from typing import Any

import orjson

from rideshare.config import Settings
from rideshare.orchestrator.runtime.base import CopyState, WorkerHandle
from rideshare.orchestrator.runtime.placement import own_container_id, worker_environment
from rideshare.worker.pgserver import COPY_NAME

log = logging.getLogger(__name__)

LABEL_STACK = "io.rideshare.stack"
LABEL_WORKER = "io.rideshare.worker"
LABEL_ROLE = "io.rideshare.role"  # "worker" or "probe"
LABEL_COPY = "io.rideshare.copy"  # on a copy's volume, and on the worker container using it
DATA_MOUNT = "/var/lib/rideshare/pgdata"  # in the image: owned by the rideshare user, 0700
class DockerRuntime:
    def __init__(self, settings: Settings, client: Any = None) -> None:
        import docker

        self._settings = settings
        url = settings.docker_url

        def connect() -> Any:
            return (docker.DockerClient(base_url=url, timeout=60) if url
                    else docker.from_env(timeout=60))

        try:
            self._client = client or connect()
            self._client.ping()
            # The events stream holds a connection of its own, in a thread of its own.
            self._events_client = connect() if client is None else client
        except docker.errors.DockerException as exc:
            raise RuntimeError(
                f"RIDESHARE_RUNTIME=docker, but the Docker engine does not answer ({exc}). Give"
                " the orchestrator the engine's socket (-v /var/run/docker.sock:"
                "/var/run/docker.sock) or set DOCKER_HOST / RIDESHARE_DOCKER_URL.") from exc
        self.image, self.network, self.stack = self._placement()
        self._env = worker_environment(settings)
        self._log_dir = settings.run_dir / "logs"
        self._lock = threading.Lock()
        self._handles: dict[str, WorkerHandle] = {}
        self._containers: dict[str, str] = {}  # worker id -> container id
        self._copy_of: dict[str, str] = {}  # worker id -> the copy (volume) it runs on
        self._ended: set[str] = set()
        self._starting: set[str] = set()
        self._garbage: set[str] = set()  # container ids whose removal failed; tried again
        self._orphans: dict[str, str] = {}  # found at start, not adopted by the first reap
        self._stream: Any = None
        self._closed = threading.Event()
        self._synced = threading.Event()
        for container in self._list():
            wid = container["Labels"].get(LABEL_WORKER)
            if container["Labels"].get(LABEL_ROLE) != "worker":
                self._garbage.add(container["Id"])
            elif wid:
                self._orphans[wid] = container["Id"]
        self._watcher = threading.Thread(target=self._watch, name="docker-events", daemon=True)
        self._watcher.start()
        self._synced.wait(10)
        log.info("docker runtime: image %s, network %s, stack %s", self.image, self.network,
                 self.stack)

    # --- where workers go ----------------------------------------------------------------------

    def _placement(self) -> tuple[str, str, str]:
        image = self._settings.worker_image
        network = self._settings.docker_network
        stack = self._settings.docker_stack
        if image and network and stack:
            return image, network, stack
        own: dict[str, Any] = {}
        cid = own_container_id()
        for candidate in filter(None, (cid, socket.gethostname())):
            try:
                own = self._client.api.inspect_container(candidate)
                break
            except Exception:  # noqa: BLE001 - not a container of this engine
                continue
        if not image:
            image = own.get("Image", "")
        if not network:
            networks = list(own.get("NetworkSettings", {}).get("Networks", {}))
            network = networks[0] if networks else ""
        if not stack:
            labels = (own.get("Config") or {}).get("Labels") or {}
            stack = labels.get("com.docker.compose.project") or "rideshare"
        if not image or not network:
            raise RuntimeError(
                "RIDESHARE_RUNTIME=docker needs the worker image and network: set "
                "RIDESHARE_WORKER_IMAGE and RIDESHARE_DOCKER_NETWORK, or run the orchestrator in"
                " a container of this engine (they are then taken from it).")
        return image, network, re.sub(r"[^a-zA-Z0-9_.-]", "-", stack)

    def _network_options(self) -> dict[str, Any]:
        if self.network in ("host", "none"):
            return {"network_mode": self.network}
        return {"network": self.network}

    def _labels(self, role: str, worker_id: str, copy_id: str) -> dict[str, str]:
        return {LABEL_STACK: self.stack, LABEL_ROLE: role, LABEL_WORKER: worker_id,
                LABEL_COPY: copy_id}

    def volume_name(self, copy_id: str) -> str:
        return f"{self.stack}-copy-{copy_id}"

    def container_name(self, worker_id: str) -> str:
        return f"{self.stack}-worker-{worker_id}"

    def _list(self, client: Any = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (client or self._client).api.containers(
            all=True, filters={"label": f"{LABEL_STACK}={self.stack}"})
        return found

    # --- the interface -------------------------------------------------------------------------

    async def start(self, worker_id: str, adopt_copy: str | None = None) -> WorkerHandle:
        copy_id = adopt_copy or worker_id
        with self._lock:
            self._starting.add(worker_id)
            self._copy_of[worker_id] = copy_id
        try:
            cid, pid = await asyncio.to_thread(self._run_worker, worker_id, copy_id)
            handle = WorkerHandle(worker_id, pid, time.time())
            with self._lock:
                self._handles[worker_id] = handle
                self._containers[worker_id] = cid
                if not pid:
                    self._ended.add(worker_id)
        finally:
            with self._lock:
                self._starting.discard(worker_id)
        log.info("started worker %s in container %s, pid %s, on the copy %s", worker_id,
                 cid[:12], pid, copy_id)
        return handle

    def _volume(self, copy_id: str) -> str:
        """The copy's volume, made (with its labels) if it does not exist yet."""
        name = self.volume_name(copy_id)
        try:
            self._client.volumes.get(name)
        except Exception:  # noqa: BLE001 - not there yet
            self._client.volumes.create(name, labels={LABEL_STACK: self.stack,
                                                      LABEL_COPY: copy_id})
        return name

    def _run_worker(self, worker_id: str, copy_id: str) -> tuple[str, int]:
        command = ["worker", "--id", worker_id, "--data-dir", DATA_MOUNT]
        container = self._client.containers.run(
            self.image, command, name=self.container_name(worker_id), detach=True,
            environment=self._env, labels=self._labels("worker", worker_id, copy_id),
            volumes={self._volume(copy_id): {"bind": DATA_MOUNT, "mode": "rw"}},
            stop_signal="SIGTERM", **self._network_options())
        try:
            state = self._client.api.inspect_container(container.id)["State"]
        except Exception:
            with contextlib.suppress(Exception):
                self._client.api.remove_container(container.id, force=True)
            raise
        return container.id, int(state.get("Pid") or 0) if state.get("Running") else 0

    async def adopt(self, worker_id: str, pid: int, started_at: float) -> WorkerHandle | None:
        return await asyncio.to_thread(self._adopt, worker_id, started_at)

    def _adopt(self, worker_id: str, started_at: float) -> WorkerHandle | None:
        """Take charge of a worker an earlier orchestrator started: its container is found by
        the worker id; the PID that counts is the container's host PID, not ``pid``."""
        try:
            info = self._client.api.inspect_container(self.container_name(worker_id))
        except Exception:  # noqa: BLE001 - no such container: nothing to take charge of
            return None
        state = info["State"]
        if not state.get("Running"):
            return None
        handle = WorkerHandle(worker_id, int(state["Pid"]), started_at)
        labels = (info.get("Config") or {}).get("Labels") or {}
        with self._lock:
            self._handles[worker_id] = handle
            self._containers[worker_id] = info["Id"]
            self._copy_of[worker_id] = labels.get(LABEL_COPY, worker_id)
            self._orphans.pop(worker_id, None)
            self._ended.discard(worker_id)
        return handle

    async def kill(self, worker_id: str) -> None:
        await asyncio.to_thread(self._kill, worker_id)

    def _kill(self, worker_id: str) -> None:
        """SIGKILL the worker's process (the container's PID 1) and wait, bounded, until the
        engine has seen it die."""
        cid = self._containers.get(worker_id)
        if cid is None:
            return
        import docker

        try:
            self._client.api.kill(cid, signal="SIGKILL")
            self._client.api.wait(cid, timeout=5)
        except docker.errors.NotFound:
            pass  # gone already: dead
        except Exception as exc:  # noqa: BLE001 - the engine failed, or it is still dying
            if self._still_running(cid):
                log.error("killing worker %s failed (%s): it still runs", worker_id, exc)
                return  # not dead: it stays alive in our view, and is killed again later
        with self._lock:
            self._ended.add(worker_id)

    def _still_running(self, cid: str) -> bool:
        try:
            return bool(self._client.api.inspect_container(cid)["State"].get("Running"))
        except Exception:  # noqa: BLE001 - gone, or the engine does not answer: ask later
            return True

    async def stop(self, worker_id: str) -> None:
        await asyncio.to_thread(self._stop, worker_id)

    def _stop(self, worker_id: str) -> None:
        """SIGTERM: the worker finishes what it serves and exits; the events notice it."""
        cid = self._containers.get(worker_id)
        if cid is None:
            return
        try:
            self._client.api.kill(cid, signal="SIGTERM")
        except Exception as exc:  # noqa: BLE001 - already dead, or gone
            log.info("stopping worker %s: %s", worker_id, exc)
            with self._lock:
                self._ended.add(worker_id)

    async def reap(self) -> list[str]:
        return await asyncio.to_thread(self._reap)

    def _reap(self) -> list[str]:
        """Workers whose container has ended since the last call (and, on the first call, the
        stack's containers nobody adopted): their containers are removed, their logs kept."""
        with self._lock:
            ended = [wid for wid in self._handles if wid in self._ended]
            containers = {wid: self._containers.pop(wid) for wid in ended}
            for wid in ended:
                self._handles.pop(wid)
                self._ended.discard(wid)
            orphans, self._orphans = self._orphans, {}
            garbage, self._garbage = self._garbage, set()
        for wid, cid in orphans.items():
            log.warning("removing container %s of worker %s, which no one adopted", cid[:12], wid)
            containers[wid] = cid
        for wid, cid in containers.items():
            self._remove(wid, cid)
        for cid in garbage:
            self._remove(None, cid)
        return ended + list(orphans)

    def alive(self) -> dict[str, WorkerHandle]:
        with self._lock:
            return {wid: h for wid, h in self._handles.items() if wid not in self._ended}

    async def copies(self) -> list[str]:
        return await asyncio.to_thread(self._copies)

    def _copies(self) -> list[str]:
        with self._lock:
            in_use = {self._copy_of.get(w) for w in self._handles if w not in self._ended}
        volumes = self._client.volumes.list(filters={"label": f"{LABEL_STACK}={self.stack}"})
        found = {v.attrs.get("Labels", {}).get(LABEL_COPY) for v in volumes}
        return sorted(c for c in found if c and COPY_NAME.match(c) and c not in in_use)

    async def probe(self, copy_id: str) -> CopyState | None:
        return await asyncio.to_thread(self._probe, copy_id)

    def _probe(self, copy_id: str) -> CopyState | None:
        """A one-shot container on the copy's volume starts its server and reads its state."""
        container = self._client.containers.run(
            self.image, ["worker", "--probe-copy", DATA_MOUNT], detach=True,
            environment=self._env, labels=self._labels("probe", "", copy_id),
            volumes={self.volume_name(copy_id): {"bind": DATA_MOUNT, "mode": "rw"}},
            network_mode="none")
        try:
            status = container.wait(timeout=120).get("StatusCode")
            out = container.logs(stdout=True, stderr=False).decode(errors="replace")
            if status:
                err = container.logs(stdout=False, stderr=True).decode(errors="replace")
                log.error("the copy %s could not be read (it is kept): %s", copy_id, err[-500:])
                return None
            state = orjson.loads(out.strip().splitlines()[-1])
            return CopyState(state["epoch"], state["position"])
        except Exception as exc:  # noqa: BLE001 - a timeout, or the engine went away
            log.error("probing the copy %s: %s", copy_id, exc)
            return None
        finally:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001
                with self._lock:
                    self._garbage.add(container.id)

    async def drop_copy(self, copy_id: str) -> None:
        with self._lock:
            copy_id = self._copy_of.pop(copy_id, copy_id)
        await asyncio.to_thread(self._drop_volume, copy_id)

    def _drop_volume(self, copy_id: str) -> None:
        try:
            self._client.volumes.get(self.volume_name(copy_id)).remove(force=True)
        except Exception as exc:  # noqa: BLE001 - gone already, or still in use
            log.warning("removing the volume of copy %s: %s", copy_id, exc)

    # --- helpers -------------------------------------------------------------------------------

    def _remove(self, worker_id: str | None, cid: str) -> None:
        try:
            if worker_id is not None:
                info = self._client.api.inspect_container(cid)
                logs = self._client.api.logs(cid, tail=2000)
                self._log_dir.mkdir(parents=True, exist_ok=True)
                with open(self._log_dir / f"worker-{worker_id}.log", "ab") as out:
                    out.write(logs)
                state = info["State"]
                log.info("worker %s's container %s ended (exit code %s)%s", worker_id, cid[:12],
                         state.get("ExitCode"), "; OOM-killed" if state.get("OOMKilled") else "")
            self._client.api.remove_container(cid, force=True)
        except Exception as exc:  # noqa: BLE001
            import docker

            if isinstance(exc, docker.errors.NotFound):
                return
            log.warning("could not remove container %s yet: %s", cid[:12], exc)
            with self._lock:
                self._garbage.add(cid)

    def _sync(self) -> None:
        """Compare what runs with what we hold: a container that is gone or stopped has ended."""
        running = {c["Id"] for c in self._list(self._events_client) if c["State"] == "running"}
        with self._lock:
            for wid, cid in self._containers.items():
                if cid not in running and wid not in self._starting:
                    self._ended.add(wid)

    def _on_event(self, event: dict[str, Any]) -> None:
        if (event.get("Action") or event.get("status")) not in ("die", "destroy"):
            return
        cid = event.get("id") or (event.get("Actor") or {}).get("ID")
        with self._lock:
            for wid, known in self._containers.items():
                if known == cid:
                    self._ended.add(wid)

    def _watch(self) -> None:
        while not self._closed.is_set():
            try:
                since = int(time.time()) - 1
                self._sync()
                self._synced.set()
                self._stream = self._events_client.events(
                    decode=True, since=since,
                    filters={"type": "container", "label": f"{LABEL_STACK}={self.stack}"})
                if self._closed.is_set():
                    return
                for event in self._stream:
                    self._on_event(event)
            except Exception as exc:  # noqa: BLE001 - the engine restarted, or we are closing
                if self._closed.is_set():
                    return
                log.warning("docker events: %s; reconnecting", exc)
            self._synced.set()
            self._closed.wait(1.0)

    def close(self) -> None:
        """Stop following the engine's events (the workers keep running)."""
        self._closed.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self._watcher.join(5)
        with contextlib.suppress(Exception):
            self._events_client.close()
        with contextlib.suppress(Exception):
            self._client.close()
