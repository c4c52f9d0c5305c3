"""Where monitoring may send a ping: the guard against server-side request forgery.

A ping URL is typed in by a branch owner, and the pinger runs inside the cluster; left
alone it would fetch whatever the URL names (the cloud metadata endpoint, the database,
another service's admin port). So a ping goes only to a public address, or to an address
inside a network the operator declared as that branch's (or every branch's) equipment
network; never to the cluster's service range unless declared. The host is resolved and
checked on every ping and the connection goes to the checked address (a name that
re-resolves to somewhere else between check and use gains nothing). See
docs/adr/0017-egress-and-fail-safe-exits.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from yarl import URL

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EVERY_BRANCH = "*"


class EgressRefused(Exception):
    """The URL's host is (or resolves to) an address monitoring must not call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where to connect (the checked address) and what to call the host (Host header, TLS name)."""

    url: URL
    host: str
    host_header: str


class EgressPolicy:
    def __init__(self, *, networks: Mapping[str, Sequence[Network]], service_cidrs: Sequence[Network]) -> None:
        self._networks = {branch: tuple(cidrs) for branch, cidrs in networks.items()}
        self._service_cidrs = tuple(service_cidrs)
        # Targets of URLs naming an address, not a host name: their check never changes.
        self._literal: dict[tuple[str, str], Target] = {}

    def allows(self, branch_id: str, address: Address) -> bool:
        declared = self._networks.get(branch_id, ()) + self._networks.get(EVERY_BRANCH, ())
        if any(address.version == net.version and address in net for net in declared):
            return True
        if any(address.version == net.version and address in net for net in self._service_cidrs):
            return False
        # is_global excludes loopback, link-local (169.254/16, fe80::/10), RFC 1918,
        # carrier-grade NAT, unique-local IPv6 and the other special-purpose ranges.
        return address.is_global and not address.is_multicast

    def known_target(self, branch_id: str, url: str) -> Target | None:
        """The target of a URL that names an allowed address, without a lookup; None for a
        host name (resolved on every ping: see :meth:`target`) or a refused address."""
        known = self._literal.get((branch_id, url))
        if known is not None:
            return known
        parsed = URL(url)
        host = parsed.host or ""
        if not _is_literal(host) or parsed.scheme not in ("http", "https"):
            return None
        address = ipaddress.ip_address(host.strip("[]"))
        if not self.allows(branch_id, address):
            return None
        return self._remember(branch_id, url, parsed, host, address)

    def _remember(self, branch_id: str, url: str, parsed: URL, host: str, address: Address) -> Target:
        named = f"[{host}]" if ":" in host else host
        header = named if parsed.explicit_port is None else f"{named}:{parsed.explicit_port}"
        target = Target(parsed.with_host(str(address)), host, header)
        if _is_literal(host):
            if len(self._literal) > 200_000:
                self._literal.clear()
            self._literal[(branch_id, url)] = target
        return target

    async def target(self, branch_id: str, url: str) -> Target:
        """The URL rewritten to one checked address of its host; every address the host
        resolves to must be allowed (a name with one private answer is refused)."""
        known = self._literal.get((branch_id, url))
        if known is not None:
            return known
        parsed = URL(url)
        host = parsed.host or ""
        if not host or parsed.scheme not in ("http", "https"):
            raise EgressRefused("ping_url must be an http(s) URL with a host")
        addresses = await _resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
        if not addresses:
            raise EgressRefused(f"{host} does not resolve")
        refused = [address for address in addresses if not self.allows(branch_id, address)]
        if refused:
            raise EgressRefused(
                f"{host} is {refused[0]}, outside the branch's declared equipment networks "
                "(loopback, link-local, private and cluster addresses need declaring)"
            )
        return self._remember(branch_id, url, parsed, host, addresses[0])


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise EgressRefused(f"{host} does not resolve") from exc
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found
