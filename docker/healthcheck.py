#!/opt/venv/bin/python
"""``rideshare-healthcheck URL [STATUS]``: exit 0 when URL answers with STATUS (default 200).

The compose health checks of users, rides and orchestrator run this (``/health`` on each; the
orchestrator's is 200 once a master and a slave serve). Standard library only, 3 s at most.
"""

import sys
import urllib.error
import urllib.request


def main() -> int:
    url = sys.argv[1]
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    if status != want:
        print(f"{url}: {status}, not {want}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
