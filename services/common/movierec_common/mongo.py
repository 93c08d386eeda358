"""One `AsyncMongoClient` per process, and a start-up wait that says clearly what is wrong.

PyMongo's own async API is used (Motor reached end of life in May 2026). The same code talks to
the embedded SecantusDB and a real mongod: no replica-set-only features anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)


# Every write of every MovieRec process is acknowledged only once it is in the server's journal
# (MongoDB's `{w: 1, j: true}`): an answered request survives a crash of the database process.
# SecantusDB honours `j` per write (its WiredTiger commit runs with `sync=on`, an fsync of the
# log), as mongod does; without it an acknowledged write could still sit in the log buffer when
# the process is killed (issue 19: 7 of 32 acknowledged ratings lost to a SIGKILL).
JOURNALED = {"w": 1, "journal": True}


def make_client(
    url: str,
    timeout_ms: int = 2000,
    socket_timeout_ms: int | None = None,
    monitor_timeout_ms: int | None = None,
    appname: str | None = None,
    journal: bool = True,
) -> AsyncMongoClient:
    """`socket_timeout_ms` bounds one reply: request-sized by default (APIs answer 503 rather
    than hang); batch jobs such as the import pass a larger value, because one bulk write of
    thousands of documents can legitimately take longer on a loaded machine. Writes use the
    journaled write concern `JOURNALED`; `appname` names the process in the server's logs (and
    lets a test scope a server fail point to it); an `appName` in the URL wins. `journal=False`
    only for a re-runnable bulk step that makes its result durable itself (mongo-init's import
    ends with an `fsync`).

    `monitor_timeout_ms` (connectTimeoutMS, default `timeout_ms`) also bounds the driver's
    background `hello` checks; when one times out, PyMongo marks the server unknown and
    cancels every operation in flight on it ("operation cancelled"). A server that answers one
    command at a time (SecantusDB) cannot answer the check while it applies a big bulk write,
    so batch jobs pass a value as long as such a write may take."""
    named = {} if appname is None or "appname=" in url.lower() else {"appname": appname}
    return AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=monitor_timeout_ms or timeout_ms,
        socketTimeoutMS=socket_timeout_ms or max(timeout_ms * 15, 30000),
        tz_aware=True,
        uuidRepresentation="standard",
        **named,
        **(JOURNALED if journal else {"w": 1}),
    )


async def wait_for_mongo(client: AsyncMongoClient, attempts: int = 30, delay: float = 1.0) -> None:
    """Ping until the server answers; raise with a message naming the URL's host otherwise."""
    last: Exception | None = None
    start = time.monotonic()
    for i in range(1, attempts + 1):
        try:
            await client.admin.command("ping")
            if i > 1:
                log.info("mongodb reachable", extra={"after_s": round(time.monotonic() - start, 1)})
            return
        except PyMongoError as exc:
            last = exc
            log.warning(
                "waiting for mongodb", extra={"attempt": i, "of": attempts, "error": str(exc)[:200]}
            )
            await asyncio.sleep(delay)
    raise RuntimeError(
        f"MongoDB did not answer after {attempts} attempts: {last}. Is it running, and does "
        "MONGO_URL point at it?"
    )
