"""Small facts about this machine that several parts need: free loopback ports, and the JSON
state files (``stack.json``, ``infra/state.json``) that running parts leave for others."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is no such file, or it is half-written."""
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as dead."""
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.Error:
        return False


def environment_of(proc: psutil.Process) -> dict[str, str]:
    """``proc``'s environment, or nothing when it is gone or not ours to read."""
    try:
        environ: dict[str, str] = proc.environ()
        return environ
    except psutil.Error:
        return {}
