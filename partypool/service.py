"""Services that make up a running server: listeners, the farewell, the store.

`partypool.tap` assembles them into one `StopInOrder` service, which stops its
children one at a time, last first, so the farewell (added last) says BYE to
every client and waits for them to go before the listeners and the store
close.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet import task
from twisted.internet.defer import (
    Deferred,
    gatherResults,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.logger import Logger

from partypool import sighup
from partypool.datadir import ServerRecord, write_server_record
from partypool.room.pool import PartyPool
from partypool.room.store import Store
from partypool.tls import ConfigError, ServerTLS

log = Logger(namespace="partypool.service")


class Listener(StreamServerEndpointService):
    """Listen on an endpoint; a port that cannot be bound stops start-up."""

    _raiseSynchronously = True

    def __init__(
        self, label: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory
    ) -> None:
        super().__init__(endpoint, factory)
        self.label = label
        # Fires with the port once bound, for the readiness notification.
        self.listening: Deferred[IListeningPort] = Deferred()

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
        self.listening.callback(port)
        return port


class StopInOrder(MultiService):
    """A MultiService whose children stop one after another, last first.

    MultiService starts every child's stop at once; a server must finish
    saying goodbye before it closes its ports and its database.
    """

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[object], object, None]:  # noqa: N802
        Service.stopService(self)
        for child in reversed(list(self)):
            yield maybeDeferred(child.stopService)


class StopOnSigterm(Service):
    """SIGTERM, the ordinary way to stop a service, stops the server cleanly.

    twistd's own handler would make the process exit by the signal at the
    end; this one stops the reactor like ``close-server`` and the exit status
    is 0.  It is the first service in the tree, so its handler is in place
    before any port is listening; it is installed again right after the
    reactor installs its own, in the same start-up phase.
    """

    def __init__(self, reactor: IReactorCore) -> None:
        self.reactor = reactor

    def privilegedStartService(self) -> None:  # noqa: N802
        super().privilegedStartService()
        signal.signal(signal.SIGTERM, self._terminate)
        self.reactor.addSystemEventTrigger(
            "during", "startup", signal.signal, signal.SIGTERM, self._terminate
        )

    def _terminate(self, signum: int, frame: object) -> None:
        log.info("SIGTERM: stopping")
        self.reactor.callFromThread(self._stop)

    def _stop(self) -> None:
        with contextlib.suppress(ReactorNotRunning):  # a second SIGTERM
            self.reactor.stop()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        # A SIGTERM in the instant between the reactor installing its handler
        # and this one reinstalling ours is recorded by the reactor, and twistd
        # would exit by the signal; the stop was just as clean, so forget it.
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None


class Farewell(Service):
    """On stop: ``BYE <reason>`` to every connection, then wait (briefly) for them."""

    def __init__(
        self, pool: PartyPool, reason: str = "server stopping", grace: float = 5.0
    ) -> None:
        self.pool = pool
        self.reason = reason
        self.grace = grace

    def stopService(self) -> Deferred[None]:  # noqa: N802
        super().stopService()
        self.pool.cancel_shutdown()
        self.pool.close_everyone(self.reason)
        return self._drained()

    def _drained(self) -> Deferred[None]:
        pool, connections = self.pool, self.pool.connections
        deadline = pool.now() + self.grace

        def check() -> None:
            if not connections or pool.now() >= deadline:
                poll.stop()

        poll = task.LoopingCall(check)
        poll.clock = pool.clock
        return poll.start(0.05).addCallback(lambda _: None)


class CertificateReload(Service):
    """SIGHUP loads the chat certificate and key again, without a restart.

    Renewed certificates (certbot, an ACME client) then need no restart that
    would drop every chat.  Each TLS connection keeps the context it was
    accepted with, so new connections get the new certificate and open ones
    keep theirs.  Unusable files are logged and the old certificate stays: a
    mistake at renewal must not take the chat port down.  SIGHUP is never
    fatal: `partypool.sighup` catches it from the start, this takes it over.
    """

    def __init__(self, tls: ServerTLS | None, reactor: IReactorCore) -> None:
        self.tls = tls
        self.reactor = reactor

    def privilegedStartService(self) -> None:  # noqa: N802
        """Take SIGHUP over from `partypool.sighup`, before the reactor runs.

        A SIGHUP that came while the server was starting is acted on now: the
        reload runs as soon as the reactor does.
        """
        super().privilegedStartService()
        if not hasattr(signal, "SIGHUP"):  # Windows has none: reload-tls still works
            return
        signal.signal(signal.SIGHUP, self._hangup)
        if sighup.take_pending():
            log.info("SIGHUP while starting: reloading the certificate")
            self._hangup(signal.SIGHUP, None)

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if not hasattr(signal, "SIGHUP"):
            return
        # Nothing to reload from here on.  Ignoring SIGHUP (rather than
        # catching it) also holds while Python exits: it puts the default
        # action, which ends the process, back on every handler it ran.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _hangup(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self._reload_quietly)

    def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):  # logged; no one else to tell
            self.reload()

    def reload(self) -> str:
        """Read the certificate and key files again; return the new fingerprint.

        SIGHUP and the admin port's ``reload-tls`` both come here.  Raises
        `ConfigError` (already logged) and keeps the old certificate if the
        files cannot be used, or if TLS is off.
        """
        if self.tls is None:
            log.warn("not reloading the TLS certificate: TLS is off (--no-tls)")
            raise ConfigError("TLS is off (--no-tls): there is no certificate")
        try:
            fp = self.tls.reload()
        except ConfigError as e:
            log.error("TLS certificate kept, reload failed: {error}", error=e)
            raise
        log.info("TLS certificate reloaded: SHA-256 fingerprint {fp}", fp=fp)
        return fp


class StoreService(Service):
    """Closes the database (its thread) when the server stops."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.store.close()


class PublishAddress(Service):
    """Once every port listens, write down how the server can be reached.

    The record (`partypool.datadir.ServerRecord`, ``server.json`` in the data
    directory) names each door's port as bound, ``tcp:0`` and passed sockets
    included, so ``partypool-invite`` and ``partypool-dist`` make invites that
    reach this server without being told its ports.  Then ``announce`` (if
    any; ``partypool serve`` prints the addresses with it) gets the record,
    once the reactor runs: its announcement says "Ctrl-C stops it", and
    until the reactor has installed its signal handlers a Ctrl-C would
    interrupt whatever code is starting instead (the listeners are bound
    before ``reactor.run``).  Each `Listener` is a door named by the first
    word of its label (``chat port``, ``admin port``, ``web door``).
    """

    def __init__(
        self,
        listeners: Sequence[Listener],
        data_dir: Path,
        *,
        server_name: str,
        tls: bool,
        reactor: IReactorCore,
        announce: Callable[[ServerRecord], object] | None = None,
    ) -> None:
        self.listeners = list(listeners)
        self.data_dir = data_dir
        self.server_name = server_name
        self.tls = tls
        self.reactor = reactor
        self.announce = announce

    def startService(self) -> None:  # noqa: N802
        super().startService()
        ready = gatherResults([x.listening for x in self.listeners], consumeErrors=True)
        ready.addCallback(self._publish)
        ready.addErrback(lambda _: None)  # a listener that fails stops start-up

    def _publish(self, ports: list[IListeningPort]) -> None:
        found = {
            listener.label.split()[0].lower(): port.getHost()  # "IRC gateway": irc
            for listener, port in zip(self.listeners, ports, strict=True)
        }
        chat_host = getattr(found.get("chat"), "host", "")
        record = ServerRecord(
            ports={door: getattr(a, "port", 0) for door, a in found.items()},
            server_name=self.server_name,
            tls=self.tls,
            host=None if chat_host in ("", "0.0.0.0", "::") else chat_host,
        )
        try:
            path = write_server_record(self.data_dir, record)
        except OSError as e:
            log.warn("cannot record the server's ports: {error}", error=e)
        else:
            log.info("ports recorded in {path} for invites and packages", path=path)
        if self.announce is not None:
            self.reactor.callWhenRunning(self.announce, record)
