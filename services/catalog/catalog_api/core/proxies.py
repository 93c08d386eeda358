"""Which peers may name the client (X-Real-IP / X-Forwarded-For): TRUSTED_PROXIES.

Entries are IP networks (`make run`: loopback, where its nginx connects from) or host names
(Compose: the `nginx` service), which are resolved when first needed and again at most every
`refresh_seconds`, so a restarted proxy container with a new address is picked up.
"""

from __future__ import annotations

import socket
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from fastapi import Request

Network = IPv4Network | IPv6Network


class TrustedProxies:
    def __init__(self, entries: list[str], refresh_seconds: float = 60.0) -> None:
        self.networks: list[Network] = []
        self.hostnames: list[str] = []
        for entry in entries:
            try:
                self.networks.append(ip_network(entry, strict=False))
            except ValueError:
                self.hostnames.append(entry)
        self.refresh_seconds = refresh_seconds
        self._resolved: set[IPv4Address | IPv6Address] = set()
        self._resolved_at = float("-inf")

    def _resolve(self) -> None:
        found: set[IPv4Address | IPv6Address] = set()
        for name in self.hostnames:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except OSError:
                continue  # not resolvable (yet): nobody is trusted under that name
            for info in infos:
                try:
                    found.add(ip_address(info[4][0].split("%")[0]))
                except ValueError:
                    continue
        self._resolved = found
        self._resolved_at = time.monotonic()

    def trusts(self, peer: str) -> bool:
        try:
            ip = ip_address(peer)
        except ValueError:
            return False
        if any(ip in net for net in self.networks):
            return True
        if not self.hostnames:
            return False
        if ip not in self._resolved and (
            time.monotonic() - self._resolved_at >= self.refresh_seconds
        ):
            self._resolve()  # a few ms, at most once a minute, only for untrusted peers
        return ip in self._resolved

    def client_address(self, request: Request, trust_forwarded: bool) -> str:
        """The peer address, or the client our nginx names (X-Real-IP, else the last
        X-Forwarded-For hop) when forwarding is trusted and the peer is a trusted proxy."""
        peer = request.client.host if request.client else "unknown"
        if not trust_forwarded:
            return peer
        named = (
            request.headers.get("x-real-ip")
            or (request.headers.get("x-forwarded-for", "").split(",")[-1])
        )
        if not named.strip() or not self.trusts(peer):
            return peer
        return named.strip()[:64]
