"""Where results go and what is recorded about the machine, so a figure can be compared later."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[3]


def results_dir() -> Path:
    """``bench/results`` of the working directory if there is one, else of this checkout."""
    for base in (Path.cwd(), REPO_ROOT):
        if (base / "bench").is_dir():
            return base / "bench" / "results"
    return Path.cwd() / "bench" / "results"


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def source_revision() -> dict[str, Any] | None:
    """The commit the stack ran from, and whether the tree had changes outside the benchmarks'
    own files: figures move with the code, so a result names the code it measured."""
    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], text=True,
                              capture_output=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no", "--", ".", ":!bench",
                                ":!src/rideshare/bench"], text=True, capture_output=True,
                               timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "uncommitted_changes": bool(dirty)}


def machine() -> dict[str, Any]:
    """The host the benchmark ran on (client and stack share it: everything is loopback)."""
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "source": source_revision(),
    }


def write_result(name: str, document: dict[str, Any], directory: Path | None = None) -> Path:
    """Write ``document`` to ``<directory>/<name>-<timestamp>.json`` and return the path."""
    directory = directory or results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{timestamp()}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path
