"""A ZooKeeper server of our own, from Debian's ``zookeeper`` package: its own config, data and
ports; alone, or one of an ensemble (every member lists every member)."""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from rideshare.infra.process import pid_runs, spawn, stop_pid, wait_for_port

JAR = "/usr/share/java/zookeeper.jar"
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
TICK_MS = 500  # sessions from 1 s (2 ticks) to 10 s (20 ticks) may be asked for


@dataclass
class ZkServer:
    myid: int
    client_port: int
    base: Path
    peers: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (quorum, election)
    pid: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def prepare(self) -> Path:
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [f"tickTime={TICK_MS}", "initLimit=20", "syncLimit=10",
                 f"dataDir={data}", f"clientPort={self.client_port}",
                 "clientPortAddress=127.0.0.1", "admin.enableServer=false",
                 "4lw.commands.whitelist=srvr,ruok,mntr", "maxSessionTimeout=20000",
                 "autopurge.snapRetainCount=3", "autopurge.purgeInterval=1"]
        for sid, (quorum, election) in sorted(self.peers.items()):
            lines.append(f"server.{sid}=127.0.0.1:{quorum}:{election}")
        if self.peers:
            (data / "myid").write_text(f"{self.myid}\n")
        config = self.base / "zoo.cfg"
        config.write_text("\n".join(lines) + "\n")
        (self.base / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, FILE\n"
            "log4j.appender.FILE=org.apache.log4j.FileAppender\n"
            f"log4j.appender.FILE.File={self.base / 'zookeeper.log'}\n"
            "log4j.appender.FILE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.FILE.layout.ConversionPattern=%d %p [%t] %c{1}: %m%n\n")
        return config

    def start(self, timeout_s: float = 60.0) -> None:
        config = self.prepare()
        command = ["java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", f"{self.base}:{JAR}",
                   f"-Dzookeeper.log.dir={self.base}",
                   f"-Dlog4j.configuration=file:{self.base / 'log4j.properties'}",
                   "-Dzookeeper.4lw.commands.whitelist=srvr,ruok,mntr", MAIN, str(config)]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        proc = spawn(command, env, self.base / "server.log")
        self.pid = proc.pid
        (self.base / "zookeeper.pid").write_text(str(proc.pid))
        if not self.peers:  # alone: it answers as soon as it listens
            wait_for_port(self.client_port, timeout_s, f"ZooKeeper {self.address}", proc)

    def running(self) -> bool:
        return pid_runs(self.pid)

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_pid(self.pid, timeout_s)

    def kill(self) -> None:
        stop_pid(self.pid, 0.0, signal.SIGKILL)

    def mode(self) -> str | None:
        """"leader", "follower" or "standalone" (the ``srvr`` command), None if it does not
        answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=2) as conn:
                conn.sendall(b"srvr")
                answer = b""
                while chunk := conn.recv(4096):
                    answer += chunk
        except OSError:
            return None
        for line in answer.decode(errors="replace").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None
