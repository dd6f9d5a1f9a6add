"""What every carrier of protocol-v1 lines does with its output, whatever its framing.

A carrier (the chat port's TCP/TLS connection, a WebSocket) is the dialect's
`Outlet`.  Two things are the same for all of them, so they live here once:

- Room events are held for the next round of writes (`partypool.room.gather`)
  and go out together with whatever the connection says next, in order.
- The output backlog: while the transport pushes back, bytes written are
  counted, and a reader so slow that they pass ``--max-pending`` is dropped
  rather than buffered without bound.

A carrier subclasses `HeldOutput` and says how lines become bytes on its wire
(`HeldOutput.encode`) and how bytes reach it (`HeldOutput.transmit`).
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from partypool.room.pool import PartyPool

# Held room events past this many bytes are written at once: a round would
# only make the piece bigger, and the output backlog check sees them sooner.
HELD_MAX = 64 * 1024


@implementer(IPushProducer)
class Backlog:
    """Counts bytes written while the transport pushes back."""

    def __init__(self) -> None:
        self.paused = False
        self.size = 0

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self.size = 0

    def stopProducing(self) -> None:  # noqa: N802
        self.paused = True


class HeldOutput:
    """The output half of an `Outlet`: ``write``, ``gather`` and ``write_held``.

    Subclasses set ``pool`` and ``session`` and implement `transmit` (and
    `encode`, if their wire is not plain CRLF lines).
    """

    pool: PartyPool

    def __init__(self) -> None:
        self.backlog = Backlog()
        self._held: list[bytes] = []
        self._held_size = 0

    def encode(self, data: bytes) -> bytes:
        """``data`` (whole CRLF-ended lines) as this carrier sends it."""
        return data

    def transmit(self, data: bytes) -> None:
        """Hand encoded bytes to the transport."""
        raise NotImplementedError

    def too_slow(self) -> None:
        """The backlog passed the limit: the session drops the peer."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        data = self.encode(data)
        if self._held:  # what the room said first goes first
            self._held.append(data)
            data = self._take_held()
        self._send(data)

    def gather(self, data: bytes) -> None:
        if not self._held:
            self.pool.gatherer.hold(self)
        data = self.encode(data)
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > HELD_MAX:
            self.write_held()

    def write_held(self) -> bool:
        if not self._held:
            return False
        self._send(self._take_held())
        return True

    def _take_held(self) -> bytes:
        data = b"".join(self._held)
        self.forget_held()
        return data

    def forget_held(self) -> None:
        """Drop what is held: the connection is gone, or is being aborted."""
        self._held = []
        self._held_size = 0

    def _send(self, data: bytes) -> None:
        backlog = self.backlog
        if backlog.paused:
            backlog.size += len(data)
            if backlog.size > self.pool.limits.max_pending:
                self.too_slow()
                return
        self.transmit(data)
