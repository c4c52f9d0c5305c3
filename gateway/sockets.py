"""Concurrent WebSocket connections through the gateway, counted per client address, per
principal and per shared link (a link's token is its own credential, so it gets its own
cap). Counts are per gateway process: with several replicas a client may hold up to the
cap on each, which bounds the total as well as a request rate limit would."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Claim:
    """Slots held by one connection; release once, when it closes."""

    _slots: SocketSlots
    _keys: tuple[str, ...]
    _released: bool = field(default=False)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots.give_back(self._keys)


class SocketSlots:
    def __init__(self, *, per_address: int, per_principal: int, per_share_link: int) -> None:
        self._limits = {"address": per_address, "principal": per_principal, "link": per_share_link}
        self._held: Counter[str] = Counter()

    def claim(self, *, address: str | None, principal: str | None, share_link: str | None) -> Claim | str:
        """A claim on one slot of each kind that applies, or the reason there is none."""
        wanted = [
            (kind, value)
            for kind, value in (("address", address), ("principal", principal), ("link", share_link))
            if value is not None
        ]
        for kind, value in wanted:
            if self._held[f"{kind}:{value}"] >= self._limits[kind]:
                return f"too many open sockets for this {'shared link' if kind == 'link' else kind}"
        keys = tuple(f"{kind}:{value}" for kind, value in wanted)
        self._held.update(keys)
        return Claim(self, keys)

    def give_back(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    def held(self) -> int:
        return sum(count for key, count in self._held.items() if key.startswith("address:"))
