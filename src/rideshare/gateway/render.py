"""Writes the gateway's nginx config from ``nginx.conf.tmpl`` and says how to run nginx with it.

The template uses ``@@{name}`` placeholders (``string.Template`` with another delimiter), because
``$`` and braces are nginx's own syntax. The config is standalone: its pid file, logs and temp
paths are all in ``run_dir``, nginx's prefix is ``run_dir`` and ``-e`` redirects the error log
nginx opens before it has read the config, so it never touches ``/etc/nginx`` or ``/var/log``.
"""

from __future__ import annotations

import os
import re
import shutil
import string
from importlib.resources import files
from pathlib import Path

from rideshare.config import Settings

CONF_NAME = "nginx.conf"
_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_UPSTREAM = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")


class _Template(string.Template):
    delimiter = "@@"


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _servers(upstreams: list[str]) -> str:
    if not upstreams:
        raise ValueError("An upstream needs at least one server (host:port).")
    for u in upstreams:
        if _UPSTREAM.fullmatch(u) is None:
            raise ValueError(f"Upstream {u!r} is not host:port.")
    return "\n".join(f"        server {u};" for u in upstreams)


def render_text(
    settings: Settings, run_dir: Path, users_upstreams: list[str], rides_upstreams: list[str],
    access_log: bool = False,
) -> str:
    """The config text; pure, so tests can look at it without touching the disk."""
    run_dir = run_dir.resolve()
    template = _Template(
        (files("rideshare") / "gateway" / "nginx.conf.tmpl").read_text(encoding="utf-8")
    )
    return template.substitute(
        worker_processes=str(min(os.cpu_count() or 1, 4)),
        run_dir=str(run_dir),
        access_log=f"{run_dir}/nginx-access.log" if access_log else "off",
        listen=_address(settings.host, settings.gateway_port),
        users_servers=_servers(users_upstreams),
        rides_servers=_servers(rides_upstreams),
    )


def render_config(
    settings: Settings, run_dir: Path, users_upstreams: list[str], rides_upstreams: list[str]
) -> Path:
    """Write ``run_dir/nginx.conf`` (and the temp folders it names); returns its path."""
    run_dir = run_dir.resolve()
    for name in _TEMP_DIRS:
        (run_dir / "nginx-tmp" / name).mkdir(parents=True, exist_ok=True)
    conf = run_dir / CONF_NAME
    text = render_text(settings, run_dir, users_upstreams, rides_upstreams)
    tmp = conf.with_suffix(".conf.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(conf)  # atomic: a reload never reads half a file
    return conf


def nginx_binary() -> str:
    """nginx from PATH, or Debian's /usr/sbin/nginx (root's PATH may lack /usr/sbin)."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_command(conf: Path, test: bool = False) -> list[str]:
    """The command that runs nginx in the foreground with ``conf`` (``test``: only check it)."""
    run_dir = conf.resolve().parent
    command = [nginx_binary(), "-c", str(conf.resolve()), "-p", f"{run_dir}/",
               "-e", str(run_dir / "nginx-error.log")]
    return command + ["-t", "-q"] if test else command
