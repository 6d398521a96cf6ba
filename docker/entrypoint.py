#!/opt/venv/bin/python
"""The image's entrypoint: the first argument names the part to run.

    users | rides | orchestrator     the HTTP service (uvicorn, as ``rideshare up`` runs it), bound
                                     to RIDESHARE_HOST (0.0.0.0 in the image) on its settings port
    worker ARGS...                   ``python -m rideshare.worker ARGS`` (``--id ID [--adopt]`` or
                                     ``--drop-database ID``); the docker runtime starts these
    gateway-config DIR USERS RIDES   write the gateway's nginx config into DIR (a volume nginx
                                     mounts); USERS and RIDES are comma-separated host:port lists
    anything else                    run as a command (``python``, ``bash``, ...)

Every part replaces this process (``exec``), so it runs as the container's PID 1 and its host PID
is the container's ``State.Pid``. Started as root (the orchestrator is, to reach the Docker
socket, whose group differs from host to host), it first joins the socket's group and drops to the
unprivileged ``rideshare`` user.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
from pathlib import Path

USER = "rideshare"


def drop_privileges() -> None:
    if os.getuid() != 0 or os.environ.get("RIDESHARE_RUN_AS_ROOT") == "1":
        return
    user = pwd.getpwnam(USER)
    groups = {user.pw_gid}
    socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if socket.startswith("unix://"):
        try:
            groups.add(os.stat(socket.removeprefix("unix://")).st_gid)
        except OSError:
            pass
    os.setgroups(sorted(groups))
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = USER


def uvicorn(factory: str, port: int, processes: int) -> list[str]:
    from rideshare.config import get_settings

    s = get_settings()
    return [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", s.host,
            "--port", str(port), "--no-access-log", "--workers", str(processes),
            "--timeout-graceful-shutdown", "20"]


def gateway_config(out: str, users: str, rides: str) -> int:
    from rideshare.config import get_settings
    from rideshare.gateway.render import render_config

    run_dir = Path(out)
    conf = render_config(get_settings(), run_dir, users.split(","), rides.split(","))
    # In a container nginx logs to stderr (docker logs), not to a file in the volume.
    text = re.sub(r"(?m)^error_log .*;$", "error_log stderr warn;", conf.read_text())
    conf.write_text(text)
    for temp in [run_dir / "nginx-tmp", *(run_dir / "nginx-tmp").rglob("*")]:
        if temp.stat().st_uid == os.getuid():  # nginx made the rest, on an earlier start
            temp.chmod(0o777)  # nginx's workers run as another user than ours
    print(f"gateway config written to {conf}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    part, args = (argv[0], argv[1:]) if argv else ("--help", [])
    drop_privileges()
    if part in ("users", "rides", "orchestrator"):
        from rideshare.config import get_settings

        s = get_settings()
        factory, port, processes = {
            "users": ("rideshare.users.app:create_app", s.users_port, s.service_processes),
            "rides": ("rideshare.rides.app:create_app", s.rides_port, s.service_processes),
            "orchestrator": ("rideshare.orchestrator.api:create_app", s.orchestrator_port, 1),
        }[part]
        command = uvicorn(factory, port, processes) + args
    elif part == "worker":
        command = [sys.executable, "-m", "rideshare.worker", *args]
    elif part == "gateway-config":
        if len(args) != 3:
            print("usage: gateway-config DIR USERS_UPSTREAMS RIDES_UPSTREAMS", file=sys.stderr)
            return 2
        return gateway_config(*args)
    elif part in ("--help", "-h", "help"):
        print(__doc__)
        return 0
    else:
        command = [part, *args]
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
