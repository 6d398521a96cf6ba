"""The 198 numbered areas of AreaNameEnum.csv, loaded once from the package's own data.

Reading the packaged file (not a path relative to the working directory) keeps the service
correct however it is started: from the repo, from an installed wheel, or in a container.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=1)
def areas() -> dict[int, str]:
    """Area number → area name, in file order."""
    text = (files("rideshare") / "data" / "AreaNameEnum.csv").read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    next(reader)  # header: "Area No,Area Name"
    table: dict[int, str] = {}
    for row in reader:
        if not row:
            continue
        number, name = int(row[0]), row[1].strip()
        table[number] = name
    return table


def is_area(n: object) -> bool:
    """True when ``n`` is the number (a real int, not a bool) of one of the areas."""
    return isinstance(n, int) and not isinstance(n, bool) and n in areas()
