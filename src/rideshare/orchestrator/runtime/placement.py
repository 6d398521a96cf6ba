"""Where a worker container stands: the settings it is given, and the orchestrator's own
container (whose image, network and compose project the workers share by default)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from rideshare.config import Settings

#: Settings that describe the orchestrator's own place, not the workers' (the image has its own
#: PostgreSQL binaries and template).
_NOT_PASSED = frozenset({"run_dir", "data_dir", "pg_bin_dir", "pg_user", "pg_template_dir"})


def _env_value(value: Any) -> str:
    if isinstance(value, (list, dict, tuple, set)):
        return json.dumps(list(value) if isinstance(value, (tuple, set)) else value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker the orchestrator's settings (``RIDESHARE_*``) and
    database credentials (libpq's ``PG*``)."""
    env = {f"RIDESHARE_{name.upper()}": _env_value(value)
           for name, value in settings.model_dump().items()
           if name not in _NOT_PASSED and value is not None}
    for key, value in os.environ.items():
        # Settings config.py does not know pass through as they are.
        if key.startswith("RIDESHARE_") and key not in env \
                and key.removeprefix("RIDESHARE_").lower() not in _NOT_PASSED:
            env[key] = value
    return env


def own_container_id() -> str | None:
    """The id of the container this process runs in, or None outside a container."""
    try:
        with open("/proc/self/mountinfo") as f:
            found = re.search(r"/containers/([0-9a-f]{64})/", f.read())
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        with open("/proc/self/cgroup") as f:
            found = re.search(r"[/-]([0-9a-f]{64})(?:\.scope)?$", f.read(), re.M)
        if found:
            return found.group(1)
    except OSError:
        pass
    return None
