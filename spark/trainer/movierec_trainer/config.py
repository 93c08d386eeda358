"""The trainer's settings: read once per process (environment / .env) and passed down."""

from __future__ import annotations

from pathlib import Path

from movierec_common.jobs import SLOT_STALE_SECONDS
from movierec_common.settings import PROJECT_ROOT, CommonSettings
from pydantic import Field, SecretStr


class TrainerSettings(CommonSettings):
    spark_master: str = Field("local[2]", description="Where Spark jobs run (SPARK_MASTER).")
    spark_partitions: int | None = Field(
        None, ge=1, description="Blocks per side; default = the cluster's total cores."
    )
    spark_driver_memory: str = Field("2g", description="spark.driver.memory")
    spark_executor_memory: str | None = Field(None, description="spark.executor.memory")
    spark_driver_host: str = Field(
        "127.0.0.1",
        description="Address executors use to reach this driver (compose: the trainer's "
        "service name; make run: loopback).",
    )
    spark_driver_bind_address: str = Field(
        "127.0.0.1", description="Interface the driver listens on (compose: 0.0.0.0)."
    )
    spark_no_executor_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A Spark action of a job fails (instead of waiting forever) when no "
        "executor has been registered for this long (e.g. the only Spark worker died).",
    )
    spark_auth_secret: SecretStr | None = Field(
        None,
        description="Spark's shared secret (spark.authenticate): the standalone master and "
        "workers only accept applications that know it. make run generates it; Compose "
        "requires SPARK_AUTH_SECRET. Unset: no authentication (local[N], an open cluster).",
    )
    work_dir: Path = Field(
        PROJECT_ROOT / "var" / "trainer", description="Snapshots (Parquet) and scratch files."
    )
    # --- worker ---------------------------------------------------------------------------
    worker_id: str | None = Field(None, description="Lease owner name; default host:pid.")
    poll_seconds: float = Field(2.0, gt=0, description="Queue poll interval when idle.")
    lease_seconds: float = Field(
        60.0, gt=0, description="A lease not renewed for this long is expired and its job reaped."
    )
    heartbeat_seconds: float = Field(10.0, gt=0, description="Lease renewal interval.")
    retrain_slot_stale_seconds: float = Field(
        SLOT_STALE_SECONDS,
        gt=0,
        description="A slot naming a job not inserted this long ago may be retaken.",
    )
    max_attempts: int = Field(
        2,
        ge=1,
        description="A reaped job is re-queued until it has "
        "been attempted this often, then failed.",
    )
    gate_tolerance: float = Field(
        0.02,
        ge=0,
        description="Reject a model whose holdout RMSE "
        "is worse than the active one's by more than this fraction.",
    )
    publish_full: bool = Field(
        True,
        description="Publish a refit on all ratings after the "
        "holdout evaluation (serving wants every rating).",
    )
    schedule: str | None = Field(
        "02:00", description="Daily retrain time HH:MM (UTC); empty/off disables the schedule."
    )
    new_ratings_threshold: int = Field(
        1000,
        ge=0,
        description="Enqueue a retrain once this "
        "many ratings arrived since the active model; 0 = off.",
    )
    trigger_check_seconds: float = Field(
        30.0, gt=0, description="How often triggers are evaluated."
    )
    log_tail_lines: int = Field(40, ge=1, description="Log lines kept in a job document.")
    keep_versions: int = Field(5, ge=1, description="Model versions kept on disk.")
    snapshot_pause_ratio: float = Field(
        1.0,
        ge=0,
        le=10,
        description="The retrain's MongoDB read sleeps this many times the server's time for "
        "each range of ratings before the next: the embedded server answers one query at a time, "
        "so at 0 a 25M read leaves the APIs' queries queued behind it for 20 minutes.",
    )
    snapshot_min_age_seconds: float = Field(
        600.0,
        ge=0,
        description="A snapshot no kept version names is deleted once this old (younger ones "
        "may belong to a job still running elsewhere).",
    )
