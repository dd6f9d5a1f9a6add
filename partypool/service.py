"""Services that make up a running server: listeners, the farewell, the store.

`partypool.tap` assembles them into one `MultiService`.  A MultiService stops
its children in reverse order, so the farewell (added last) says BYE to every
client and waits for them to go before the listeners and the store close.
"""

from __future__ import annotations

import signal

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger

from partypool.server import PartyPool
from partypool.store import Store

log = Logger(namespace="partypool.service")


class Listener(StreamServerEndpointService):
    """Listen on an endpoint; a port that cannot be bound stops start-up."""

    _raiseSynchronously = True

    def __init__(
        self, label: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory
    ) -> None:
        super().__init__(endpoint, factory)
        self.label = label

    def privilegedStartService(self) -> None:  # noqa: N802
        super().privilegedStartService()
        self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        address = port.getHost()
        log.info(
            "{label} listening on {host}:{port}",
            label=self.label,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )
        self.address = address
        return port


class Farewell(Service):
    """On stop: ``BYE <reason>`` to every connection, then wait (briefly) for them.

    SIGTERM is the ordinary way to stop a service, so it stops the server
    like ``close-server`` does and the process exits 0 (twistd's own handler
    would re-raise the signal at exit).
    """

    def __init__(
        self,
        pool: PartyPool,
        reactor: IReactorCore,
        reason: str = "server stopping",
        grace: float = 5.0,
    ) -> None:
        self.pool = pool
        self.reactor = reactor
        self.reason = reason
        self.grace = grace

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.reactor.callWhenRunning(signal.signal, signal.SIGTERM, self._terminate)

    def _terminate(self, signum: int, frame: object) -> None:
        log.info("SIGTERM: stopping")
        self.reactor.callFromThread(self.reactor.stop)

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()
        self.pool.cancel_shutdown()
        self.pool.close_everyone(self.reason)
        return self._drained()

    def _drained(self) -> Deferred[None]:
        clock, connections = self.pool.clock, self.pool.connections
        deadline = clock.seconds() + self.grace

        def check() -> None:
            if not connections or clock.seconds() >= deadline:
                poll.stop()

        poll = task.LoopingCall(check)
        poll.clock = clock
        return poll.start(0.05).addCallback(lambda _: None)


class StoreService(Service):
    """Closes the database (its thread) when the server stops."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.store.close()
