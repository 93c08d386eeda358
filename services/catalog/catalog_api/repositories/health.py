"""Database reachability for /readyz."""

from __future__ import annotations

from pymongo import AsyncMongoClient


class HealthRepo:
    def __init__(self, client: AsyncMongoClient) -> None:
        self.client = client

    async def ping(self) -> None:
        await self.client.admin.command("ping")
