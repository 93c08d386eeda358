"""`python -m movierec_init`: one-shot database set-up (safe to re-run)."""

from __future__ import annotations

import asyncio
import sys

from movierec_common.logs import setup_logging

from movierec_init.config import InitSettings
from movierec_init.run import InitError, run_init


def main() -> int:
    settings = InitSettings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        asyncio.run(run_init(settings))
    except (InitError, RuntimeError) as exc:
        print(f"movierec_init: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
