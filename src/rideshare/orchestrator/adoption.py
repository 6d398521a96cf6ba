"""Starting from disk: which copy left by earlier workers the first master takes over, and which
copies may go. A pure decision; the cluster does the I/O around it."""

from __future__ import annotations

from dataclasses import dataclass

from rideshare.orchestrator.runtime.base import CopyState


@dataclass(frozen=True)
class Adoption:
    adopt: str | None  # the copy the new master takes over; None: start empty
    behind: tuple[str, ...] = ()  # proven to hold nothing the adopted one lacks: may go
    unreadable: tuple[str, ...] = ()  # never removed on a guess
    refused: bool = False  # no copy holds what was acknowledged: start no master (wait)


NOTHING = CopyState(0, 0)


def choose_copy(copies: dict[str, CopyState | None], floor: CopyState = NOTHING) -> Adoption:
    """The copy with the highest (epoch, log position): a copy of a later epoch holds everything
    acknowledged before that epoch began, whatever its position, and within an epoch the further
    copy holds more. Ties go to the lowest id, so the choice is the same every time.

    A copy is proven behind when it was read and is not ahead of the adopted one; a copy that
    could not be read proves nothing, and is kept.

    ``floor`` is the (epoch, log position) of the newest write known to have been acknowledged:
    starting from a copy behind it would lose that write, so no master is started then (a copy
    that holds it may be unreadable for now, a disk full, say): ``refused``.
    """
    readable = {c: s for c, s in copies.items() if s is not None}
    unreadable = tuple(sorted(c for c, s in copies.items() if s is None))
    if not readable:
        return Adoption(None, (), unreadable, refused=(floor.epoch, floor.position) > (0, 0))
    best = min(readable, key=lambda c: (-readable[c].epoch, -readable[c].position, c))
    top = (readable[best].epoch, readable[best].position)
    if top < (floor.epoch, floor.position):
        return Adoption(None, (), unreadable, refused=True)
    behind = tuple(sorted(c for c, s in readable.items()
                          if c != best and (s.epoch, s.position) <= top))
    return Adoption(best, behind, unreadable)
