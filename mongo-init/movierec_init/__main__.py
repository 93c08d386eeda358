"""`python -m movierec_init`: one-shot database set-up (safe to re-run)."""

from __future__ import annotations

import asyncio
import sys

from movierec_common.cli import settings_parser
from movierec_common.logs import setup_logging

from movierec_init.config import InitSettings
from movierec_init.run import InitError, run_accounts, run_init


def main(argv: list[str] | None = None) -> int:
    parser = settings_parser(
        "python -m movierec_init",
        "Create the MovieRec database: collections, validators, indexes, the MovieLens import, "
        "movie statistics, the admin account and (DEMO_ACCOUNTS=1) the demo logins. Safe to "
        "re-run: what is already done is skipped, the accounts are brought in line with "
        "ADMIN_PASSWORD and DEMO_PASSWORD.",
        InitSettings,
    )
    parser.add_argument(
        "--accounts-only",
        action="store_true",
        help="only bring the admin account and the existing demo logins in line with "
        "ADMIN_USERNAME/ADMIN_PASSWORD and DEMO_PASSWORD (no schema, no import)",
    )
    args = parser.parse_args(argv)
    settings = InitSettings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        if args.accounts_only:
            asyncio.run(run_accounts(settings))
        else:
            asyncio.run(run_init(settings))
    except (InitError, RuntimeError) as exc:
        print(f"movierec_init: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
