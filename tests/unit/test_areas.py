"""The 198 areas come from the packaged CSV, whatever the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rideshare.areas import areas, is_area


def test_all_198_areas_load_in_order() -> None:
    table = areas()
    assert list(table) == list(range(1, 199))
    assert table[1] == "Kempegowda Ward"
    assert table[198] == "Hemmigepura"
    assert all(name and name == name.strip() for name in table.values())


def test_loading_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        areas.cache_clear()
        assert len(areas()) == 198
    finally:
        os.chdir(here)


@pytest.mark.parametrize("n", [1, 2, 100, 197, 198])
def test_known_areas(n: int) -> None:
    assert is_area(n)


@pytest.mark.parametrize("n", [0, -1, 199, 10**30, True, False, 1.0, "1", None])
def test_not_areas(n: object) -> None:
    assert not is_area(n)
