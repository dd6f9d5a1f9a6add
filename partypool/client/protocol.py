"""
One chat connection, as the client sees it: greeting, SCRAM login, naming,
requests with their replies, and server events.

There is no user interface here, so the terminal client, the script mode,
tests and tools all drive the same code. Requests return Deferreds; events
that may arrive at any time go to a L{ChatListener}.

Login. Over TLS the client logs in with SCRAM-SHA-256-PLUS and
``tls-server-end-point`` channel binding (RFC 5929): the proof covers a hash
of the certificate the client saw, so a relay that shows its own certificate
and forwards the lines cannot pass it, and trust on first use pins only a
certificate that belongs to the server that knows the passkey. Over plain
TCP, SCRAM-SHA-256 without binding. The PBKDF2 iteration count the server
asks for is checked before the proof is computed: below C{min_iterations} the
login stops, so an impostor cannot make a captured proof cheap to crack.

Nothing from the server reaches the listener before ``AUTH-OK`` has proved
that the server knows the passkey: until then only the login's own lines
(``HELLO``, ``AUTH-CHALLENGE``, ``AUTH-OK``, ``ERR``, ``BYE``) are read, and
an ``ERR`` fails the login with its code (L{ServerError}) for the caller to
explain in its own words. With a clock, a server that does not greet within
L{GREETING_TIMEOUT} seconds, or does not finish the login within
L{LOGIN_TIMEOUT}, fails the login with L{LoginTimeout}.

Every line is handled in isolation: it is scrubbed of control characters
(C0, C1, bidi overrides: L{partypool.wire.scrub}) before it is parsed,
numbers must be ASCII digits, and a line that cannot be understood, or whose
handling fails, is logged and skipped; it never ends the connection. Verbs
the client does not know are ignored (the server may add events).

Replies are matched against one first-in first-out list of the lines sent
after login, each with the reply it expects (``SAY`` expects none: the server
answers it only to refuse it). A reply verb answers the oldest line expecting
it; ``SAY`` lines ahead of it were accepted silently and leave the list. An
``ERR`` answers the oldest line still waiting for its first answer (a
refused ``SAY`` goes to the listener's C{refused}, with what it said),
except ``ERR request-failed``, which comes later, when storing a validated
``REQUEST`` failed. ``ERR rate-limited`` means the server dropped some line
without saying which (at most one such ``ERR`` a second, and the dropped
lines get no reply): it goes to the listener, and with a clock every request
fails with L{NoReply} after L{REQUEST_TIMEOUT} seconds without an answer, so
nothing waits forever.
Multi-line replies (``HISTORY`` … ``HISTORY-END``, ``ADMIN-OUT`` …
``ADMIN-END``, ``ONLINE-PART`` … ``ONLINE``) go to the oldest line waiting
for their final verb. ``QUIT`` waits until every request sent before it
has its answer: the server closes on ``QUIT``, and leaving must not cut an
answer short (the history asked for on joining, say).

No line sent is ever made of user text with a line break in it:
L{send_line} refuses CR and LF, so text cannot become a protocol line of its
own (callers split pasted lines first, see L{partypool.client.commands}).
With a clock, outgoing lines are paced below the server's default rate limit
(L{PACE_RATE} lines a second after a burst of L{PACE_BURST}).

Use from other code (a tool, a test)::

    address = ServerAddress(host, port, pin=fingerprint)   # client.connect
    proto = ChatClientProtocol(passkey, MyListener(), address.peer_check())
    await connectProtocol(address.endpoint(reactor), proto)
    await proto.logged_in
    await proto.nick("bot-1")
    proto.say("hello")
"""

from __future__ import annotations

import base64
import datetime
import re
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from OpenSSL.crypto import X509
from scramp import ScramClient, ScramException
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    ISSLTransport,
)
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.room.auth import (
    CHANNEL_BINDING,
    DEFAULT_ITERATIONS,
    SCRAM_MECHANISM,
    SCRAM_PLUS_MECHANISM,
    SCRAM_USERNAME,
)
from partypool.tls import tls_server_end_point
from partypool.wire import PROTOCOL_VERSION, scrub

#: Seconds a request waits for its reply before it fails with L{NoReply}.
REQUEST_TIMEOUT = 15.0
#: Seconds from connecting to ``HELLO``: a server that says nothing is not
#: a Party Pool chat port (or expects TLS while we speak plain TCP).
GREETING_TIMEOUT = 10.0
#: Seconds from connecting to ``AUTH-OK`` (the server's own limit is 30 s).
LOGIN_TIMEOUT = 30.0
#: Before login a line this long is no greeting: the peer is something else.
MAX_LOGIN_LINE = 8192
#: After login: room for a server with a --max-line far above the default.
MAX_LINE = 1 << 20
#: The server's default C{--max-request}: longer requests are refused here.
MAX_REQUEST = 1000
#: Outgoing pace: below the server's default 5 lines/s, burst 10.
PACE_RATE = 4.0
PACE_BURST = 8
#: Without a clock, at most this many sent SAYs are remembered.
_MAX_SAYS = 256
#: Shown of a peer's first line when it is not a Party Pool greeting.
_QUOTE = 60

_DIGITS = re.compile("[0-9]{1,18}")
_LOGIN_VERBS = frozenset({"HELLO", "AUTH-CHALLENGE", "AUTH-OK", "ERR", "BYE"})

PeerCheck = Callable[[X509 | None], None]
"""Called with the server's TLS certificate before anything is sent that
depends on the passkey; raises to refuse the server."""


class ServerError(Exception):
    """The server answered a request with ``ERR <code> <text>``."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text

    def __str__(self) -> str:
        return f"{self.code}: {self.text}" if self.text else self.code


class NoReply(Exception):
    """The server did not answer a request in time (it drops over-rate
    lines without a reply of their own)."""

    def __str__(self) -> str:
        return "the server did not answer (the line may have been dropped)"


class ServerAuthenticationError(Exception):
    """The server did not prove that it knows the passkey, or asked for
    something a genuine server would not: it may be an impostor, so the
    connection is dropped."""


class NotPartyPool(ServerAuthenticationError):
    """The peer's first line is no Party Pool greeting."""

    def __init__(self, first_line: str) -> None:
        shown = first_line[:_QUOTE] + ("…" if len(first_line) > _QUOTE else "")
        super().__init__(f"it is not a Party Pool chat port (it said {shown!r})")


class WeakIterations(ServerAuthenticationError):
    """The server asked for fewer PBKDF2 iterations than we accept."""

    def __init__(self, asked: int, minimum: int) -> None:
        super().__init__(
            f"the server asked for {asked:,} PBKDF2 iterations, fewer than the "
            f"{minimum:,} expected. An impostor does that to make your passkey "
            "cheap to guess from the login, so nothing depending on it was sent. "
            "If the operator lowered the count on purpose, allow it with "
            f"--min-iterations {asked}."
        )
        self.asked = asked
        self.minimum = minimum


class LoginTimeout(Exception):
    """The server did not greet (C{greeted} false) or did not finish the
    login in time."""

    def __init__(self, greeted: bool, seconds: float) -> None:
        what = "finish the login" if greeted else "greet us"
        super().__init__(f"the server did not {what} within {seconds:g} s")
        self.greeted = greeted


@attrs.frozen
class HistoryEntry:
    """One remembered room event: ``HISTORY <id> <time> <event line>``."""

    id: int
    time: datetime.datetime
    verb: str  # CHAT or NOTICE
    name: str | None  # the speaker of a CHAT
    text: str


@attrs.define(eq=False)
class _Sent:
    """One line sent after login, waiting for its reply."""

    expects: str | None  # the reply verb; None for SAY
    waiting: Deferred[Any] | None = None
    timer: IDelayedCall | None = None
    # A REQUEST that passed the server's checks (a later line was answered)
    # waits only for OK REQUEST or ERR request-failed.
    validated: bool = False
    sent_at: float = 0.0
    # Lines of a multi-line reply (HISTORY, ADMIN-OUT, ONLINE-PART) go here.
    part: Callable[[str], None] | None = None
    # What a SAY said, to tell the user which message a refusal was for.
    text: str = ""


class ChatListener:
    """
    Receives the events a server may send at any time. Every method does
    nothing here; subclass and override what you need.
    """

    def chat(self, name: str, text: str) -> None:
        """``CHAT``: someone else said something."""

    def private(self, name: str, text: str) -> None:
        """``PRIVATE``: C{name} wrote to us alone."""

    def joined(self, name: str) -> None:
        """``JOINED``: someone came in."""

    def left(self, name: str, reason: str) -> None:
        """``LEFT``: someone went away, and why."""

    def notice(self, text: str) -> None:
        """``NOTICE``: the administrator says something."""

    def requested(self, request_id: int, name: str, text: str) -> None:
        """``REQUESTED`` (root only): a user filed a request."""

    def shutdown(self, seconds: int, text: str) -> None:
        """``SHUTDOWN``: the server closes in C{seconds}."""

    def error(self, code: str, text: str) -> None:
        """An ``ERR`` that answers no pending request (``rate-limited``:
        some line was dropped, the server does not say which)."""

    def refused(self, said: str, code: str, text: str) -> None:
        """The server refused our ``SAY`` C{said} with ``ERR <code> <text>``
        (muted, too long …): nobody got it. By default an L{error}."""
        self.error(code, text)

    def bye(self, reason: str) -> None:
        """``BYE``: the server is closing this connection on purpose."""


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def _unb64(data: str) -> str:
    return base64.b64decode(data.encode("ascii"), validate=True).decode("utf-8")


def ascii_number(text: str) -> int:
    """A non-negative number written in ASCII digits; ValueError otherwise
    (C{int()} would also take ``²``, ``٣`` or `` 7_0 ``)."""
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"not a number: {text[:20]!r}")
    return int(text)


def parse_history(rest: str) -> HistoryEntry:
    """``<id> <time> CHAT <name> <text>`` or ``<id> <time> NOTICE <text>``;
    ValueError for anything else."""
    number, _, rest = rest.partition(" ")
    stamp, _, event = rest.partition(" ")
    verb, _, event = event.partition(" ")
    when = datetime.datetime.fromisoformat(stamp)
    if when.tzinfo is None:
        raise ValueError("history time without a zone")
    if verb == "CHAT":
        name, _, text = event.partition(" ")
        if not name:
            raise ValueError("CHAT without a name")
        return HistoryEntry(ascii_number(number), when, verb, name, text)
    if verb == "NOTICE":
        return HistoryEntry(ascii_number(number), when, verb, None, event)
    raise ValueError(f"unknown history event {verb[:20]!r}")


@implementer(IHandshakeListener)
class ChatClientProtocol(LineReceiver):
    """
    A client connection. Login starts by itself when the server's ``HELLO``
    arrives; L{logged_in} fires with the server name once the server has
    proved it knows the secret. L{done} fires when the connection is gone,
    with the ``BYE`` reason or C{None} when it was lost without one.

    @param username: the SCRAM username: ``chat`` with the passkey, ``root``
        with the root password.
    @param min_iterations: the fewest PBKDF2 iterations accepted.
    @ivar server_name: from the server's ``HELLO``, once it arrived.
    @ivar name: the name the server accepted, once it did.
    @ivar iterations: the server's PBKDF2 count, once it asked.
    """

    delimiter = b"\n"
    # Before login nothing a real server sends comes near this size;
    # after it, ONLINE may list many names on one line.
    MAX_LENGTH = MAX_LOGIN_LINE
    _log = Logger()

    def __init__(
        self,
        passkey: str,
        listener: ChatListener | None = None,
        check_peer: PeerCheck | None = None,
        clock: IReactorTime | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        *,
        username: str = SCRAM_USERNAME,
        min_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        self.listener = listener if listener is not None else ChatListener()
        self.logged_in: Deferred[str] = Deferred()
        self.done: Deferred[str | None] = Deferred()
        self.server_name: str | None = None
        self.name: str | None = None
        self.iterations: int | None = None
        self._secret = passkey
        self._username = username
        self._min_iterations = min_iterations
        self._scram: ScramClient | None = None
        self._greeted = False
        self._authenticated = False
        self._check_peer = check_peer
        self._peer_checked = check_peer is None
        self._bye_reason: str | None = None
        self._clock = clock
        self._request_timeout = request_timeout
        self._login_timers: list[IDelayedCall] = []
        self._sent: list[_Sent] = []
        self._outbox: deque[tuple[bytes, _Sent | None]] = deque()
        self._tokens = float(PACE_BURST)
        self._tokens_at = clock.seconds() if clock is not None else 0.0
        self._flush_call: IDelayedCall | None = None
        # QUIT, held back until every request sent has its answer.
        self._quit_line: str | None = None
        self._handlers: dict[str, Callable[[str], None]] = {
            "HELLO": self._on_HELLO,
            "AUTH-CHALLENGE": self._on_AUTH_CHALLENGE,
            "AUTH-OK": self._on_AUTH_OK,
            "ERR": self._on_ERR,
            "BYE": self._on_BYE,
            "OK": self._on_OK,
            "ONLINE": self._on_ONLINE,
            "ONLINE-PART": self._on_ONLINE_PART,
            "IP": self._on_IP,
            "PONG": self._on_PONG,
            "PING": self._on_PING,
            "HISTORY": self._on_HISTORY,
            "HISTORY-END": self._on_HISTORY_END,
            "ADMIN-OUT": self._on_ADMIN_OUT,
            "ADMIN-END": self._on_ADMIN_END,
            "CHAT": self._on_CHAT,
            "PRIVATE": self._on_PRIVATE,
            "JOINED": self._on_JOINED,
            "LEFT": self._on_LEFT,
            "NOTICE": self._on_NOTICE,
            "REQUESTED": self._on_REQUESTED,
            "SHUTDOWN": self._on_SHUTDOWN,
        }

    # -- transport events -------------------------------------------------

    def connectionMade(self) -> None:
        if self._clock is None:
            return
        self._login_timers = [
            self._clock.callLater(GREETING_TIMEOUT, self._timed_out, False),
            self._clock.callLater(LOGIN_TIMEOUT, self._timed_out, True),
        ]

    def handshakeCompleted(self) -> None:
        """Check the server's certificate before any line is read or sent."""
        if self._check_peer is None:
            return  # TLS without pinning: the caller chose not to check
        try:
            self._check_peer(self.transport.getPeerCertificate())
        except Exception:
            self._fail_login(Failure())
        else:
            self._peer_checked = True

    def lineReceived(self, line: bytes) -> None:
        # Scrubbed here, once: nothing a server sends reaches a view unscrubbed.
        text = scrub(line.removesuffix(b"\r").decode("utf-8", "replace"))
        verb, _, rest = text.partition(" ")
        if verb.isascii():
            verb = verb.upper()  # ASCII only: "ſay" is no verb
        if not self._greeted and verb != "HELLO" and not self.logged_in.called:
            self._fail_login(Failure(NotPartyPool(text)))
            return
        if not self._authenticated and verb not in _LOGIN_VERBS:
            self._log.debug("ignoring {verb} before login", verb=verb[:20])
            return
        handler = self._handlers.get(verb)
        if handler is None:
            self._log.debug("ignoring unknown server line {line!r}", line=text[:80])
            return
        # One bad line never costs the session: log it and go on.
        try:
            handler(rest)
        except ValueError as e:
            self._log.warn(
                "skipping a malformed server line {line!r}: {why}",
                line=text[:80],
                why=e,
            )
        except Exception:
            self._log.failure("skipping a server line: {line!r}", line=text[:80])

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self._authenticated:
            self._fail_login(Failure(NotPartyPool(line[:_QUOTE].decode("latin-1"))))
            return
        super().lineLengthExceeded(line)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self._quit_line = None
        self._fail_login(reason)
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        entries = self._sent + [e for _, e in self._outbox if e is not None]
        self._sent, self._outbox = [], deque()
        failure = reason if isinstance(reason, Failure) else Failure(ConnectionDone())
        for entry in entries:
            self._settle(entry, failure)
        self.done.callback(self._bye_reason)

    # -- requests ---------------------------------------------------------

    def nick(self, name: str) -> Deferred[str]:
        """Ask for C{name}; fires with the accepted name or fails with
        L{ServerError} (``nick-taken``, ``nick-invalid``, ``banned`` …)."""
        return self._request("NICK", f"NICK {name}")

    def say(self, text: str) -> None:
        """Send a room message; the server answers only if it refuses it."""
        self._send(f"SAY {text}", _Sent(None, text=text))

    def msg(self, name: str, text: str) -> Deferred[str]:
        """A private message to C{name}; fires with the name as the server
        spells it, or fails with L{ServerError} (``no-such-user``, ``muted``)."""
        return self._request("MSG", f"MSG {name} {text}")

    def online(self) -> Deferred[list[str]]:
        """Fires with the names in the room, this client's own included."""
        names: list[str] = []
        d = self._request("ONLINE", "ONLINE", lambda rest: names.extend(rest.split()))
        return d.addCallback(lambda _: names)

    def ip(self) -> Deferred[str]:
        """Fires with this client's address as the server sees it."""
        return self._request("IP", "IP")

    def request(self, text: str) -> Deferred[int]:
        """Store a request for the administrator; fires with its id once it
        is stored durably, or fails with L{ServerError}. Text the server
        would refuse (empty, or longer than L{MAX_REQUEST}) is refused here,
        without sending anything."""
        cleaned = scrub(text).strip()
        if not cleaned:
            return fail(ServerError("bad-syntax", "the request is empty"))
        if len(cleaned) > MAX_REQUEST:
            return fail(
                ServerError(
                    "text-too-long",
                    f"a request is at most {MAX_REQUEST} characters "
                    f"(this one has {len(cleaned)})",
                )
            )
        return self._request("REQUEST", f"REQUEST {text}")

    def history(self, count: int | None = None) -> Deferred[list[HistoryEntry]]:
        """The room's last messages, oldest first (C{count}: how many at
        most; the server's default without). Lines that cannot be read are
        skipped."""
        entries: list[HistoryEntry] = []

        def part(rest: str) -> None:
            try:
                entries.append(parse_history(rest))
            except ValueError:
                self._log.info("skipping a history line: {line!r}", line=rest[:80])

        line = "HISTORY" if count is None else f"HISTORY {count}"
        d = self._request("HISTORY-END", line, part)
        return d.addCallback(lambda _: entries)

    def admin(self, command: str, output: Callable[[str], None]) -> Deferred[int]:
        """Run one admin command (root only); each ``ADMIN-OUT`` line goes
        to C{output} as it arrives; fires with the exit status."""
        return self._request("ADMIN-END", f"ADMIN {command}", output)

    def ping(self, token: str) -> Deferred[str]:
        """Fires with the token of the matching ``PONG`` (round-trip probe)."""
        return self._request("PONG", f"PING {token}")

    def quit(self, reason: str | None = None) -> Deferred[str | None]:
        """Leave; returns L{done}. Lines still waiting for their turn go out
        first, and ``QUIT`` itself only once every request sent so far has
        its answer (or, with a clock, has timed out): the server closes the
        connection on ``QUIT``, so an answer still on its way would be lost.
        See L{backlog_seconds}."""
        if self._quit_line is None and not self.done.called:
            self._quit_line = "QUIT" if reason is None else f"QUIT {reason}"
            self._quit_when_answered()
        return self.done

    def _quit_when_answered(self) -> None:
        if self._quit_line is None:
            return
        queued = (entry for _, entry in self._outbox if entry is not None)
        if any(entry.waiting is not None for entry in [*self._sent, *queued]):
            return
        line, self._quit_line = self._quit_line, None
        self.send_line(line)

    def send_line(self, line: str) -> None:
        """Send one raw protocol line (tests and tools use it directly);
        no reply is expected."""
        self._send(line, None)

    def backlog_seconds(self) -> float:
        """At most about how long until a L{quit} now sends ``QUIT``: the
        lines waiting for their turn, then the answers still due."""
        if self._clock is None:
            return 0.0
        queued = (entry for _, entry in self._outbox if entry is not None)
        waiting = any(entry.waiting is not None for entry in [*self._sent, *queued])
        return len(self._outbox) / PACE_RATE + (
            self._request_timeout if waiting else 0.0
        )

    # -- sending and matching replies -------------------------------------

    def _send(self, line: str, entry: _Sent | None) -> None:
        if "\n" in line or "\r" in line:
            # Text with a line break would be two protocol lines.
            raise ValueError("a protocol line cannot contain a line break")
        self._outbox.append((line.encode("utf-8"), entry))
        self._flush()

    def _flush(self) -> None:
        """Send what the pace allows now; come back for the rest."""
        self._flush_call = None
        while self._outbox:
            if self._clock is not None:
                now = self._clock.seconds()
                self._tokens = min(
                    float(PACE_BURST),
                    self._tokens + max(0.0, now - self._tokens_at) * PACE_RATE,
                )
                self._tokens_at = now
                if self._tokens < 1:
                    delay = (1 - self._tokens) / PACE_RATE
                    self._flush_call = self._clock.callLater(delay, self._flush)
                    return
                self._tokens -= 1
            data, entry = self._outbox.popleft()
            if entry is not None:
                self._track(entry)
            self.sendLine(data)

    def _track(self, entry: _Sent) -> None:
        """Remember a line being sent; forget SAYs too old to be refused
        still, so a long chat does not grow the list."""
        if self._clock is not None:
            entry.sent_at = now = self._clock.seconds()
            if entry.waiting is not None:
                entry.timer = self._clock.callLater(
                    self._request_timeout, self._expire, entry
                )
            horizon = now - self._request_timeout
            self._sent = [
                e for e in self._sent if e.expects is not None or e.sent_at > horizon
            ]
        elif entry.expects is None:
            says = [e for e in self._sent if e.expects is None]
            if len(says) >= _MAX_SAYS:
                self._sent.remove(says[0])
        self._sent.append(entry)

    def _request(
        self,
        reply_verb: str,
        line: str,
        part: Callable[[str], None] | None = None,
    ) -> Deferred[Any]:
        if self.done.called:
            # The line could never be answered; say so instead of hanging.
            return fail(ConnectionDone("the connection is closed"))
        waiting: Deferred[Any] = Deferred()
        self._send(line, _Sent(reply_verb, waiting, part=part))
        return waiting

    def _expire(self, entry: _Sent) -> None:
        entry.timer = None
        # A validated REQUEST will still be answered (OK REQUEST or ERR
        # request-failed): it stays, answerless, so that late reply cannot
        # be taken for the next REQUEST's. Anything else was dropped.
        if entry in self._sent and not entry.validated:
            self._sent.remove(entry)
        self._settle(entry, Failure(NoReply()))

    def _settle(self, entry: _Sent, result: object) -> None:
        """Answer C{entry}'s Deferred, once."""
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        waiting, entry.waiting = entry.waiting, None
        if waiting is None:
            return
        if isinstance(result, Failure):
            waiting.errback(result)
        else:
            waiting.callback(result)
        self._quit_when_answered()

    def _answer(self, reply_verb: str, value: object) -> None:
        """The oldest line expecting C{reply_verb} has its answer: SAYs
        before it were accepted, REQUESTs before it passed the checks."""
        index = next(
            (i for i, e in enumerate(self._sent) if e.expects == reply_verb), None
        )
        if index is None:
            self._log.debug("unexpected {verb} reply", verb=reply_verb)
            return
        entry = self._sent.pop(index)
        ahead = self._sent[:index]
        self._sent[:index] = [e for e in ahead if e.expects is not None]
        # The server answers REQUEST once stored, maybe after later lines.
        if reply_verb != "REQUEST":
            for other in ahead:
                if other.expects == "REQUEST":
                    other.validated = True
        self._settle(entry, value)

    def _part(self, final_verb: str, rest: str) -> None:
        """One line of a multi-line reply: to the oldest line waiting for
        C{final_verb}."""
        entry = next((e for e in self._sent if e.expects == final_verb), None)
        if entry is None or entry.part is None:
            self._log.debug("unexpected part of a {verb} reply", verb=final_verb)
            return
        entry.part(rest)

    def _answer_error(self, error: ServerError) -> None:
        if error.code == "rate-limited":
            self.listener.error(error.code, error.text)
            return
        if error.code == "request-failed":
            candidates = [e for e in self._sent if e.expects == "REQUEST"]
        else:
            candidates = [e for e in self._sent if not e.validated]
        if not candidates:
            self.listener.error(error.code, error.text)
            return
        entry = candidates[0]
        self._sent.remove(entry)
        if entry.expects is None:
            self.listener.refused(entry.text, error.code, error.text)
        else:
            self._settle(entry, Failure(error))

    # -- login ------------------------------------------------------------

    def _fail_login(self, reason: Failure) -> None:
        """Fail L{logged_in} (once) and drop the connection."""
        self._stop_login_timers()
        if not self.logged_in.called:
            self.logged_in.errback(reason)
            self.transport.loseConnection()

    def _stop_login_timers(self) -> None:
        timers, self._login_timers = self._login_timers, []
        for timer in timers:
            if timer.active():
                timer.cancel()

    def _timed_out(self, greeting_done: bool) -> None:
        if greeting_done or not self._greeted:
            seconds = LOGIN_TIMEOUT if greeting_done else GREETING_TIMEOUT
            self._fail_login(Failure(LoginTimeout(self._greeted, seconds)))

    def _channel_binding(self) -> tuple[str, bytes] | None:
        """``tls-server-end-point`` data for the certificate this TLS
        connection shows; None over plain TCP."""
        if not ISSLTransport.providedBy(self.transport):
            return None
        certificate = self.transport.getPeerCertificate()
        if certificate is None:
            raise ServerAuthenticationError("the server showed no TLS certificate")
        return CHANNEL_BINDING, tls_server_end_point(certificate.to_cryptography())

    def _on_HELLO(self, rest: str) -> None:
        if self._greeted:
            return
        self._greeted = True
        version, _, server_name = rest.partition(" ")
        if not self._peer_checked:
            self._fail_login(
                Failure(ServerAuthenticationError("TLS certificate not checked"))
            )
            return
        if not version.startswith("partypool/"):
            self._fail_login(Failure(NotPartyPool(f"HELLO {rest}")))
            return
        if version != PROTOCOL_VERSION:
            self._fail_login(
                Failure(
                    ServerAuthenticationError(
                        f"server speaks {version!r}, not {PROTOCOL_VERSION}"
                    )
                )
            )
            return
        try:
            binding = self._channel_binding()
        except ServerAuthenticationError:
            self._fail_login(Failure())
            return
        mechanism = SCRAM_MECHANISM if binding is None else SCRAM_PLUS_MECHANISM
        self._scram = ScramClient(
            [mechanism], self._username, self._secret, channel_binding=binding
        )
        self.server_name = server_name
        first = self._scram.get_client_first()
        self.send_line(f"AUTH {mechanism} {_b64(first)}")

    def _on_AUTH_CHALLENGE(self, rest: str) -> None:
        if self._scram is None or self.iterations is not None:
            return
        try:
            self._scram.set_server_first(_unb64(rest))
        except (ScramException, ValueError) as e:
            self._fail_login(Failure(ServerAuthenticationError(f"bad challenge: {e}")))
            return
        self.iterations = int(self._scram.iterations)
        # Checked before the proof exists: an impostor asking for a cheap
        # count gets nothing to crack.
        if self.iterations < self._min_iterations:
            self._fail_login(
                Failure(WeakIterations(self.iterations, self._min_iterations))
            )
            return
        final = self._scram.get_client_final()
        self.send_line(f"AUTH-RESPONSE {_b64(final)}")

    def _on_AUTH_OK(self, rest: str) -> None:
        if self._scram is None or self.iterations is None or self._authenticated:
            return
        try:
            self._scram.set_server_final(_unb64(rest))
        except (ScramException, ValueError) as e:
            self._fail_login(
                Failure(
                    ServerAuthenticationError(
                        f"the server did not prove it knows the passkey ({e})"
                    )
                )
            )
        else:
            self._authenticated = True
            self.MAX_LENGTH = MAX_LINE
            self._stop_login_timers()
            self.logged_in.callback(self.server_name or "")

    # -- replies ----------------------------------------------------------

    def _on_OK(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        if what == "NICK":
            self.name = value
            self._answer("NICK", value)
        elif what == "REQUEST":
            self._answer("REQUEST", ascii_number(value))
        elif what == "MSG":
            self._answer("MSG", value)

    def _on_ONLINE_PART(self, rest: str) -> None:
        self._part("ONLINE", rest)

    def _on_ONLINE(self, rest: str) -> None:
        count, _, names = rest.partition(" ")
        ascii_number(count)
        self._part("ONLINE", names)  # after any ONLINE-PART lines
        self._answer("ONLINE", None)

    def _on_IP(self, rest: str) -> None:
        self._answer("IP", rest)

    def _on_PONG(self, rest: str) -> None:
        self._answer("PONG", rest)

    def _on_HISTORY(self, rest: str) -> None:
        self._part("HISTORY-END", rest)

    def _on_HISTORY_END(self, rest: str) -> None:
        self._answer("HISTORY-END", ascii_number(rest.strip() or "0"))

    def _on_ADMIN_OUT(self, rest: str) -> None:
        self._part("ADMIN-END", rest)

    def _on_ADMIN_END(self, rest: str) -> None:
        self._answer("ADMIN-END", ascii_number(rest.strip()))

    def _on_ERR(self, rest: str) -> None:
        code, _, text = rest.partition(" ")
        error = ServerError(code, text)
        if not self._authenticated:
            self._fail_login(Failure(error))
        else:
            self._answer_error(error)

    # -- events -----------------------------------------------------------

    def _on_PING(self, rest: str) -> None:
        self.send_line(f"PONG {rest}" if rest else "PONG")

    def _on_CHAT(self, rest: str) -> None:
        name, _, text = rest.partition(" ")
        self.listener.chat(name, text)

    def _on_PRIVATE(self, rest: str) -> None:
        name, _, text = rest.partition(" ")
        self.listener.private(name, text)

    def _on_JOINED(self, rest: str) -> None:
        self.listener.joined(rest)

    def _on_LEFT(self, rest: str) -> None:
        name, _, reason = rest.partition(" ")
        self.listener.left(name, reason)

    def _on_NOTICE(self, rest: str) -> None:
        self.listener.notice(rest)

    def _on_REQUESTED(self, rest: str) -> None:
        number, _, rest = rest.partition(" ")
        name, _, text = rest.partition(" ")
        self.listener.requested(ascii_number(number), name, text)

    def _on_SHUTDOWN(self, rest: str) -> None:
        seconds, _, text = rest.partition(" ")
        self.listener.shutdown(ascii_number(seconds), text)

    def _on_BYE(self, rest: str) -> None:
        self._bye_reason = rest
        if self._authenticated:
            self.listener.bye(rest)
