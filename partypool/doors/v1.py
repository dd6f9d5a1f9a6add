"""Protocol v1, the dialect: v1 lines in, calls on a `Session`, v1 lines out.

The contract is docs/protocol.md.  This module is its verbs and nothing
else: which verbs each session state accepts, what each one calls on the
door-neutral `~partypool.room.session.Session`, and how the results, the
errors (``ERR <code> <text>``) and the room's events are written.  Every rule
that is not about v1 lines — admission, throttles, timers, rate limits, the
room — is the session's.

A `V1Dialect` is carried by anything with the small `Outlet` interface,
framing the lines its own way: the TCP/TLS chat port
(`partypool.doors.chat`), and a WebSocket door carrying one line per message.
The carrier hands it each received line (`V1Dialect.line`, without the line
ending) and tells its `session` about the connection's life.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.doors import door_name
from partypool.room.auth import (
    SCRAM_MECHANISMS,
    AuthFailed,
    b64decode_text,
    b64encode_text,
)
from partypool.room.pool import PartyPool
from partypool.room.room import Event
from partypool.room.session import (
    CHALLENGE,
    CHATTING,
    LOGIN,
    NAMING,
    Session,
)
from partypool.wire import (
    PROTOCOL_VERSION,
    WireError,
    ascii_upper,
    error_line,
    format_line,
    online_lines,
    parse_line,
    scrub,
    split_to_fit,
)

if TYPE_CHECKING:
    from partypool.admin.commands import Result

# state -> verbs accepted in it, and the error for any other verb
_ALWAYS = {"PING", "PONG", "QUIT"}
_STATES = {
    LOGIN: ({"AUTH"} | _ALWAYS, "auth-required", "log in first (AUTH)"),
    CHALLENGE: ({"AUTH-RESPONSE"} | _ALWAYS, "auth-required", "finish logging in"),
    NAMING: (
        {"NICK", "ADMIN"} | _ALWAYS,
        "nick-required",
        "choose a name first (NICK)",
    ),
    CHATTING: (
        {"SAY", "MSG", "ONLINE", "IP", "REQUEST", "HISTORY", "ADMIN"} | _ALWAYS,
        None,
        None,
    ),
}
_AFTER_LOGIN = {
    "AUTH": ("already-authenticated", "you are already logged in"),
    "AUTH-RESPONSE": ("already-authenticated", "you are already logged in"),
    "NICK": ("already-named", "names are fixed for the session"),
}


class Outlet(Protocol):
    """What a `V1Dialect` needs of whatever carries its lines."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (whole lines, each ending in CRLF), after anything
        gathered before it."""

    def gather(self, data: bytes) -> None:
        """Send room-event lines, perhaps a moment later together with others
        (`partypool.room.gather`); a carrier with nothing to gain writes them now."""

    def close(self) -> None:
        """Close once what was written has been sent (the carrier also drops
        anything of its own, such as a registered producer)."""

    def abort(self) -> None:
        """Close now, unsent data or not."""


class V1Dialect:
    """Speaks v1 for one `Session`: the session's `~partypool.room.session.Door`."""

    def __init__(
        self,
        pool: PartyPool,
        host: str,
        peer: str,
        outlet: Outlet,
        *,
        handshaking: bool,
        log: Logger,
        channel_binding: Callable[[], bytes | None] | None = None,
    ) -> None:
        self.pool = pool
        self._outlet = outlet
        # A TLS carrier's tls-server-end-point data, for SCRAM-SHA-256-PLUS.
        self._channel_binding = channel_binding
        self._gather = outlet.gather  # bound once: it runs for every delivery
        self.session = Session(
            pool,
            host,
            peer,
            self,
            handshaking=handshaking,
            log=log,
            door_name=door_name(log),
        )

    def start(self) -> None:
        """Greet with ``HELLO``, then let the session admit or refuse the peer."""
        self._reply("HELLO", PROTOCOL_VERSION, self.pool.server_name)
        self.session.start()

    # -- Door (partypool.room.session): what the session says on its own --------

    def deliver(self, event: Event) -> None:
        self._gather(event.wire)

    def error(self, error: WireError) -> None:
        self._outlet.write(error_line(error.code, error.text))

    def ping(self, token: str) -> None:
        self._reply("PING", token)

    def goodbye(self, reason: str, error: WireError | None) -> None:
        if error is not None:
            self.error(error)
        self._reply("BYE", reason)

    def close(self) -> None:
        self._outlet.close()

    def abort(self) -> None:
        self._outlet.abort()

    # -- input ------------------------------------------------------------------

    def line_too_long(self) -> None:
        """The carrier discarded a line longer than ``limits.max_line``."""
        self.session.line_too_long()

    def line(self, raw: bytes) -> None:
        """Handle one line from the peer, without its line ending."""
        session = self.session
        if not session.admit_line():
            return
        try:
            command = parse_line(raw)
            self._dispatch(command.verb, command.argument)
        except WireError as e:
            self.error(e)
        except Exception:
            session.log.failure("error handling a line from {peer}", peer=session.peer)
            session.internal_error()

    def _dispatch(self, verb: str, argument: str) -> None:
        state = self.session.state
        allowed, code, text = _STATES[state]
        if verb not in allowed:
            if state == CHALLENGE and verb == "AUTH":
                return self.session.login_failed("AUTH sent twice")
            if code is None or (state == NAMING and verb in _AFTER_LOGIN):
                code, text = _AFTER_LOGIN[verb]
            raise WireError(code, text)
        getattr(self, "handle_" + verb.replace("-", "_"))(argument)

    def _reply(self, verb: str, *parts: str) -> None:
        self._outlet.write(format_line(verb, *parts))

    # -- verbs --------------------------------------------------------------------

    def handle_AUTH(self, argument: str) -> None:  # noqa: N802
        mechanism, _, payload = argument.partition(" ")
        mechanism = ascii_upper(mechanism)
        if mechanism not in SCRAM_MECHANISMS:
            return self.session.login_failed("unsupported mechanism")
        binding = self._channel_binding() if self._channel_binding else None

        def first(message: str) -> str | None:
            return self.session.scram_first(message, mechanism, binding)

        self._login_step(first, payload, "AUTH-CHALLENGE")

    def handle_AUTH_RESPONSE(self, argument: str) -> None:  # noqa: N802
        self._login_step(self.session.scram_final, argument, "AUTH-OK")

    def _login_step(
        self, step: Callable[[str], str | None], payload: str, verb: str
    ) -> None:
        try:
            message = b64decode_text(payload)
        except AuthFailed as e:
            return self.session.login_failed(str(e))
        answer = step(message)
        if answer is None:
            return
        line = format_line(verb, b64encode_text(answer))
        if len(line) > self.pool.limits.max_line:  # the challenge repeats the nonce
            return self.session.login_failed("client-first-message too long")
        self._outlet.write(line)

    def handle_NICK(self, argument: str) -> None:  # noqa: N802
        name = self.session.join(argument)
        if name is not None:
            self._reply("OK", "NICK", name)

    def handle_SAY(self, argument: str) -> None:  # noqa: N802
        self.session.say(argument)

    def handle_MSG(self, argument: str) -> None:  # noqa: N802
        target, _, text = argument.partition(" ")
        if not text.strip():
            raise WireError("bad-syntax", "usage: MSG <name> <text>")
        self._reply("OK", "MSG", self.session.private(target, text))

    def handle_ADMIN(self, argument: str) -> None:  # noqa: N802
        self.session.admin(argument, self._admin_answer)

    def _admin_answer(self, result: Result) -> None:
        """``ADMIN-OUT`` per line of output (a line too long for one goes on
        in the next), then ``ADMIN-END <status>``."""
        lines = result.output.split("\n") if result.output else []
        pieces = (
            piece
            for line in lines
            for piece in split_to_fit(
                scrub(line), self.pool.limits.max_line, "ADMIN-OUT"
            )
        )
        self._outlet.write(
            b"".join(format_line("ADMIN-OUT", piece) for piece in pieces)
            + format_line("ADMIN-END", str(result.status))
        )

    def handle_HISTORY(self, argument: str) -> None:  # noqa: N802
        count = None
        if argument:
            if not argument.isascii() or not argument.isdigit():
                raise WireError("bad-syntax", "usage: HISTORY [count]")
            count = int(argument)  # a line is too short for int()'s digit limit
        entries = self.session.history(count)
        self._outlet.write(
            b"".join(
                format_line("HISTORY", str(e.id), e.time, e.event.verb, *e.event.parts)
                for e in entries
            )
            + format_line("HISTORY-END", str(len(entries)))
        )

    def handle_ONLINE(self, argument: str) -> None:  # noqa: N802
        names = self.session.names()
        self._outlet.write(b"".join(online_lines(names, self.pool.limits.max_line)))

    def handle_IP(self, argument: str) -> None:  # noqa: N802
        self._reply("IP", self.session.host)

    def handle_REQUEST(self, argument: str) -> None:  # noqa: N802
        d = self.session.request(argument)
        d.addCallbacks(self._request_stored, self._request_failed)

    def _request_stored(self, request_id: int) -> None:
        if self.session.state == CHATTING:
            self._reply("OK", "REQUEST", str(request_id))

    def _request_failed(self, failure: Failure) -> None:
        failure.trap(WireError)
        if self.session.state == CHATTING:
            self.error(failure.value)

    def handle_PING(self, argument: str) -> None:  # noqa: N802
        token = (scrub(argument),) if argument else ()
        self._reply("PONG", *token)

    def handle_PONG(self, argument: str) -> None:  # noqa: N802
        """Any line is a sign of life; a PONG needs nothing more."""

    def handle_QUIT(self, argument: str) -> None:  # noqa: N802
        self.session.quit(argument)
