"""The init sequence: wait for MongoDB, schema, import, statistics, accounts, summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import pymongo
from argon2 import PasswordHasher
from movierec_common import data_model as model
from movierec_common.loader import MalformedRowError, detect_layout
from movierec_common.mongo import make_client, wait_for_mongo
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from movierec_init import accounts
from movierec_init.config import InitSettings
from movierec_init.importer import import_movielens
from movierec_init.schema import ensure_late_indexes, ensure_schema, late_index_timeout

log = logging.getLogger(__name__)


class RateColumn(ProgressColumn):
    """Documents per second of a task (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


class InitError(RuntimeError):
    """A configuration or data problem the operator must fix; printed without a traceback."""


@dataclass
class InitSummary:
    counts: dict[str, int] = field(default_factory=dict)
    import_skipped: bool = False
    admin: str = "skipped"
    demo_created: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


async def run_init(settings: InitSettings, console: Console | None = None) -> InitSummary:
    console = console or Console(stderr=True)
    if settings.demo_accounts and settings.demo_password is None:
        raise InitError("DEMO_ACCOUNTS=1 needs DEMO_PASSWORD (the password demo logins share)")
    try:
        layout = detect_layout(settings.data_dir)
    except FileNotFoundError as exc:
        raise InitError(str(exc)) from None
    if not (settings.data_dir / layout.movies.name).exists():
        raise InitError(
            f"{settings.data_dir / layout.movies.name} is missing: run `make data` first"
        )
    summary = InitSummary()
    # The bulk import is re-runnable and ends with an fsync (below): it skips the per-write
    # journal flush that every API write pays.
    client = make_client(
        settings.mongo_url,
        settings.mongo_timeout_ms,
        socket_timeout_ms=300_000,
        monitor_timeout_ms=60_000,
        appname="movierec-init",
        journal=False,
    )
    try:
        t0 = time.perf_counter()
        await wait_for_mongo(client)
        db = client[settings.mongo_db]
        await ensure_schema(db)
        summary.seconds["schema"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            try:
                result = await import_movielens(
                    db,
                    settings.data_dir,
                    settings.popularity_prior_weight,
                    settings.batch_size,
                    progress,
                    on_error="raise" if settings.strict_load else "skip",
                )
            except MalformedRowError as exc:
                raise InitError(f"refused (strict load): {exc}") from None
        summary.import_skipped = result.skipped
        counted = await ensure_late_indexes(db)
        summary.seconds["import"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        await accounts.ensure_user_counter(db, max(result.ml_user_ids, default=0))
        hasher = PasswordHasher()
        if settings.admin_password is not None:
            summary.admin = await accounts.ensure_admin(
                db, settings.admin_username, settings.admin_password.get_secret_value(), hasher
            )
        else:
            log.warning("ADMIN_PASSWORD not set: no admin account created")
        if settings.demo_accounts and settings.demo_password is not None:
            summary.demo_created, _ = await accounts.ensure_demo_accounts(
                db,
                result.ml_user_ids,
                settings.demo_password.get_secret_value(),
                hasher,
                settings.batch_size,
            )
        summary.seconds["accounts"] = time.perf_counter() - t0

        # Estimated counts: mongod reads them from the collection's metadata; SecantusDB scans
        # keys (~7 µs a document), where count_documents({}) decodes every one (~14 µs: ~6
        # minutes of server CPU at 25M ratings). The ratings were counted once, above.
        for name in (model.MOVIES, model.RATINGS, model.USERS):
            n = counted.get(name)
            summary.counts[name] = n if n is not None else await db[name].estimated_document_count()
        summary.counts["movies_with_ratings"] = await db[model.MOVIES].count_documents(
            {"rating_count": {"$gt": 0}}
        )
        # Everything written above is on disk before make run / compose records the database
        # as initialised (SecantusDB: a checkpoint; mongod: a flush). After a large import and
        # its index builds the checkpoint writes gigabytes: bounded like an index build, not by
        # the 300 s socket timeout.
        with pymongo.timeout(late_index_timeout(sum(summary.counts.values()))):
            await client.admin.command("fsync")
    finally:
        await client.close()

    table = Table(title=f"movierec_init: database {settings.mongo_db!r}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, n in summary.counts.items():
        table.add_row(name, f"{n:,}")
    table.add_row("import", "skipped (already imported)" if result.skipped else "done")
    table.add_row("ratings inserted", f"{result.ratings_inserted:,}")
    table.add_row("malformed rows", f"{result.malformed_rows:,}")
    table.add_row("global mean C", f"{result.global_mean:.4f}")
    table.add_row("admin account", summary.admin)
    table.add_row("demo accounts created", f"{summary.demo_created:,}")
    for phase, secs in summary.seconds.items():
        table.add_row(f"{phase} seconds", f"{secs:.1f}")
    console.print(table)
    console.print("load summary:\n" + "\n".join(result.summary_lines))
    return summary


async def run_accounts(settings: InitSettings) -> dict[str, str | int]:
    """Only the accounts step of `run_init`, on an already initialised database.

    Brings the admin account in line with ADMIN_USERNAME/ADMIN_PASSWORD (created, updated or
    unchanged) and the existing demo logins with DEMO_PASSWORD; creates no demo logins and
    touches nothing else. Prints one line `accounts: admin <state>, demo logins refreshed <n>`
    (make run reports it). Raises RuntimeError when MongoDB cannot be reached.
    """
    client = make_client(settings.mongo_url, settings.mongo_timeout_ms)
    try:
        await wait_for_mongo(client)
        db = client[settings.mongo_db]
        hasher = PasswordHasher()
        admin = "skipped (ADMIN_PASSWORD not set)"
        if settings.admin_password is not None:
            admin = await accounts.ensure_admin(
                db, settings.admin_username, settings.admin_password.get_secret_value(), hasher
            )
        refreshed = 0
        if settings.demo_password is not None:
            _, refreshed = await accounts.ensure_demo_accounts(
                db, [], settings.demo_password.get_secret_value(), hasher, settings.batch_size
            )
    finally:
        await client.close()
    what = {
        "updated": "password (or role) changed to match ADMIN_PASSWORD",
        "created": "created with ADMIN_PASSWORD",
        "unchanged": "already matches ADMIN_PASSWORD",
    }.get(admin, admin)
    print(
        f"accounts: admin {settings.admin_username!r} {what}; "
        f"demo logins given DEMO_PASSWORD: {refreshed}",
        flush=True,
    )
    return {"admin": admin, "demo_refreshed": refreshed}
