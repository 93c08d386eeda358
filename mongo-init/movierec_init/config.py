"""Settings of the init job, read once from the environment (see .env.example)."""

from __future__ import annotations

from movierec_common.settings import CommonSettings
from pydantic import Field, SecretStr


class InitSettings(CommonSettings):
    admin_username: str = Field("admin", pattern=r"^[A-Za-z0-9_.-]{3,32}$")  # whole string
    admin_password: SecretStr | None = Field(
        None, description="Password of the admin account; no admin is created without it."
    )
    demo_accounts: bool = Field(False, description="Create a login ml<userId> per MovieLens user.")
    demo_password: SecretStr | None = Field(None, description="The one password demo logins share.")
    popularity_prior_weight: float = Field(
        20.0, ge=0, description="m in the damped mean (rating_sum + m·C)/(rating_count + m)."
    )
    batch_size: int = Field(2000, ge=100, le=100_000, description="Documents per insert_many.")
