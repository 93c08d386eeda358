"""`python -m recommender_api`: run the API under uvicorn (RECOMMENDER_HOST / _PORT)."""

from __future__ import annotations

import os

# One BLAS thread per process: every product here is one small matrix-vector product per
# request, and concurrency comes from requests (and replicas), not from BLAS threads spinning
# on a 2-core box. Must be set before NumPy loads; an explicit environment value still wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys

from movierec_common.cli import settings_parser
from movierec_common.logs import setup_logging
from movierec_common.malloc import keep_freed_memory
from movierec_common.tokens import InsecureSecret

from .config import RecommenderSettings


def main(argv: list[str] | None = None) -> None:
    settings_parser(
        "python -m recommender_api",
        "The recommender API (personal lists, fold-in, similar movies, batch) under uvicorn on "
        "RECOMMENDER_HOST:RECOMMENDER_PORT.",
        RecommenderSettings,
    ).parse_args(argv)
    # Score vectors are rebuilt per request: keep their pages instead of mapping them anew.
    keep_freed_memory()
    # The server and the app are imported only now, so --help answers at once.
    import uvicorn

    from .main import create_app

    settings = RecommenderSettings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        app = create_app(settings)
    except InsecureSecret as exc:
        sys.exit(f"recommender_api: refusing to start: {exc}")
    uvicorn.run(
        app,
        host=settings.recommender_host,
        port=settings.recommender_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
