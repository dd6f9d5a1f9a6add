"""
One chat connection, as the client sees it: greeting, SCRAM-SHA-256 login,
naming, requests with their replies, and server events.

There is no user interface here, so the terminal client, the script mode,
benchmark load generators and tests all drive the same code. Requests return
Deferreds; events that may arrive at any time go to a L{ChatListener}.

Replies are matched by kind, not by position: the server answers ``SAY``
with nothing (or an ``ERR``), and drops over-rate lines with at most one
``ERR rate-limited`` a second, so counting lines would go out of step. An
``ERR`` is the answer to the pending login or name when one is pending, to a
pending ``REQUEST`` when its code is ``request-failed``, and otherwise an
event for the listener.

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

from OpenSSL.crypto import X509
from scramp import ScramClient, ScramException
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

PROTOCOL_VERSION = "partypool/1"
SCRAM_MECHANISM = "SCRAM-SHA-256"
SCRAM_USERNAME = "chat"

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
        self._pending: dict[str, deque[Deferred[Any]]] = {
            verb: deque() for verb in ("NICK", "ONLINE", "IP", "REQUEST", "PONG")
        }

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
        text = line.removesuffix(b"\r").decode("utf-8", "replace")
        verb, _, rest = text.partition(" ")
        handler = getattr(self, "_on_" + verb.upper().replace("-", "_"), None)
        if handler is None:
            self._log.debug("ignoring unknown server line {line!r}", line=text)
        else:
            handler(rest)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self._fail_login(reason)
        for waiting in self._pending.values():
            while waiting:
                waiting.popleft().errback(reason)
        self.done.callback(self._bye_reason)

    # -- requests ---------------------------------------------------------

    def nick(self, name: str) -> Deferred[str]:
        """Ask for C{name}; fires with the accepted name or fails with
        L{ServerError} (``nick-taken``, ``nick-invalid``, ``banned`` …)."""
        return self._request("NICK", f"NICK {name}")

    def say(self, text: str) -> None:
        """Send a room message; the server answers only if it refuses it."""
        self.send_line(f"SAY {text}")

    def online(self) -> Deferred[list[str]]:
        """Fires with the names in the room, this client's own included."""
        return self._request("ONLINE", "ONLINE")

    def ip(self) -> Deferred[str]:
        """Fires with this client's address as the server sees it."""
        return self._request("IP", "IP")

    def request(self, text: str) -> Deferred[int]:
        """Store a request for the administrator; fires with its id once it
        is stored durably, or fails with L{ServerError}."""
        return self._request("REQUEST", f"REQUEST {text}")

    def ping(self, token: str) -> Deferred[str]:
        """Fires with the token of the matching ``PONG`` (round-trip probe)."""
        return self._request("PONG", f"PING {token}")

    def quit(self, reason: str | None = None) -> Deferred[str | None]:
        """Leave; returns L{done}."""
        self.send_line("QUIT" if reason is None else f"QUIT {reason}")
        return self.done

    def send_line(self, line: str) -> None:
        """Send one raw protocol line (tests and tools use it directly)."""
        self.sendLine(line.encode("utf-8"))

    def _request(self, reply_verb: str, line: str) -> Deferred[Any]:
        if self.done.called:
            # The line could never be answered; say so instead of hanging.
            return fail(ConnectionDone("the connection is closed"))
        waiting: Deferred[Any] = Deferred()
        self._pending[reply_verb].append(waiting)
        self.send_line(line)
        return waiting

    def _answer(self, reply_verb: str, value: object) -> None:
        waiting = self._pending[reply_verb]
        if waiting:
            waiting.popleft().callback(value)
        else:
            self._log.debug("unexpected {verb} reply", verb=reply_verb)

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
        elif self._pending["NICK"]:
            self._pending["NICK"].popleft().errback(error)
        elif code == "request-failed" and self._pending["REQUEST"]:
            self._pending["REQUEST"].popleft().errback(error)
        else:
            self.listener.error(code, text)

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
