"""Fixtures for the container tests: a Docker engine (started here if none runs, and stopped
again at the end of the session), a base image made by debootstrap, the wheels, our image and the
stand-ins for the official images (docker/standins/), all cached between runs by tag.

Skipped, with the reason, only where no engine can be had: not root and none running, or the
engine's packages cannot be installed, or dockerd does not start. ``RIDESHARE_SKIP_CONTAINER_TESTS=1``
skips them on purpose (for a quick local run).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rideshare.localhost import pid_alive
from tests.support import ROOT

SETUP = ROOT / "scripts" / "docker-setup.sh"
STANDINS = ("rabbitmq", "zookeeper", "nginx")
APP_IMAGE = os.environ.get("RIDESHARE_TEST_IMAGE", "rideshare:test")
LOG_DIR = ROOT / "build" / "container-tests"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "containers: needs a Docker engine (started by the fixtures when possible)")


def docker_cli() -> str:
    """Debian's client, which matches Debian's engine, else whichever is on PATH."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (
        shutil.which("docker") or "docker")


def compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return [docker_cli(), "compose"]


def run_logged(command: list[str], log: Path, timeout_s: float, what: str,
               env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
    """Run ``command`` with its output in ``log``; fail with the log's tail if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                  env=env, timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what}: not done after {timeout_s:.0f} s; see {log}\n{tail(log)}")
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}); see {log}\n{tail(log)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _pid_runs(pid: int) -> bool:
    return pid_alive(pid)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A client of a running Docker engine."""
    if os.environ.get("RIDESHARE_SKIP_CONTAINER_TESTS") == "1":
        pytest.skip("RIDESHARE_SKIP_CONTAINER_TESTS=1: container tests skipped on purpose")
    docker = pytest.importorskip(
        "docker", reason="the Docker SDK for Python is not installed (pip install -e '.[test]')")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RIDESHARE_DOCKERD_LOG": str(LOG_DIR / "dockerd.log")}
    started: int | None = None
    for step, timeout_s in (("install", 900), ("engine", 90)):
        try:
            done = subprocess.run([str(SETUP), step], capture_output=True, text=True, env=env,
                                  timeout=timeout_s, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.skip(f"no Docker engine can start here: `{SETUP.name} {step}` took over "
                        f"{timeout_s} s")
        if done.returncode != 0:
            pytest.skip(f"no Docker engine can start here: `{SETUP.name} {step}` failed:\n"
                        f"{(done.stdout + done.stderr)[-1500:]}")
        for line in done.stdout.splitlines():
            if line.startswith("started dockerd "):
                started = int(line.split()[-1])
    client = docker.from_env(timeout=300)
    try:
        client.ping()
        remove_stale_test_stacks(client)
        yield client
    finally:
        client.close()
        if started is not None:
            os.kill(started, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while _pid_runs(started) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_runs(started):
                os.kill(started, signal.SIGKILL)


#: The names these tests give their stacks (test_compose: rstest..., the runtime test: rt...).
STALE = re.compile(r"^(rstest|rt)[0-9a-f]{8}([_-]|$)")


def remove_stale_test_stacks(client: Any) -> None:
    """What an interrupted earlier run left (its containers restart with the engine): gone."""
    for container in client.containers.list(all=True):
        labels = container.labels
        owner = labels.get("com.docker.compose.project") or labels.get("io.rideshare.stack")
        if owner and STALE.match(owner):
            container.remove(force=True, v=True)
    for network in client.networks.list():
        if STALE.match(network.name):
            network.remove()
    for volume in client.volumes.list():
        if STALE.match(volume.name):
            volume.remove(force=True)


@pytest.fixture(scope="session")
def base_image(docker_engine: Any) -> str:
    """A Debian bookworm base from debootstrap (no registry needed), made once and kept."""
    name = os.environ.get("RIDESHARE_TEST_BASE_IMAGE", "rideshare-debootstrap:bookworm")
    env = {**os.environ, "RIDESHARE_BASE_IMAGE": name}
    run_logged([str(SETUP), "base"], LOG_DIR / "base.log", 1200, "making the base image", env)
    return name


@pytest.fixture(scope="session")
def app_image(docker_engine: Any, base_image: str) -> str:
    """Our image, built from the Dockerfile on the debootstrapped base with the host's wheels
    (in docker/wheels/: the build reaches no index)."""
    run_logged([str(SETUP), "wheels"], LOG_DIR / "wheels.log", 900, "collecting the wheels")
    before = _image_id(docker_engine, APP_IMAGE)
    # Built the way `docker-compose build` builds it, so that the compose test finds every
    # layer in the cache (the CLI's build context differs, and would miss it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIDESHARE_")}
    env.update(RIDESHARE_IMAGE=APP_IMAGE, RIDESHARE_BASE_IMAGE=base_image)
    run_logged([*compose_cli(), "-p", "rideshare-build", "-f", str(ROOT / "docker-compose.yml"),
                "build", "--force-rm", "orchestrator"], LOG_DIR / "image.log", 1200,
               f"building {APP_IMAGE}", env)
    if before is not None and before != _image_id(docker_engine, APP_IMAGE):
        try:  # the previous build, now untagged: not kept (its layers stay as build cache)
            docker_engine.images.remove(before, noprune=True)
        except Exception:  # noqa: BLE001 - still used or tagged elsewhere
            pass
    return APP_IMAGE


def _image_id(client: Any, name: str) -> str | None:
    try:
        return client.images.get(name).id
    except Exception:  # noqa: BLE001 - no such image
        return None


def _folder_hash(folder: Path, extra: str) -> str:
    digest = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def standin_images(docker_engine: Any, base_image: str) -> dict[str, str]:
    """The stand-ins, tagged with a hash of their folder and base: built once, reused."""
    base_id = docker_engine.images.get(base_image).id
    images = {}
    for name in STANDINS:
        folder = ROOT / "docker" / "standins" / name
        repo = f"rideshare-standin-{name}"
        tag = f"{repo}:{_folder_hash(folder, base_id)}"
        try:
            docker_engine.images.get(tag)
        except Exception:  # noqa: BLE001 - not built yet
            run_logged([docker_cli(), "build", "--force-rm", "--build-arg",
                        f"BASE_IMAGE={base_image}", "-t", tag, str(folder)],
                       LOG_DIR / f"standin-{name}.log", 900, f"building the {name} stand-in")
            for old in docker_engine.images.list(name=repo):  # earlier versions of it
                for old_tag in old.tags:
                    if old_tag != tag:
                        docker_engine.images.remove(old_tag, noprune=False)
        images[name] = tag
    return images
