"""``python -m rideshare.bench``: benchmark 2 (see ``rideshare.bench.cli`` for the options)."""

from rideshare.bench.cli import main

main()
