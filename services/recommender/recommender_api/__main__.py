"""`python -m recommender_api`: run the API under uvicorn (RECOMMENDER_HOST / _PORT)."""

from __future__ import annotations

import uvicorn
from movierec_common.logs import setup_logging

from .config import RecommenderSettings
from .main import create_app


def main() -> None:
    settings = RecommenderSettings()
    setup_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host=settings.recommender_host,
        port=settings.recommender_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
