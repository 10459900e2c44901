"""``python -m mockproviders [--scenario NAME|PATH] [--host H] [--port P] [--tls]``."""

from __future__ import annotations

import argparse
import sys

from imagerouter.errors import ImageRouterError
from mockproviders.scenario import bundled_scenarios
from mockproviders.serve import DEFAULT_PORT, run_farm


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve the farm until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m mockproviders", description="Serve the mock provider farm."
    )
    parser.add_argument(
        "--scenario",
        help=f"a scenario file, or a bundled one: {', '.join(bundled_scenarios())}",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--tls", action="store_true", help="serve https (for SDKs that need it)")
    args = parser.parse_args(argv)
    try:
        run_farm(args.scenario, host=args.host, port=args.port, tls=args.tls)
    except ImageRouterError as exc:  # a bad scenario, or the farm extra missing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
