"""Caps on what clients hold at once, overall and per client address: connections (counted by the
HTTP protocol, api/http.py) and event streams (routes/events.py). Past the overall cap the answer is
a 503 (the server is full), past an address's own cap a 429 (that client holds its share), both
with Retry-After. Behind a reverse proxy every client has the proxy's address: raise the per-address
caps to the overall ones there.
"""

from collections import Counter

from bnscope.api.errors import ServerBusy, TooManyRequests

RETRY_AFTER_S = 5  # a slot frees when some client leaves: no better guess than "shortly"


class Slots:
    """Slots of one kind held by client addresses; used on the event loop only."""

    def __init__(self, what: str, total: int, per_address: int):
        self.what, self.total, self.per_address = what, total, per_address
        self.held: Counter[str] = Counter()
        self.count = 0

    def take(self, address: str) -> TooManyRequests | None:
        """Take a slot for `address`, or say why not (the refusal to raise or answer)."""
        if self.held[address] >= self.per_address:  # first: a client past its own share is told so
            return TooManyRequests(f"{address} holds {self.per_address} {self.what} at once, its most", RETRY_AFTER_S)
        if self.count >= self.total:
            return ServerBusy(f"the server holds {self.total} {self.what} at once, its most", RETRY_AFTER_S)
        self.held[address] += 1
        self.count += 1
        return None

    def give_back(self, address: str) -> None:
        self.count -= 1
        self.held[address] -= 1
        if not self.held[address]:
            del self.held[address]
