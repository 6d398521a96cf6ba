"""Folders that servers running as other users can reach.

PostgreSQL refuses to run as root, and Debian's RabbitMQ runs as its own user, so when RideShare
runs as root its servers run as unprivileged users, and their data must lie where those users can
walk to. A clone inside a private folder (``mktemp -d`` makes them 0700, as CI does) is not such a
place; then the data goes to ``/var/lib/rideshare/<folder>-<hash of the run folder>``, which stays
the same for that clone.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

SHARED_ROOT = Path("/var/lib/rideshare")


@dataclass(frozen=True)
class ServiceUser:
    """Who runs a server: ourselves, or (when we are root) an unprivileged user."""

    uid: int
    gid: int
    name: str
    home: str

    @property
    def is_us(self) -> bool:
        return self.uid == os.geteuid()

    @classmethod
    def current(cls) -> ServiceUser:
        me = pwd.getpwuid(os.geteuid())
        return cls(me.pw_uid, me.pw_gid, me.pw_name, me.pw_dir)

    @classmethod
    def named(cls, name: str) -> ServiceUser:
        entry = pwd.getpwnam(name)  # KeyError if there is no such user
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)

    def command(self, command: list[str], die_with_parent: bool = False) -> list[str]:
        """``command`` run as this user (through setpriv when that is not us); with
        ``die_with_parent``, SIGKILLed when its parent dies, whoever runs it."""
        prefix = ["setpriv"]
        if not self.is_us:
            prefix += [f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        if die_with_parent:
            prefix += ["--pdeathsig", "KILL"]
        return [*prefix, "--", *command] if len(prefix) > 1 else command

    def own(self, path: Path, mode: int) -> None:
        if not self.is_us:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)


def reachable(path: Path, user: ServiceUser) -> bool:
    """True if ``user`` can walk down to ``path`` (every existing ancestor searchable)."""
    groups = {user.gid} | {g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem}
    for ancestor in [*reversed(path.parents), path]:
        try:
            st = ancestor.stat()
        except FileNotFoundError:
            return True  # what does not exist yet, we make, for that user
        if user.uid == 0 or st.st_uid == user.uid:
            ok = user.uid == 0 or st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return False
    return True


def reachable_folder(run_dir: Path, name: str, users: list[ServiceUser]) -> Path:
    """``<run_dir>/<name>`` when every one of ``users`` can reach it; else the same name under
    ``/var/lib/rideshare/<folder>-<hash of run_dir>``."""
    preferred = (run_dir / name).resolve()
    if all(reachable(preferred, u) for u in users):
        return preferred
    resolved = run_dir.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    return SHARED_ROOT / f"{resolved.parent.name[:24]}-{digest}" / name


def remove_folder(path: Path) -> None:
    """Remove ``path``; when it lay under ``/var/lib/rideshare/<folder>-<hash>`` and that is
    now empty, remove that too, so that test runs leave nothing behind."""
    shutil.rmtree(path, ignore_errors=True)
    parent = path.parent
    if parent.parent == SHARED_ROOT:
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
