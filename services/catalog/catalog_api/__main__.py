"""`python -m catalog_api`: run the catalog with uvicorn on CATALOG_HOST:CATALOG_PORT."""

from __future__ import annotations

import sys

from movierec_common.cli import settings_parser
from movierec_common.logs import setup_logging
from movierec_common.tokens import InsecureSecret

from .core.config import CatalogSettings


def main(argv: list[str] | None = None) -> None:
    settings_parser(
        "python -m catalog_api",
        "The catalog API (accounts, movies, ratings, admin) under uvicorn on "
        "CATALOG_HOST:CATALOG_PORT.",
        CatalogSettings,
    ).parse_args(argv)
    # The server and the app are imported only now, so --help answers at once.
    import uvicorn

    from .main import create_app

    settings = CatalogSettings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        app = create_app(settings)
    except InsecureSecret as exc:
        sys.exit(f"catalog_api: refusing to start: {exc}")
    uvicorn.run(
        app,
        host=settings.catalog_host,
        port=settings.catalog_port,
        log_config=None,  # keep our JSON logging
        access_log=False,  # RequestMiddleware logs each request with its request id
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
