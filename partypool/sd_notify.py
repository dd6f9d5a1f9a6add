"""systemd's readiness protocol (``sd_notify``), which Twisted does not speak.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` and waits for ``READY=1``
before it calls the service started, so units ordered after Party Pool (and
``systemctl start`` itself) only return once both ports accept connections.
``STOPPING=1`` tells it a stop is on purpose; ``WATCHDOG=1`` every half
``WATCHDOG_USEC`` proves the reactor still turns.  Each message is one
datagram on an ``AF_UNIX`` socket; a name starting with ``@`` is abstract.
Outside systemd none of these variables is set and nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping

from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

log = Logger(namespace="partypool.sd_notify")


def notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (``KEY=value`` lines) to systemd; False when not asked to.

    A full or missing socket is logged, never raised: the server must keep
    serving even if the service manager is gone.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError as e:
        log.warn("cannot notify systemd ({state!r}): {error}", state=state, error=e)
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the timeout), or None."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (we were started by it)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Readiness(Service):
    """``READY=1`` once every listener is bound; ``STOPPING=1``; the watchdog.

    It waits on the listeners' ``listening`` Deferreds rather than on its own
    start, so it holds whatever order the tree starts in.
    """

    def __init__(
        self,
        listening: Iterable[Deferred[object]],
        reactor: IReactorCore,
        clock: IReactorTime,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.listening = list(listening)
        self.reactor = reactor
        self.clock = clock
        self.environ = environ
        self._watchdog: task.LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802
        super().startService()
        ready = gatherResults(self.listening, consumeErrors=True)
        ready.addCallback(lambda _: self.reactor.callWhenRunning(self._ready))
        ready.addErrback(lambda _: None)  # a listener that fails stops start-up
        interval = watchdog_interval(self.environ)
        if interval is not None:
            self._watchdog = task.LoopingCall(self._ping)
            self._watchdog.clock = self.clock
            self._watchdog.start(interval)

    def _ready(self) -> None:
        if notify("READY=1\nSTATUS=serving", self.environ):
            log.info("told systemd the server is ready")

    def _ping(self) -> None:
        notify("WATCHDOG=1", self.environ)  # logs its own errors, never raises

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        notify("STOPPING=1\nSTATUS=stopping", self.environ)
