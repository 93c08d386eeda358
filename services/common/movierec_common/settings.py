"""Settings every MovieRec process shares.

Each process builds its settings object once at start-up (pydantic-settings reads the
environment and `.env`) and passes it down; nothing below reads `os.environ` itself. Services
subclass `CommonSettings` to add their own fields.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from movierec_common.tokens import DEV_ONLY_JWT_SECRET, check_secret

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="__")

    mongo_url: str = Field(
        "mongodb://127.0.0.1:27017/?directConnection=true",
        description="MongoDB connection string; the embedded SecantusDB listens here by default.",
    )
    mongo_db: str = Field("movierec", description="Database name.")
    mongo_timeout_ms: int = Field(2000, description="Server selection timeout per operation.")
    model_dir: Path = Field(PROJECT_ROOT / "var" / "models", description="Shared model volume.")
    data_dir: Path = Field(
        PROJECT_ROOT / "data" / "ml-latest-small",
        description="MovieLens directory: any release's layout, or your own ratings.csv + "
        "movies.csv (README: Data sources and formats).",
    )
    strict_load: bool = Field(
        False,
        description="Refuse the whole load at the first malformed row (file:line: reason) "
        "instead of skipping and reporting it.",
    )
    jwt_secret: SecretStr = Field(
        SecretStr(DEV_ONLY_JWT_SECRET),
        description="HS256 key, at least 32 bytes; the APIs refuse the published default.",
    )
    allow_dev_jwt_secret: bool = Field(
        False,
        description="Developer machines only: let the APIs start with the published development "
        "secret or a short one.",
    )
    jwt_ttl_seconds: int = Field(3600, ge=60, description="Lifetime of an access token.")
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="Keys other services send as X-API-Key (JSON list)."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_json: bool = Field(True, description="One JSON object per log line.")

    def check_jwt_secret(self) -> None:
        """Raise tokens.InsecureSecret unless the secret may sign tokens (called by the APIs at
        start-up; the trainer and mongo-init never sign anything)."""
        check_secret(self.jwt_secret.get_secret_value(), self.allow_dev_jwt_secret)
