"""
One user's stay in the room: connect, log in, pick a name, turn typed lines
into requests, and after a connection is lost without ``BYE``, reconnect with
backoff and take the same name again, giving up after a while.

The session has no user interface either: it reports to a L{SessionView},
which the terminal and script faces implement. Time comes from the reactor
passed in, so tests drive reconnects with C{task.Clock}.

The name is asked before connecting (the server's login timeout would
otherwise run while the user thinks); if the server refuses it and the user
takes longer than that timeout to choose another, the session logs in again
with the new name instead of failing. Nothing a server says before it proved
it knows the secret is shown: login refusals are explained in our own words.

Leaving never cuts an answer short: requests already sent (the history
asked for on joining, ``/online`` …) get their answers before ``QUIT`` goes
out (L{ChatClientProtocol.quit}), and what is typed after leaving is not
sent. A message the server refuses (muted, too long …) is reported with its
text, so nobody takes the echoed line for one the room got.

Exit statuses: L{EXIT_OK} after ``BYE`` (quit, server shutdown),
L{EXIT_KICKED} when an administrator removed or banned us, L{EXIT_ERROR}
for anything that stopped us from chatting (wrong passkey, changed
certificate, server unreachable, reconnects given up, or a name the server
refused and no other given).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from partypool.client.commands import (
    Admin,
    Command,
    Mistake,
    Msg,
    Nothing,
    Request,
    Say,
    Simple,
    parse_input,
)
from partypool.client.connect import ServerAddress
from partypool.client.known_servers import Entry, FingerprintChanged
from partypool.client.protocol import (
    ChatClientProtocol,
    ChatListener,
    HistoryEntry,
    LoginTimeout,
    NoReply,
    NotPartyPool,
    ServerAuthenticationError,
    ServerError,
    WeakIterations,
)
from partypool.room.auth import DEFAULT_ITERATIONS, SCRAM_USERNAME

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_KICKED = 2

ROOT = "root"
KICK_REASONS = frozenset({"removed by admin", "banned by admin"})
NAME_PROBLEMS = frozenset({"nick-taken", "nick-invalid", "banned"})
DEFAULT_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
DEFAULT_GIVE_UP_AFTER = 180.0
#: Room messages shown on joining.
DEFAULT_HISTORY = 50
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
        """Our own message went out (the server tells only if it refuses
        it: see L{ChatListener.refused})."""

    def show_help(self) -> None:
        """``/help``."""

    def online(self, names: list[str]) -> None:
        """The answer to ``/online``."""

    def ip(self, host: str) -> None:
        """The answer to ``/ip``."""

    def request_stored(self, request_id: int) -> None:
        """The answer to ``/request``."""

    def private_sent(self, name: str, text: str) -> None:
        """Our private message reached C{name}."""

    def private_refused(self, name: str, said: str, code: str, text: str) -> None:
        """The server refused our private message C{said} to C{name} with
        ``ERR <code> <text>``. By default an L{error}."""
        self.error(code, text)

    def history(self, entries: list[HistoryEntry]) -> None:
        """The room's last messages, shown on joining (oldest first)."""

    def admin_output(self, line: str) -> None:
        """One line of an admin command's output."""

    def admin_done(self, command: str, status: int) -> None:
        """An admin command finished with C{status} (0 = success)."""


class _Fatal(Exception):
    """Retrying cannot help (wrong passkey, refused certificate, banned)."""


class _Leave(Exception):
    """The user chose to leave while we were joining (C{refused}: the
    server's reason for the last name, if it refused one)."""

    def __init__(self, refused: str | None = None) -> None:
        super().__init__(refused)
        self.refused = refused


class _Relogin(Exception):
    """The connection ended while the user chose a name: log in again."""


class _Refused(Exception):
    """The server refused the login in a way a later attempt may not meet."""


class ChatSession:
    """
    @param secret: the chat passkey, or the root password with C{root}.
    @param root: log in as root (SCRAM username ``root``) and join as
        ``root``; the admin commands work only then.
    @param min_iterations: the fewest PBKDF2 iterations accepted (the
        count remembered for the server, if higher, wins).
    @param history: room messages to show on joining (0: none).
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
        secret: str,
        view: SessionView,
        reactor: IReactorTime,
        name: str | None = None,
        root: bool = False,
        min_iterations: int = DEFAULT_ITERATIONS,
        history: int = DEFAULT_HISTORY,
        connect: Callable[[ChatClientProtocol], Deferred[object]] | None = None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        give_up_after: float = DEFAULT_GIVE_UP_AFTER,
    ) -> None:
        self._address = address
        self._secret = secret
        self._view = view
        self._clock = reactor
        self._root = root
        self._name = ROOT if root else name
        self._min_iterations = min_iterations
        # The floor of the connection being made, and the known-servers entry
        # that raised it above min_iterations, if one did.
        self._floor = min_iterations
        self._floor_entry: Entry | None = None
        self._history = history
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

    @property
    def root(self) -> bool:
        """Whether this session is root's."""
        return self._root

    def run(self) -> Deferred[int]:
        """Start; fires with the exit status when the session is over."""
        return Deferred.fromCoroutine(self._run())

    def handle_input(self, text: str) -> None:
        """Act on what the user typed (a line, or a paste of several)."""
        for command in parse_input(text):
            self._do(command)

    def _do(self, command: Command) -> None:
        match command:
            case Nothing():
                return
            case Mistake(hint):
                self._view.hint(hint)
            case Simple("help"):
                self._view.show_help()
            case Simple("exit"):
                self.quit()
            case Admin() if not self._root:
                self._view.hint("admin commands need a root login (--root)")
            case _ if self._quitting:
                self._view.hint("leaving: nothing was sent")
            case _ if self._ready is None:
                self._view.hint("not connected: nothing was sent")
            case Say(text):
                self._ready.say(text)
                self._view.said(self._ready.name or "", text)
            case Msg(name, text):
                self._ready.msg(name, text).addCallbacks(
                    lambda spelt: self._view.private_sent(spelt, text),
                    self._msg_refused,
                    errbackArgs=(name, text),
                )
            case Request(text):
                self._ready.request(text).addCallbacks(
                    self._view.request_stored, self._report
                )
            case Admin(line):
                self._ready.admin(line, self._view.admin_output).addCallbacks(
                    lambda status: self._view.admin_done(line, status), self._report
                )
            case Simple("online"):
                self._ready.online().addCallbacks(self._view.online, self._report)
            case Simple("ip"):
                self._ready.ip().addCallbacks(self._view.ip, self._report)

    def quit(self) -> None:
        """Leave: send ``QUIT`` (once the answers to requests already sent
        are in), and stop waiting for anything else."""
        if self._quitting:
            return
        self._quitting = True
        if self._interruptible is not None:
            self._interruptible.cancel()
        proto = self._proto
        if proto is not None and not proto.done.called:
            proto.quit()
            # A server that never answers must not keep us here.
            # It sends QUIT once the answers still due are in.
            timeout = self._clock.callLater(
                QUIT_TIMEOUT + proto.backlog_seconds(),
                proto.transport.abortConnection,
            )
            proto.done.addBoth(_cancel_if_active, timeout)

    def _msg_refused(self, failure: Failure, name: str, text: str) -> Failure | None:
        if failure.check(ServerError):
            error = failure.value
            self._view.private_refused(name, text, error.code, error.text)
            return None
        return self._report(failure)

    def _report(self, failure: Failure) -> Failure | None:
        """Show why a request got no answer; anything unexpected goes on
        to be logged."""
        if failure.check(ServerError):
            self._view.error(failure.value.code, failure.value.text)
        elif failure.check(ConnectionDone, ConnectionLost):
            if not self._quitting:  # after our own QUIT: no loss to report
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
        if self._name is None:
            # Asked before connecting: no login timeout runs while we wait.
            try:
                self._name = await self._interruptibly(self._view.ask_name(None))
            except CancelledError:
                return EXIT_OK
            if self._name is None:
                return EXIT_OK
        lost_at: float | None = None
        attempt = 0
        status = EXIT_OK
        while not self._quitting:
            try:
                proto = await self._join(rejoin=lost_at is not None)
            except _Fatal as e:
                self._view.failure(str(e))
                return EXIT_ERROR
            except _Leave as e:
                if e.refused is not None:
                    self._view.failure(f"never joined the room: {e.refused}")
                    status = EXIT_ERROR
                break
            except CancelledError:
                break
            except _Relogin:
                self._view.status("the login timed out meanwhile; logging in again")
                continue
            except Exception as e:
                if self._quitting:
                    break
                if lost_at is None:
                    self._view.failure(f"could not join: {self._describe(e)}")
                    return EXIT_ERROR
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                if self._clock.seconds() + delay - lost_at > self._give_up_after:
                    self._view.failure(
                        "could not reconnect for "
                        f"{self._clock.seconds() - lost_at:.0f} s "
                        f"({self._describe(e)}); giving up"
                    )
                    return EXIT_ERROR
                self._view.status(
                    f"reconnect failed ({self._describe(e)}); next try in {delay:g} s"
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
        return status

    async def _join(self, rejoin: bool) -> ChatClientProtocol:
        """Connect, log in and take a name; raises L{_Fatal} when trying
        again cannot help."""
        address = self._address
        self._view.status(f"connecting to {address.host} port {address.port}")
        self._floor, self._floor_entry = address.iteration_floor(self._min_iterations)
        proto = ChatClientProtocol(
            self._secret,
            self._view,
            address.peer_check(),
            clock=self._clock,
            username=ROOT if self._root else SCRAM_USERNAME,
            min_iterations=self._floor,
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
        # Asked before the view hears of the name: what the view does then
        # (a script at the end of its input leaves) comes after it.
        if self._history > 0 and not rejoin:
            proto.history(self._history).addCallbacks(self._view.history, self._report)
        self._view.named(proto.name or "", rejoin)
        return proto

    async def _log_in(self, proto: ChatClientProtocol) -> None:
        try:
            server_name = await proto.logged_in
        except ServerError as e:
            raise self._refusal(e) from e
        except WeakIterations as e:
            raise _Fatal(self._weak_iterations(e)) from e
        except NotPartyPool as e:
            where = f"{self._address.host} port {self._address.port}"
            raise _Fatal(f"{where}: {e}") from e
        except (FingerprintChanged, ServerAuthenticationError) as e:
            raise _Fatal(str(e)) from e
        new = (
            self._address.seen
            if self._address.remember_login(proto.iterations)
            else None
        )
        self._view.authenticated(server_name, new)

    def _refusal(self, error: ServerError) -> Exception:
        """Our own words for a login the server refused: its text came
        before it proved anything, so it is not shown."""
        code = error.code
        if code == "auth-failed":
            secret = "root password" if self._root else "passkey"
            text = f"the server refused the login: wrong {secret}"
            if self._root:
                text += " (or the server has no root password)"
            if self._address.tls and not self._address.trusted:
                text += (
                    ", or someone between you and the server is relaying the "
                    "connection (nothing was remembered)"
                )
            return _Fatal(text)
        if code == "auth-throttled":
            return _Fatal(
                "the server refuses logins from your address for a while "
                "(too many failed or pending logins); try again in a minute"
            )
        if code == "banned":
            return _Fatal("your address is banned from this server")
        known = {
            "server-full": "the server is full",
            "duplicate-ip": "someone from your address is already in the room "
            "(the server allows one session per address)",
            "timeout": "the server's login timeout ran out",
        }
        return _Refused(known.get(code, f"the server refused the login ({code})"))

    def _weak_iterations(self, error: WeakIterations) -> str:
        if self._floor_entry is None:
            return str(error)
        return (
            f"the server asked for {error.asked:,} PBKDF2 iterations, but it "
            f"asked for {error.minimum:,} before. An impostor does that to make "
            "your passkey cheap to guess, so nothing depending on it was sent. "
            "If the operator lowered the count on purpose, "
            + self._address.how_to_reset(self._floor_entry)
        )

    async def _take_name(self, proto: ChatClientProtocol, rejoin: bool) -> None:
        """Ask for our name; on the first join, let the user pick another
        while the server refuses it (and log in again if the connection
        ended meanwhile). On a rejoin the name may still be held by our lost
        connection, so a refusal is retried later."""
        name, problem = self._name, None
        while True:
            if name is None:
                name = await self._interruptibly(self._view.ask_name(problem))
                if name is None:
                    self.quit()
                    raise _Leave(problem)
                if proto.done.called:
                    self._name = name
                    raise _Relogin()
            try:
                self._name = await proto.nick(name)
            except ServerError as e:
                if e.code == "timeout" and not rejoin:
                    self._name = name
                    raise _Relogin() from e
                if rejoin or self._root or e.code not in NAME_PROBLEMS:
                    raise
                name, problem = None, e.text or e.code
            else:
                return

    def _describe(self, error: BaseException) -> str:
        """A short human description of why a connection attempt failed."""
        if isinstance(error, SSL.Error):
            return self._tls_trouble(error)
        if isinstance(error, LoginTimeout) and not error.greeted:
            if self._address.tls:
                return f"{error}: is this a Party Pool chat port?"
            return (
                f"{error}: a TLS server waits for a TLS client; "
                "drop --insecure-plain unless the server runs with --no-tls"
            )
        return _describe(error)

    def _tls_trouble(self, error: SSL.Error) -> str:
        text = str(error)
        if any(
            sign in text
            for sign in ("wrong version number", "packet length too long", "record")
        ):
            return (
                "the server does not speak TLS: if it is a Party Pool server "
                "run with --no-tls, connect with --insecure-plain"
            )
        return f"TLS failed ({_describe(error)}): is this a Party Pool chat port?"


def _cancel_if_active(result: object, call: IDelayedCall) -> object:
    if call.active():
        call.cancel()
    return result


def _describe(error: BaseException) -> str:
    """A short human description of why a connection attempt failed."""
    text = str(error).strip()
    return text or type(error).__name__
