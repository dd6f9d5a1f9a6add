"""
One chat connection, as the client sees it: greeting, SCRAM-SHA-256 login,
naming, requests with their replies, and server events.

There is no user interface here, so the terminal client, the script mode,
benchmark load generators and tests all drive the same code. Requests return
Deferreds; events that may arrive at any time go to a L{ChatListener}.

Replies are matched against one first-in first-out list of the lines sent
after login, each with the reply it expects (``SAY`` expects none: the server
answers it only to refuse it). A reply verb answers the oldest line expecting
it; ``SAY`` lines ahead of it were accepted silently and leave the list. An
``ERR`` answers the oldest line still waiting for its first answer (a
refused ``SAY`` goes to the listener), except ``ERR request-failed``, which
comes later, when storing a validated ``REQUEST`` failed. ``ERR rate-limited``
means the server dropped some line without saying which (at most one such
``ERR`` a second, and the dropped lines get no reply): it goes to the
listener, and with a clock every request fails with L{NoReply} after
L{REQUEST_TIMEOUT} seconds without an answer, so nothing waits forever.

Every line from the server is scrubbed of control characters (C0, C1, bidi
overrides: L{partypool.wire.scrub}) before it is parsed, so no name, text,
reason or error a server sends can reach a terminal with an escape sequence
in it, not even from a server that has not proved it knows the passkey.

With a clock, outgoing lines are also paced below the server's default rate
limit (L{PACE_RATE} lines a second after a burst of L{PACE_BURST}).

Use from other code (a load generator, a test)::

    address = ServerAddress(host, port, pin=fingerprint)   # client.connect
    proto = ChatClientProtocol(passkey, MyListener(), address.peer_check())
    await connectProtocol(address.endpoint(reactor), proto)
    await proto.logged_in
    await proto.nick("bench-1")
    proto.say("hello")
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from OpenSSL.crypto import X509
from scramp import ScramClient, ScramException
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from partypool.room.auth import SCRAM_MECHANISM, SCRAM_USERNAME
from partypool.wire import PROTOCOL_VERSION, scrub

#: Seconds a request waits for its reply before it fails with L{NoReply}.
REQUEST_TIMEOUT = 15.0
#: The server's default C{--max-request}: longer requests are refused here.
MAX_REQUEST = 1000
#: Outgoing pace: below the server's default 5 lines/s, burst 10.
PACE_RATE = 4.0
PACE_BURST = 8
#: Without a clock, at most this many sent SAYs are remembered.
_MAX_SAYS = 256

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


class ServerAuthenticationError(Exception):
    """The server did not prove that it knows the passkey, or spoke another
    protocol: it may be an impostor, so the connection is dropped."""


class ChatListener:
    """
    Receives the events a server may send at any time. Every method does
    nothing here; subclass and override what you need (a load generator may
    only care about L{chat}).
    """

    def chat(self, name: str, text: str) -> None:
        """``CHAT``: someone else said something."""

    def joined(self, name: str) -> None:
        """``JOINED``: someone came in."""

    def left(self, name: str, reason: str) -> None:
        """``LEFT``: someone went away, and why."""

    def notice(self, text: str) -> None:
        """``NOTICE``: the administrator says something."""

    def shutdown(self, seconds: int, text: str) -> None:
        """``SHUTDOWN``: the server closes in C{seconds}."""

    def error(self, code: str, text: str) -> None:
        """An ``ERR`` that answers no pending request (e.g. a refused SAY)."""

    def bye(self, reason: str) -> None:
        """``BYE``: the server is closing this connection on purpose."""


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def _unb64(data: str) -> str:
    return base64.b64decode(data.encode("ascii"), validate=True).decode("utf-8")


@implementer(IHandshakeListener)
class ChatClientProtocol(LineReceiver):
    """
    A client connection. Login starts by itself when the server's ``HELLO``
    arrives; L{logged_in} fires with the server name once the server has
    proved it knows the passkey. L{done} fires when the connection is gone,
    with the ``BYE`` reason or C{None} when it was lost without one.

    @ivar server_name: from the server's ``HELLO``, once it arrived.
    @ivar name: the name the server accepted, once it did.
    """

    delimiter = b"\n"
    # ONLINE lists every name on one line; leave room for big rooms.
    MAX_LENGTH = 1 << 20
    _log = Logger()

    def __init__(
        self,
        passkey: str,
        listener: ChatListener | None = None,
        check_peer: PeerCheck | None = None,
        clock: IReactorTime | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.listener = listener if listener is not None else ChatListener()
        self.logged_in: Deferred[str] = Deferred()
        self.done: Deferred[str | None] = Deferred()
        self.server_name: str | None = None
        self.name: str | None = None
        self._scram = ScramClient([SCRAM_MECHANISM], SCRAM_USERNAME, passkey)
        self._check_peer = check_peer
        self._peer_checked = check_peer is None
        self._bye_reason: str | None = None
        self._clock = clock
        self._request_timeout = request_timeout
        self._sent: list[_Sent] = []
        self._outbox: deque[tuple[bytes, _Sent | None]] = deque()
        self._tokens = float(PACE_BURST)
        self._tokens_at = clock.seconds() if clock is not None else 0.0
        self._flush_call: IDelayedCall | None = None

    # -- transport events -------------------------------------------------

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
        handler = getattr(self, "_on_" + verb.upper().replace("-", "_"), None)
        if handler is None:
            self._log.debug("ignoring unknown server line {line!r}", line=text)
        else:
            handler(rest)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
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
        self._send(f"SAY {text}", _Sent(None))

    def online(self) -> Deferred[list[str]]:
        """Fires with the names in the room, this client's own included."""
        return self._request("ONLINE", "ONLINE")

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

    def ping(self, token: str) -> Deferred[str]:
        """Fires with the token of the matching ``PONG`` (round-trip probe)."""
        return self._request("PONG", f"PING {token}")

    def quit(self, reason: str | None = None) -> Deferred[str | None]:
        """Leave; returns L{done}. Lines still waiting for their turn (see
        L{backlog_seconds}) go out first."""
        self.send_line("QUIT" if reason is None else f"QUIT {reason}")
        return self.done

    def send_line(self, line: str) -> None:
        """Send one raw protocol line (tests and tools use it directly);
        no reply is expected."""
        self._send(line, None)

    def backlog_seconds(self) -> float:
        """About how long until the lines waiting to be sent are sent."""
        if self._clock is None or not self._outbox:
            return 0.0
        return len(self._outbox) / PACE_RATE

    # -- sending and matching replies -------------------------------------

    def _send(self, line: str, entry: _Sent | None) -> None:
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
                    self._tokens + (now - self._tokens_at) * PACE_RATE,
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

    def _request(self, reply_verb: str, line: str) -> Deferred[Any]:
        if self.done.called:
            # The line could never be answered; say so instead of hanging.
            return fail(ConnectionDone("the connection is closed"))
        waiting: Deferred[Any] = Deferred()
        self._send(line, _Sent(reply_verb, waiting))
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
            self.listener.error(error.code, error.text)  # a refused SAY
        else:
            self._settle(entry, Failure(error))

    # -- login ------------------------------------------------------------

    def _fail_login(self, reason: Failure) -> None:
        """Fail L{logged_in} (once) and drop the connection."""
        if not self.logged_in.called:
            self.logged_in.errback(reason)
            self.transport.loseConnection()

    def _on_HELLO(self, rest: str) -> None:
        version, _, server_name = rest.partition(" ")
        if not self._peer_checked:
            self._fail_login(
                Failure(ServerAuthenticationError("TLS certificate not checked"))
            )
        elif version != PROTOCOL_VERSION:
            self._fail_login(
                Failure(
                    ServerAuthenticationError(
                        f"server speaks {version!r}, not {PROTOCOL_VERSION}"
                    )
                )
            )
        else:
            self.server_name = server_name
            first = self._scram.get_client_first()
            self.send_line(f"AUTH {SCRAM_MECHANISM} {_b64(first)}")

    def _on_AUTH_CHALLENGE(self, rest: str) -> None:
        try:
            self._scram.set_server_first(_unb64(rest))
            final = self._scram.get_client_final()
        except (ScramException, ValueError) as e:
            self._fail_login(Failure(ServerAuthenticationError(f"bad challenge: {e}")))
        else:
            self.send_line(f"AUTH-RESPONSE {_b64(final)}")

    def _on_AUTH_OK(self, rest: str) -> None:
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
            self.logged_in.callback(self.server_name or "")

    # -- replies ----------------------------------------------------------

    def _on_OK(self, rest: str) -> None:
        what, _, value = rest.partition(" ")
        if what == "NICK":
            self.name = value
            self._answer("NICK", value)
        elif what == "REQUEST":
            self._answer("REQUEST", int(value))

    def _on_ONLINE(self, rest: str) -> None:
        self._answer("ONLINE", rest.split()[1:])

    def _on_IP(self, rest: str) -> None:
        self._answer("IP", rest)

    def _on_PONG(self, rest: str) -> None:
        self._answer("PONG", rest)

    def _on_ERR(self, rest: str) -> None:
        code, _, text = rest.partition(" ")
        error = ServerError(code, text)
        if not self.logged_in.called:
            self._fail_login(Failure(error))
        else:
            self._answer_error(error)

    # -- events -----------------------------------------------------------

    def _on_PING(self, rest: str) -> None:
        self.send_line(f"PONG {rest}" if rest else "PONG")

    def _on_CHAT(self, rest: str) -> None:
        name, _, text = rest.partition(" ")
        self.listener.chat(name, text)

    def _on_JOINED(self, rest: str) -> None:
        self.listener.joined(rest)

    def _on_LEFT(self, rest: str) -> None:
        name, _, reason = rest.partition(" ")
        self.listener.left(name, reason)

    def _on_NOTICE(self, rest: str) -> None:
        self.listener.notice(rest)

    def _on_SHUTDOWN(self, rest: str) -> None:
        seconds, _, text = rest.partition(" ")
        self.listener.shutdown(int(seconds) if seconds.isdigit() else 0, text)

    def _on_BYE(self, rest: str) -> None:
        self._bye_reason = rest
        self.listener.bye(rest)
