"""
One user's stay in the room: connect, log in, pick a name, turn typed lines
into requests, and after a connection is lost without ``BYE``, reconnect with
backoff and take the same name again, giving up after a while.

The session has no user interface either: it reports to a L{SessionView},
which the terminal and script faces implement. Time comes from the reactor
passed in, so tests drive reconnects with C{task.Clock}.

Exit statuses: L{EXIT_OK} after ``BYE`` (quit, server shutdown),
L{EXIT_KICKED} when an administrator removed or banned us, L{EXIT_ERROR}
for anything that stopped us from chatting (wrong passkey, changed
certificate, server unreachable, reconnects given up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from partypool.client.commands import (
    Mistake,
    Nothing,
    Request,
    Say,
    Simple,
    parse_input,
)
from partypool.client.connect import ServerAddress
from partypool.client.known_servers import FingerprintChanged
from partypool.client.protocol import (
    ChatClientProtocol,
    ChatListener,
    NoReply,
    ServerAuthenticationError,
    ServerError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_KICKED = 2

KICK_REASONS = frozenset({"removed by admin", "banned by admin"})
NAME_PROBLEMS = frozenset({"nick-taken", "nick-invalid", "banned"})
DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
DEFAULT_GIVE_UP_AFTER = 180.0
QUIT_TIMEOUT = 5.0


class SessionView(ChatListener):
    """What the session tells the user, on top of the server's events."""

    def status(self, text: str) -> None:
        """Progress worth showing: connecting, connection lost, retrying."""

    def failure(self, text: str) -> None:
        """The reason the session ends unsuccessfully."""

    def hint(self, text: str) -> None:
        """A mistake of the user's (unknown command, not connected …)."""

    def authenticated(self, server_name: str, new_fingerprint: str | None) -> None:
        """Logged in; C{new_fingerprint} is set when a first-seen server
        certificate was just remembered."""

    def ask_name(self, problem: str | None) -> Deferred[str | None]:
        """Ask the user for a name (C{problem}: why the last one was
        refused); fires with None when the user would rather leave."""
        raise NotImplementedError

    def named(self, name: str, rejoined: bool) -> None:
        """The server accepted C{name}; C{rejoined} after a reconnect."""

    def said(self, name: str, text: str) -> None:
        """Our own message went out."""

    def show_help(self) -> None:
        """``/help``."""

    def online(self, names: list[str]) -> None:
        """The answer to ``/online``."""

    def ip(self, host: str) -> None:
        """The answer to ``/ip``."""

    def request_stored(self, request_id: int) -> None:
        """The answer to ``/request``."""


class _Fatal(Exception):
    """Retrying cannot help (wrong passkey, refused certificate, banned)."""


class _Leave(Exception):
    """The user chose to leave while we were joining."""


class ChatSession:
    """
    @param connect: attaches a new protocol to a new connection; the default
        connects to C{address} with C{reactor}.
    @param backoff: seconds to wait before each reconnect attempt (the last
        one repeats).
    @param give_up_after: seconds after losing the connection before we stop
        trying.
    """

    def __init__(
        self,
        *,
        address: ServerAddress,
        passkey: str,
        view: SessionView,
        reactor: IReactorTime,
        name: str | None = None,
        connect: Callable[[ChatClientProtocol], Deferred[object]] | None = None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        give_up_after: float = DEFAULT_GIVE_UP_AFTER,
    ) -> None:
        self._address = address
        self._passkey = passkey
        self._view = view
        self._clock = reactor
        self._name = name
        self._connect = connect or self._connect_to_address
        self._backoff = tuple(backoff)
        self._give_up_after = give_up_after
        self._proto: ChatClientProtocol | None = None
        self._ready: ChatClientProtocol | None = None
        self._interruptible: Deferred[object] | None = None
        self._quitting = False

    @property
    def name(self) -> str | None:
        """The name the server accepted last."""
        return self._name

    def run(self) -> Deferred[int]:
        """Start; fires with the exit status when the session is over."""
        return Deferred.fromCoroutine(self._run())

    def handle_input(self, line: str) -> None:
        """Act on one line the user typed."""
        command = parse_input(line)
        match command:
            case Nothing():
                return
            case Mistake(hint):
                self._view.hint(hint)
            case Simple("help"):
                self._view.show_help()
            case Simple("exit"):
                self.quit()
            case _ if self._ready is None:
                self._view.hint("not connected: nothing was sent")
            case Say(text):
                self._ready.say(text)
                self._view.said(self._ready.name or "", text)
            case Request(text):
                self._ready.request(text).addCallbacks(
                    self._view.request_stored, self._report
                )
            case Simple("online"):
                self._ready.online().addCallbacks(self._view.online, self._report)
            case Simple("ip"):
                self._ready.ip().addCallbacks(self._view.ip, self._report)

    def quit(self) -> None:
        """Leave: send ``QUIT``, and stop waiting for anything else."""
        if self._quitting:
            return
        self._quitting = True
        if self._interruptible is not None:
            self._interruptible.cancel()
        proto = self._proto
        if proto is not None and not proto.done.called:
            proto.quit()
            # A server that never answers must not keep us here.
            timeout = self._clock.callLater(
                QUIT_TIMEOUT + proto.backlog_seconds(),
                proto.transport.abortConnection,
            )
            proto.done.addBoth(_cancel_if_active, timeout)

    def _report(self, failure: Failure) -> Failure | None:
        """Show why a request got no answer; anything unexpected goes on
        to be logged."""
        if failure.check(ServerError):
            self._view.error(failure.value.code, failure.value.text)
        elif failure.check(ConnectionDone, ConnectionLost):
            self._view.hint("the connection was lost before the server answered")
        elif failure.check(NoReply):
            self._view.hint(str(failure.value))
        else:
            return failure
        return None

    async def _interruptibly(self, waiting: Deferred[object]) -> object:
        """Wait for C{waiting}; L{quit} cancels it."""
        self._interruptible = waiting
        try:
            return await waiting
        finally:
            self._interruptible = None

    def _connect_to_address(self, proto: ChatClientProtocol) -> Deferred[object]:
        assert IReactorTCP.providedBy(self._clock)
        return connectProtocol(self._address.endpoint(self._clock), proto)

    async def _run(self) -> int:
        lost_at: float | None = None
        attempt = 0
        while not self._quitting:
            try:
                proto = await self._join(rejoin=lost_at is not None)
            except _Fatal as e:
                self._view.failure(str(e))
                return EXIT_ERROR
            except (_Leave, CancelledError):
                break
            except Exception as e:
                if self._quitting:
                    break
                if lost_at is None:
                    self._view.failure(f"could not join: {_describe(e)}")
                    return EXIT_ERROR
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                if self._clock.seconds() + delay - lost_at > self._give_up_after:
                    self._view.failure(
                        "could not reconnect for "
                        f"{self._clock.seconds() - lost_at:.0f} s ({_describe(e)}); "
                        "giving up"
                    )
                    return EXIT_ERROR
                self._view.status(
                    f"reconnect failed ({_describe(e)}); next try in {delay:g} s"
                )
                try:
                    await self._interruptibly(deferLater(self._clock, delay))
                except CancelledError:
                    break
                continue
            lost_at, attempt = None, 0
            reason = await proto.done
            self._ready = self._proto = None
            if reason is not None:
                return EXIT_KICKED if reason in KICK_REASONS else EXIT_OK
            if self._quitting:
                break
            lost_at = self._clock.seconds()
            self._view.status("connection lost; reconnecting")
        if self._proto is not None:
            await self._proto.done
        return EXIT_OK

    async def _join(self, rejoin: bool) -> ChatClientProtocol:
        """Connect, log in and take a name; raises L{_Fatal} when trying
        again cannot help."""
        address = self._address
        self._view.status(f"connecting to {address.host} port {address.port}")
        proto = ChatClientProtocol(
            self._passkey, self._view, address.peer_check(), clock=self._clock
        )
        await self._interruptibly(self._connect(proto))
        self._proto = proto
        try:
            await self._log_in(proto)
            await self._take_name(proto, rejoin)
        except BaseException:
            if not self._quitting:
                proto.transport.loseConnection()
            raise
        self._ready = proto
        self._view.named(proto.name or "", rejoin)
        return proto

    async def _log_in(self, proto: ChatClientProtocol) -> None:
        try:
            server_name = await proto.logged_in
        except ServerError as e:
            if e.code == "auth-failed":
                raise _Fatal("wrong passkey: the server refused the login") from e
            if e.code in ("banned", "auth-throttled"):
                raise _Fatal(f"the server refused us: {e}") from e
            raise
        except (FingerprintChanged, ServerAuthenticationError) as e:
            raise _Fatal(str(e)) from e
        new = self._address.seen if self._address.remember_if_new() else None
        self._view.authenticated(server_name, new)

    async def _take_name(self, proto: ChatClientProtocol, rejoin: bool) -> None:
        """Ask for our name; on the first join, let the user pick another
        while the server refuses it. On a rejoin the name may still be held
        by our lost connection, so a refusal is retried later."""
        name, problem = self._name, None
        while True:
            if name is None:
                name = await self._interruptibly(self._view.ask_name(problem))
                if name is None:
                    self.quit()
                    raise _Leave()
            try:
                self._name = await proto.nick(name)
            except ServerError as e:
                if rejoin or e.code not in NAME_PROBLEMS:
                    raise
                name, problem = None, e.text or e.code
            else:
                return


def _cancel_if_active(result: object, call: IDelayedCall) -> object:
    if call.active():
        call.cancel()
    return result


def _describe(error: BaseException) -> str:
    """A short human description of why a connection attempt failed."""
    text = str(error).strip()
    return text or type(error).__name__
