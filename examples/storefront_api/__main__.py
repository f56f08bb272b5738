"""``python -m examples.storefront_api [--host H] [--port P]``: serve the API with uvicorn.

Settings come from the environment (see `examples.storefront_api.settings`).
"""

from __future__ import annotations

import argparse
import sys

import uvicorn

from .app import create_app
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m examples.storefront_api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(Settings.from_env()), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
