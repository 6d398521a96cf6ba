"""``python -m tests.campaign [--duration S] [--seed N]``: a long campaign (``make chaos``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

from tests.campaign.run import run_campaign, save

ROOT = Path(__file__).resolve().parent.parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="make chaos")
    parser.add_argument("--duration", type=float,
                        default=float(os.environ.get("CHAOS_DURATION") or 600))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CHAOS_SEED") or 1))
    parser.add_argument("--kinds", help="only these kinds of fault, comma-separated")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep its logs")
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("CHAOS_NODES") or 1),
                        help="RabbitMQ and ZooKeeper nodes: 1, or 3 (replicated)")
    args = parser.parse_args()
    # SIGTERM (a CI timeout, say) stops the campaign the way Ctrl-C does: everything it started
    # is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    kinds = args.kinds.split(",") if args.kinds else None
    if args.keep:
        result = run_campaign(args.duration, args.seed, args.keep, kinds=kinds,
                              nodes=args.nodes)
    else:
        with tempfile.TemporaryDirectory(prefix="rs-chaos-") as tmp:
            result = run_campaign(args.duration, args.seed, Path(tmp), kinds=kinds,
                                  nodes=args.nodes)
    print(result.table())
    print(f"written to {save(result, ROOT / 'build' / 'chaos')}")
    return 0 if result.verdict.clean else 1


if __name__ == "__main__":
    sys.exit(main())
