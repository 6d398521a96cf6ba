"""A RabbitMQ node of our own, from Debian's ``rabbitmq-server``: its own node name, ports, data,
logs and Erlang cookie, run as the ``rabbitmq`` user when we are root. Several of them form a
cluster (``join``)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rideshare.folders import ServiceUser
from rideshare.infra.process import pid_runs, read_pid, spawn, stop_pid, wait_for_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def service_user() -> ServiceUser:
    if os.geteuid() != 0:
        return ServiceUser.current()
    return ServiceUser.named("rabbitmq")


@dataclass
class RabbitNode:
    name: str  # the node is <name>@localhost
    port: int  # AMQP
    dist_port: int  # Erlang distribution (clustering, rabbitmqctl)
    base: Path  # its folder
    cookie: str  # the Erlang cookie its cluster shares
    user: ServiceUser = field(default_factory=service_user)

    @property
    def nodename(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "rabbitmq.pid"

    @property
    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def running(self) -> bool:
        return pid_runs(self.pid)

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": str(self.base / "home"),
            "RABBITMQ_NODENAME": self.nodename, "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
        }

    def prepare(self) -> None:
        """Its folders, config and cookie, owned by the user that runs it."""
        for sub in ("", "home", "mnesia", "log"):
            folder = self.base / sub
            folder.mkdir(parents=True, exist_ok=True)
            self.user.own(folder, 0o750 if sub else 0o755)
        files = {
            "rabbitmq.conf": (f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
                              "loopback_users.guest = true\n"
                              "log.console = false\nlog.file.level = warning\n"
                              "vm_memory_high_watermark.relative = 0.2\n"
                              "disk_free_limit.absolute = 50MB\n"),
            "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",
        }
        for name, text in files.items():
            path = self.base / name
            path.write_text(text)
            self.user.own(path, 0o644)
        cookie = self.base / "home" / ".erlang.cookie"
        if not cookie.exists() or cookie.read_text() != self.cookie:
            cookie.unlink(missing_ok=True)
            cookie.write_text(self.cookie)
            self.user.own(cookie, 0o400)

    def start(self, timeout_s: float = 90.0) -> None:
        self.prepare()
        self.pid_file.unlink(missing_ok=True)
        proc = spawn(self.user.command([SERVER]), self._env(), self.base / "server.log",
                     cwd=self.base)
        wait_for_port(self.port, timeout_s, f"RabbitMQ node {self.nodename}", proc)

    def ctl(self, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl`` against this node (as its user, with its cookie)."""
        return subprocess.run(self.user.command([CTL, "-n", self.nodename, *args]),
                              env=self._env(), capture_output=True, text=True,
                              timeout=timeout_s, cwd=self.base)

    def join(self, seed: RabbitNode) -> None:
        """Make this (running, empty) node a member of ``seed``'s cluster."""
        for args in (("stop_app",), ("reset",), ("join_cluster", seed.nodename),
                     ("start_app",)):
            done = self.ctl(*args)
            if done.returncode != 0:
                raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.nodename}: "
                                   f"{done.stdout}{done.stderr}")
        wait_for_port(self.port, 60, f"RabbitMQ node {self.nodename}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """A graceful stop (SIGTERM: the node shuts down cleanly)."""
        stop_pid(self.pid, timeout_s)

    def kill(self) -> None:
        """kill -9: no goodbye to clients or to the rest of the cluster."""
        stop_pid(self.pid, 0.0, signal.SIGKILL)

    def wait_gone(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
