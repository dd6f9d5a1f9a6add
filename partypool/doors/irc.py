"""The IRC gateway: any IRC client joins the room as one channel.

A second dialect over the same room, not a second server.  The contract in
brief (docs/irc.md has it all):

- Registration: ``CAP LS 302`` / ``REQ`` / ``END`` (registration waits for
  ``END``), ``NICK`` and ``USER``.  The secret is the chat passkey, by SASL
  (``PLAIN`` or ``SCRAM-SHA-256``) or by ``PASS``.  A wrong or missing secret
  gets 904 (SASL) or 464, then ``ERROR`` and close.  Other commands before
  registration get 451.
- The room is one channel (``#party`` unless configured): a client is joined
  to it on registration and gets the room's recent messages in a
  ``chathistory`` batch.  ``PRIVMSG``/``NOTICE`` to the channel say to the
  room, to a nick send a private message.  Room events arrive as
  ``PRIVMSG``, ``JOIN``, ``QUIT``, ``KICK`` and ``NOTICE``, tagged with
  ``time`` and ``msgid`` for clients that asked.
- Root (SASL account ``root`` with the root password) joins as ``@root``:
  ``KICK``/``KILL`` remove a user, and ``PRIVMSG partypool :<command>`` runs
  any admin command, its output coming back as NOTICEs from ``partypool``.
- Nicknames are room names, unchanged (`partypool.doors.irc_wire` says why).

Every rule that is not about IRC — admission, the login throttle, the rate
limit and flood cut-off, the timers, the room — is the door-neutral
`partypool.room.session.Session`'s; `IrcDialect` only translates.
`IrcGateway` holds what every connection to one listener shares: the channel,
the server's IRC name and the encoders of room events (each event is encoded
once per mix of tags, however many IRC users get it).  `IrcProtocol` is the
carrier: the chat port's output handling, IRC's framing.
"""

from __future__ import annotations

import itertools
import secrets
import shlex
import time
from collections.abc import Callable

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool import __version__
from partypool.admin.commands import BANNED, REMOVED, Result
from partypool.doors import door_name
from partypool.doors.chat import ChatProtocol
from partypool.doors.irc_wire import (
    MESSAGE_MAX,
    IrcWireError,
    LineFramer,
    cut_text,
    format_message,
    pack,
    parse_message,
    room_text,
    server_time,
    split_text,
    split_words,
    text_room,
)
from partypool.doors.v1 import Outlet
from partypool.room.auth import (
    ROOT_USERNAME,
    SCRAM_USERNAME,
    AuthFailed,
    b64decode_text,
    b64encode_text,
)
from partypool.room.history import Entry
from partypool.room.pool import PartyPool
from partypool.room.room import ROOT_NAME, Event
from partypool.room.session import CHATTING, NAMING, Session, quit_reason
from partypool.wire import NAME_MAX, WireError, ascii_upper, check_name, name_key, scrub

log = Logger(namespace="partypool.doors.irc")

DEFAULT_CHANNEL = "#party"
SERVICE = "partypool"  # the reserved nick room notices and admin output come from
USER_HOST = "partypool"  # the host part of every nick!user@host
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256")
SASL_CHUNK = 400  # an AUTHENTICATE payload this long means more follows
SASL_MAX = 4096  # the most base64 one SASL response may total
AWAY_MAX = 200
SERVER_MAX = 63  # the server's source: a hostname (RFC 2812, section 2.3.1)
# cap -> its value in CAP LS 302
CAPS = {
    "batch": "",
    "echo-message": "",
    "message-tags": "",
    "multi-prefix": "",
    "sasl": ",".join(SASL_MECHANISMS),
    "server-time": "",
}
# What a client may send before registration; anything else gets 451.
_BEFORE_REGISTRATION = frozenset(
    {"CAP", "AUTHENTICATE", "PASS", "NICK", "USER", "PING", "PONG", "QUIT"}
)
# Refusals of a client's command that have a numeric of their own (with the
# target as its parameter); the rest reach the client as a NOTICE from the
# server, code and text.
_NUMERICS = {
    "nick-invalid": "432",
    "nick-taken": "433",
    "banned": "432",
    "no-such-user": "401",
    "muted": "404",
    "forbidden": "481",
}
# Room-leave reasons shown as a KICK by the service rather than a QUIT.
_KICKS = frozenset({REMOVED, BANNED})
# Events for one member only: formatted for that member, not once for all.
_PERSONAL = frozenset({"PRIVATE", "REQUESTED"})

# ISUPPORT values escape these (modern IRC, "RPL_ISUPPORT Parameters").
_ISUPPORT_ESCAPES = str.maketrans({"\\": "\\x5C", " ": "\\x20", "=": "\\x3D"})

# The tags a client negotiated, as bits: one encoding of each event per mix.
TIME_TAG, MSGID_TAG = 1, 2


class IrcGateway:
    """What every connection to one IRC listener shares.

    ``server`` is the name the server's own messages come from (a hostname
    made from the server name); ``channel`` is the room's channel.
    ``encoders[mix]`` turns a room event into IRC lines with the tags of
    ``mix``; `Event.encoded` runs each once per event.
    """

    def __init__(self, pool: PartyPool, channel: str = DEFAULT_CHANNEL) -> None:
        self.pool = pool
        self.channel = channel
        self.channel_key = ascii_upper(channel)
        self.server = server_source(pool.server_name)
        self.created = pool.clock.seconds()
        self._boot = secrets.token_hex(3)
        self._msgids = itertools.count(1)
        self.encoders = tuple(self._encoder(mix) for mix in range(4))

    def _encoder(self, mix: int) -> Callable[[Event], bytes]:
        def encode(event: Event) -> bytes:
            return self.event_lines(event, self.tags(mix, event.encoded(self.stamp)))

        return encode

    def stamp(self, event: Event | None = None) -> bytes:
        """When and the message id: for a room event once (`Event.encoded`),
        so every recipient sees the same whatever its tags; for a message
        to one client (an echo, a private message) each time."""
        when = server_time(self.pool.clock.seconds())
        return f"{when} {self._boot}-{next(self._msgids)}".encode()

    def tags(self, mix: int, stamp: bytes) -> dict[str, str]:
        when, _, msgid = stamp.decode().partition(" ")
        tags = {}
        if mix & TIME_TAG:
            tags["time"] = when
        if mix & MSGID_TAG:
            tags["msgid"] = msgid
        return tags

    def event_lines(self, event: Event, tags: dict[str, str]) -> bytes:
        """Translate one room event to IRC; an event it does not know to nothing."""
        verb, parts = event.verb, event.parts
        if verb == "CHAT":
            name, text = parts
            return self.messages("PRIVMSG", source(name), self.channel, text, tags)
        if verb == "JOINED":
            name = parts[0]
            lines = format_message("JOIN", self.channel, source=source(name), tags=tags)
            if name == ROOT_NAME:  # the operator: clients show it as @root
                lines += format_message(
                    "MODE", self.channel, "+o", name, source=source(SERVICE), tags=tags
                )
            return lines
        if verb == "LEFT":
            name, reason = parts
            if reason in _KICKS:
                return format_message(
                    "KICK",
                    self.channel,
                    name,
                    reason,
                    source=source(SERVICE),
                    tags=tags,
                )
            return format_message(
                "QUIT", quit_text(reason), source=source(name), tags=tags
            )
        if verb == "NOTICE":
            return self.messages(
                "NOTICE", source(SERVICE), self.channel, parts[0], tags
            )
        if verb == "SHUTDOWN":
            seconds, text = parts
            said = f"the server closes in {seconds} s: {text}"
            return self.messages("NOTICE", source(SERVICE), self.channel, said, tags)
        return b""

    @staticmethod
    def messages(
        command: str, sender: str, target: str, text: str, tags: dict[str, str]
    ) -> bytes:
        """``command`` lines carrying ``text``, cut to fit 512 bytes each."""
        room = text_room(command, target, source=sender)
        return b"".join(
            format_message(
                command, target, piece, source=sender, tags=tags, trailing=True
            )
            for piece in split_text(text, room)
        )


def server_source(server_name: str) -> str:
    """A hostname-like IRC server name made from the operator's server name,
    at most `SERVER_MAX` characters (RFC 2812's hostname limit), so every
    reply it starts keeps room for its text."""
    cleaned = "".join(
        c if c.isascii() and (c.isalnum() or c in ".-") else "-" for c in server_name
    )
    return cleaned[:SERVER_MAX].strip(".-") or "partypool"


def source(name: str) -> str:
    """The ``nick!user@host`` of a room member or of the service."""
    return f"{name}!{name}@{USER_HOST}"


def quit_text(reason: str) -> str:
    """A room-leave reason as IRC clients show a QUIT's (``Quit: …``)."""
    if reason == "quit":
        return "Quit"
    if reason.startswith("quit: "):
        return "Quit: " + reason.removeprefix("quit: ")
    return reason


class IrcDialect:
    """Speaks IRC for one `Session`: the session's `~partypool.room.session.Door`.

    Registration state lives here (what the client said and negotiated); the
    login, the name and everything after are the session's.
    """

    def __init__(
        self,
        gateway: IrcGateway,
        host: str,
        peer: str,
        outlet: Outlet,
        *,
        handshaking: bool,
    ) -> None:
        self.gateway = gateway
        self.pool = gateway.pool
        self._outlet = outlet
        self._gather = outlet.gather
        self.session = Session(
            self.pool,
            host,
            peer,
            self,
            handshaking=handshaking,
            log=log,
            door_name=door_name(log),
        )
        self.nick: str | None = None  # as asked, then the room name
        self.user: str | None = None
        self.caps: set[str] = set()
        self._mix = 0  # TIME_TAG | MSGID_TAG, as negotiated
        self._encode = gateway.encoders[0]
        self._negotiating = False  # CAP LS or REQ seen, END not yet
        self._password: str | None = None  # from PASS, until checked
        self._checking = False  # a passkey check is running
        self._sasl: str | None = None  # the mechanism under way
        self._scram_step = 0  # SCRAM messages taken from the client so far
        self._sasl_buffer = ""
        self._sasl_done = False
        self._failure_numeric = ("464", "Password incorrect")
        self._quit_reason = ""  # the client's own, for its ERROR line

    def start(self) -> None:
        """IRC servers do not greet: let the session admit or refuse the peer."""
        self.session.start()

    @property
    def me(self) -> str:
        """The client's name as numerics address it (``*`` before NICK)."""
        return self.nick or "*"

    @property
    def registered(self) -> bool:
        return self.session.state == CHATTING

    # -- Door (partypool.room.session) ---------------------------------------

    def deliver(self, event: Event) -> None:
        if event.verb in _PERSONAL:
            return self._personal(event)
        self._gather(event.encoded(self._encode))

    def _personal(self, event: Event) -> None:
        tags = self.gateway.tags(self._mix, self.gateway.stamp())
        if event.verb == "PRIVATE":
            sender, text = event.parts
            lines = self.gateway.messages(
                "PRIVMSG", source(sender), self.me, text, tags
            )
        else:  # REQUESTED, for root
            request_id, name, text = event.parts
            said = f"request {request_id} from {name}: {text}"
            lines = self.gateway.messages(
                "NOTICE", source(SERVICE), self.me, said, tags
            )
        self._gather(lines)

    def error(self, error: WireError) -> None:
        if error.code == "line-too-long":
            return self._numeric("417", "Input line was too long")
        self._server_notice(f"{error.code}: {error.text}")

    def ping(self, token: str) -> None:
        self._send(format_message("PING", token, source=self.gateway.server))

    def goodbye(self, reason: str, error: WireError | None) -> None:
        if error is not None and error.code == "auth-failed":
            self._numeric(*self._failure_numeric)
        elif error is not None and error.code != "timeout":
            self._server_notice(f"{error.code}: {error.text}")
        if reason in _KICKS and self.registered:
            self._send(
                format_message(
                    "KICK",
                    self.gateway.channel,
                    self.me,
                    reason,
                    source=source(SERVICE),
                )
            )
        said = quit_text(f"quit: {self._quit_reason}" if reason == "quit" else reason)
        link = f"Closing Link: {self.session.host} ({{}})"
        said = cut_text(said, text_room("ERROR") - len(link.format("").encode()))
        self._send(format_message("ERROR", link.format(said)))

    def close(self) -> None:
        self._outlet.close()

    def abort(self) -> None:
        self._outlet.abort()

    # -- output ----------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._outlet.write(data)

    def _numeric(self, code: str, *params: str) -> None:
        self._send(
            format_message(
                code, self.me, *params, source=self.gateway.server, trailing=True
            )
        )

    def _text_room(self, *params: str) -> int:
        """The bytes left for the text of a numeric to this client after
        ``params``."""
        return text_room("000", self.me, *params, source=self.gateway.server)

    def _server_notice(self, text: str) -> None:
        self._send(
            self.gateway.messages("NOTICE", self.gateway.server, self.me, text, {})
        )

    # -- input -------------------------------------------------------------------

    def line(self, raw: bytes) -> None:
        """Handle one line from the peer, without its line ending."""
        session = self.session
        if not session.admit_line():
            return
        try:
            message = parse_message(raw)
            if message is not None:
                self._dispatch(message.command, list(message.params))
        except IrcWireError as e:
            self._wire_error(e)
        except WireError as e:  # a refusal no handler words its own way
            self._server_notice(f"{e.code}: {e.text}")
        except Exception:
            session.log.failure("error handling a line from {peer}", peer=session.peer)
            session.internal_error()

    def line_too_long(self) -> None:
        """The framing discarded a line over IRC's limits."""
        if self.session.admit_line():
            self._numeric("417", "Input line was too long")

    def _wire_error(self, e: IrcWireError) -> None:
        if e.kind == "input-too-long":
            self._numeric("417", e.text)
        elif e.kind == "invalid-utf8":
            self._send(
                format_message(
                    "FAIL",
                    _word(e.command),
                    "INVALID_UTF8",
                    e.text,
                    source=self.gateway.server,
                )
            )
        else:
            self._numeric("421", _word(e.command), e.text)

    def _dispatch(self, command: str, params: list[str]) -> None:
        handler = getattr(self, "irc_" + command, None)
        if handler is None:
            return self._numeric("421", _word(command), "Unknown command")
        if not self.registered and command not in _BEFORE_REGISTRATION:
            return self._numeric("451", "You have not registered")
        handler(params)

    def _enough(self, params: list[str], count: int, command: str) -> bool:
        if len(params) >= count:
            return True
        self._numeric("461", command, "Not enough parameters")
        return False

    # -- registration ---------------------------------------------------------------

    def irc_CAP(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "CAP"):
            return
        sub = ascii_upper(params[0])
        if sub in ("LS", "REQ") and not self.registered:
            self._negotiating = True
        if sub == "LS":
            version = params[1] if len(params) > 1 else ""
            number = version.isascii() and version.isdigit()
            with_values = number and int(version) >= 302
            shown = (
                f"{cap}={value}" if value and with_values else cap
                for cap, value in sorted(CAPS.items())
            )
            self._cap("LS", " ".join(shown))
        elif sub == "LIST":
            self._cap("LIST", " ".join(sorted(self.caps)))
        elif sub == "REQ":
            self._cap_req(params[1] if len(params) > 1 else "")
        elif sub == "END":
            if self._negotiating:
                self._negotiating = False
                self._try_register()
        else:
            self._numeric("410", _word(params[0]), "Invalid CAP command")

    def _cap_req(self, asked: str) -> None:
        """All or nothing, as the spec says: ACK every cap asked, or NAK them
        (each named once, the list split over lines if it must be)."""
        wanted = list(dict.fromkeys(split_words(asked)))
        if not wanted or any(cap.removeprefix("-") not in CAPS for cap in wanted):
            return self._cap_list("NAK", wanted)
        for cap in wanted:
            if cap.startswith("-"):
                self.caps.discard(cap[1:])
            else:
                self.caps.add(cap)
        self._mix = (TIME_TAG if "server-time" in self.caps else 0) | (
            MSGID_TAG if "message-tags" in self.caps else 0
        )
        self._encode = self.gateway.encoders[self._mix]
        self._cap_list("ACK", wanted)

    def _cap_list(self, sub: str, caps: list[str]) -> None:
        room = text_room("CAP", self.me, sub, source=self.gateway.server)
        for row in pack(caps, room) if caps else [[]]:
            self._cap(sub, " ".join(row))

    def _cap(self, sub: str, text: str) -> None:
        self._send(
            format_message(
                "CAP", self.me, sub, text, source=self.gateway.server, trailing=True
            )
        )

    def irc_PASS(self, params: list[str]) -> None:  # noqa: N802
        if self.registered:
            return self._numeric("462", "You may not reregister")
        if self._enough(params, 1, "PASS"):
            self._password = params[0]

    def irc_NICK(self, params: list[str]) -> None:  # noqa: N802
        if not params or not params[0]:
            return self._numeric("431", "No nickname given")
        wanted = params[0]
        if self.registered:
            return self._numeric(
                "447", f"names are fixed for the session; reconnect as {_word(wanted)}"
            )
        if name_key(wanted) != ROOT_NAME:  # root: checked at registration
            try:
                wanted = check_name(wanted)  # NFKC: within 24 characters
            except WireError as e:
                return self._numeric("432", _word(wanted), e.text)
        if not self.session.is_root and self.pool.room.by_name(wanted) is not None:
            return self._numeric("433", _word(wanted), "Nickname is already in use")
        self.nick = wanted
        self._try_register()

    def irc_USER(self, params: list[str]) -> None:  # noqa: N802
        if self.registered or self.user is not None:
            return self._numeric("462", "You may not reregister")
        if self._enough(params, 4, "USER"):
            self.user = params[0]
            self._try_register()

    def _try_register(self) -> None:
        """Log in and enter the room once the client has said all it will.

        Called after each registration step; it waits while capabilities are
        negotiated, SASL is under way or a passkey is being checked.
        """
        if (
            self.registered
            or self._negotiating
            or self._checking
            or self._sasl is not None
            or self.nick is None
            or self.user is None
        ):
            return
        session = self.session
        if session.state != NAMING:  # not logged in (SASL aborted, or none)
            if self._password is None:
                self._failure_numeric = ("464", "Password required (SASL or PASS)")
                return session.login_failed("no passkey")
            password, self._password = self._password, None
            self._failure_numeric = ("464", "Password incorrect")
            return self._check_secret(SCRAM_USERNAME, password, self._try_register)
        wanted = ROOT_NAME if session.is_root else self.nick
        try:
            name = session.join(wanted)
        except WireError as e:
            code = _NUMERICS.get(e.code, "432")
            return self._numeric(code, _word(self.nick), e.text)
        if name is not None:  # None: refused (full, one per address, root's
            # seat taken), ended
            if name != self.nick:  # root, whatever nick it asked for
                self._send(format_message("NICK", name, source=source(self.me)))
            self.nick = name
            self._welcome()

    def _check_secret(
        self, account: str, secret: str, then: Callable[[], None]
    ) -> None:
        self._checking = True
        d = self.session.login_secret(account, secret)

        def checked(ok: bool) -> None:
            self._checking = False
            if ok:
                then()

        d.addCallbacks(checked, self._check_failed)

    def _check_failed(self, failure: Failure) -> None:
        self._checking = False
        log.failure("checking a secret from {peer}", failure, peer=self.session.peer)
        self.session.internal_error()

    def _welcome(self) -> None:
        gateway, me, server = self.gateway, self.me, self.gateway.server
        version = f"partypool-{__version__}"
        created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(gateway.created))
        welcome = f"Welcome to {{}}, {me}"
        room = self._text_room() - len(welcome.format("").encode())
        self._numeric("001", welcome.format(cut_text(self.pool.server_name, room)))
        self._numeric("002", f"Your host is {server}, running {version}")
        self._numeric("003", f"This server was created {created}")
        self._numeric("004", server, version, "i", "nt", "o")
        bare = format_message("005", me, "are supported", source=server)
        room = MESSAGE_MAX - len(bare) - 1  # for the tokens and their space
        for tokens in pack(self._isupport(), room, most=12):
            self._numeric("005", *tokens, "are supported")
        self._numeric("422", "MOTD File is missing")
        self._joined()
        self._replay()

    def _isupport(self) -> list[str]:
        name = cut_text(self.pool.server_name, SERVER_MAX)
        network = name.translate(_ISUPPORT_ESCAPES)
        return [
            f"AWAYLEN={AWAY_MAX}",
            "CASEMAPPING=rfc8265",
            "CHANLIMIT=#:1",
            "CHANMODES=,,,nt",
            f"CHANNELLEN={len(self.gateway.channel)}",
            "CHANTYPES=#",
            f"NETWORK={network}",
            f"NICKLEN={NAME_MAX}",
            "PREFIX=(o)@",
            "TARGMAX=PRIVMSG:1,NOTICE:1",
            "UTF8ONLY",
        ]

    def _joined(self) -> None:
        """The JOIN of the channel, its topic and its names."""
        channel = self.gateway.channel
        self._send(format_message("JOIN", channel, source=source(self.me)))
        self._numeric("332", channel, self.pool.server_name)
        self._names()

    def _replay(self) -> None:
        """The room's recent messages, as ergo's autoreplay sends them: in a
        ``chathistory`` batch, each with the time it was said (for clients
        that asked for ``batch`` and ``server-time``)."""
        entries = self.session.history()
        if not entries:
            return
        batch = "batch" in self.caps
        reference = secrets.token_hex(4)
        server, channel = self.gateway.server, self.gateway.channel
        if batch:
            start = format_message(
                "BATCH", "+" + reference, "chathistory", channel, source=server
            )
            self._send(start)
        for entry in entries:
            self._send(self._entry_lines(entry, reference if batch else None))
        if batch:
            self._send(format_message("BATCH", "-" + reference, source=server))

    def _entry_lines(self, entry: Entry, batch: str | None) -> bytes:
        tags = self.gateway.tags(self._mix, f"{entry.time} h{entry.id}".encode())
        if batch is not None:
            tags = {"batch": batch, **tags}
        return self.gateway.event_lines(entry.event, tags)

    # -- SASL ----------------------------------------------------------------

    def irc_AUTHENTICATE(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "AUTHENTICATE"):
            return
        logged_in = self.session.state == NAMING and self._sasl is None
        if self.registered or self._sasl_done or logged_in:
            return self._numeric("907", "You have already authenticated")
        payload = params[0]
        if payload == "*":
            return self._sasl_abort()
        if self._sasl is None:
            return self._sasl_start(ascii_upper(payload))
        if self._checking:
            return
        if payload != "+":
            self._sasl_buffer += payload
        if len(self._sasl_buffer) > SASL_MAX:
            self._sasl_reset()
            return self._numeric("905", "SASL message too long")
        if len(payload) == SASL_CHUNK:
            return  # more follows
        data, self._sasl_buffer = self._sasl_buffer, ""
        try:
            message = b64decode_text(data)
        except AuthFailed as e:
            return self.session.login_failed(str(e))
        if self._sasl == "PLAIN":
            self._sasl_plain(message)
        else:
            self._sasl_scram(message)

    def _sasl_start(self, mechanism: str) -> None:
        if mechanism not in SASL_MECHANISMS or "sasl" not in self.caps:
            self._numeric(
                "908", ",".join(SASL_MECHANISMS), "are available SASL mechanisms"
            )
            return self._numeric("904", "SASL authentication failed")
        self._sasl = mechanism
        self._sasl_buffer = ""
        self._scram_step = 0
        self._failure_numeric = ("904", "SASL authentication failed")
        self._send(format_message("AUTHENTICATE", "+"))

    def _authenticate(self, answer: str) -> None:
        """A SASL message to the client in base64, as IRCv3 SASL sends it:
        in lines of `SASL_CHUNK` characters, then ``+`` if the last was full."""
        data = b64encode_text(answer)
        for start in range(0, len(data), SASL_CHUNK):
            self._send(format_message("AUTHENTICATE", data[start : start + SASL_CHUNK]))
        if len(data) % SASL_CHUNK == 0:
            self._send(format_message("AUTHENTICATE", "+"))

    def _sasl_plain(self, message: str) -> None:
        """``authzid NUL authcid NUL secret``.  Account ``root`` is root, with
        the root password; any other (clients fill in ``chat`` or the nick)
        is everyone's, with the chat passkey."""
        fields = message.split("\0")
        if len(fields) != 3:
            return self.session.login_failed("malformed SASL PLAIN")
        _, account, secret = fields
        account = ROOT_USERNAME if account == ROOT_USERNAME else SCRAM_USERNAME
        self._check_secret(account, secret, self._sasl_succeeded)

    def _sasl_scram(self, message: str) -> None:
        session = self.session
        self._scram_step += 1
        if self._scram_step == 1:
            answer = session.scram_first(message)
        elif self._scram_step == 2:
            answer = session.scram_final(message)
        else:  # the client's "+" after our server-final-message
            return self._sasl_succeeded()
        if answer is not None:
            self._authenticate(answer)

    def _sasl_succeeded(self) -> None:
        self._sasl = None
        self._sasl_done = True
        account = ROOT_USERNAME if self.session.is_root else SCRAM_USERNAME
        self._numeric(
            "900", source(self.me), account, f"You are now logged in as {account}"
        )
        self._numeric("903", "SASL authentication successful")
        self._try_register()

    def _sasl_abort(self) -> None:
        self._sasl_reset()
        self._numeric("906", "SASL authentication aborted")
        self._try_register()

    def _sasl_reset(self) -> None:
        """Forget the SASL exchange under way (a new one may start; a SCRAM
        exchange the session began is replaced by the next)."""
        self._sasl = None
        self._sasl_buffer = ""

    # -- always ----------------------------------------------------------------

    def irc_PING(self, params: list[str]) -> None:  # noqa: N802
        if self._enough(params, 1, "PING"):
            server = self.gateway.server
            self._send(format_message("PONG", server, params[0], source=server))

    def irc_PONG(self, params: list[str]) -> None:  # noqa: N802
        """Any line is a sign of life; a PONG needs nothing more."""

    def irc_QUIT(self, params: list[str]) -> None:  # noqa: N802
        self._quit(params[0] if params else "")

    def _quit(self, reason: str) -> None:
        self._quit_reason = quit_reason(reason)
        self.session.quit(reason)

    # -- in the room -------------------------------------------------------------

    def _is_channel(self, target: str) -> bool:
        return ascii_upper(target) == self.gateway.channel_key

    def _no_such_channel(self, channel: str) -> None:
        self._numeric("403", _word(channel), "No such channel")

    def irc_JOIN(self, params: list[str]) -> None:  # noqa: N802
        """A registered client is in the channel already: its JOIN of it
        (a client's autojoin) gets no reply at all, as other servers do,
        so the join, topic and names are not shown twice."""
        if not self._enough(params, 1, "JOIN"):
            return
        for channel in params[0].split(","):
            if not self._is_channel(channel):
                self._no_such_channel(channel)

    def irc_PART(self, params: list[str]) -> None:  # noqa: N802
        """Leaving the room's one channel leaves the room: the session ends."""
        if not self._enough(params, 1, "PART"):
            return
        channels = params[0].split(",")
        for channel in channels:
            if not self._is_channel(channel):
                self._no_such_channel(channel)
        if any(map(self._is_channel, channels)):
            reason = quit_reason(params[1]) if len(params) > 1 else ""
            self._send(
                format_message(
                    "PART",
                    self.gateway.channel,
                    *([reason] if reason else []),
                    source=source(self.me),
                )
            )
            self._quit(reason)

    def irc_PRIVMSG(self, params: list[str], command: str = "PRIVMSG") -> None:  # noqa: N802
        if not params or not params[0]:
            return self._numeric("411", f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            return self._numeric("412", "No text to send")
        target, text = params[0], room_text(params[1])
        if text is None:
            return  # a CTCP request or reply: nothing for the room
        try:
            if self._is_channel(target):
                self.session.say(text)
                self._echo(command, self.gateway.channel, params[1])
            elif target.startswith("#"):
                self._no_such_channel(target)
            elif name_key(target) == SERVICE:
                if command == "PRIVMSG":  # a NOTICE is never answered
                    self.session.admin(text, self._admin_output)
            else:
                name = self.session.private(target, text)
                self._echo(command, name, params[1])
        except WireError as e:
            self._refused(e, target)

    def _refused(self, e: WireError, target: str) -> None:
        """A refusal of a message: its numeric, or a NOTICE with code and text."""
        numeric = _NUMERICS.get(e.code)
        if numeric is None:
            return self._server_notice(f"{e.code}: {e.text}")
        if numeric == "481":
            return self._numeric(numeric, "Permission Denied- " + e.text)
        shown = self.gateway.channel if self._is_channel(target) else _word(target)
        self._numeric(numeric, shown, e.text)

    def irc_NOTICE(self, params: list[str]) -> None:  # noqa: N802
        self.irc_PRIVMSG(params, "NOTICE")

    def _echo(self, command: str, target: str, text: str) -> None:
        """echo-message: the sender gets its own message back, tagged."""
        if "echo-message" in self.caps:
            tags = self.gateway.tags(self._mix, self.gateway.stamp())
            self._send(
                self.gateway.messages(command, source(self.me), target, text, tags)
            )

    def irc_NAMES(self, params: list[str]) -> None:  # noqa: N802
        if params and not self._is_channel(params[0]):
            return self._numeric("366", _word(params[0]), "End of /NAMES list")
        self._names()

    def _names(self) -> None:
        """353 lines as full as 512 bytes allow, then 366."""
        channel = self.gateway.channel
        names = [_prefixed(name) for name in self.session.names()]
        for row in pack(names, self._text_room("=", channel)):
            self._numeric("353", "=", channel, " ".join(row))
        self._numeric("366", channel, "End of /NAMES list")

    def irc_TOPIC(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "TOPIC"):
            return
        channel = self.gateway.channel
        if not self._is_channel(params[0]):
            return self._no_such_channel(params[0])
        if len(params) > 1:
            return self._numeric("482", channel, "The topic is the server's name")
        self._numeric("332", channel, self.pool.server_name)

    def irc_LIST(self, params: list[str]) -> None:  # noqa: N802
        count = str(len(self.session.names()))
        self._numeric("321", "Channel", "Users  Name")
        self._numeric("322", self.gateway.channel, count, self.pool.server_name)
        self._numeric("323", "End of /LIST")

    def irc_MODE(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "MODE"):
            return
        target, channel = params[0], self.gateway.channel
        if self._is_channel(target):
            if len(params) == 1:
                return self._numeric("324", channel, "+nt")
            if params[1].lstrip("+") == "b":
                return self._numeric("368", channel, "End of channel ban list")
            return self._numeric("482", channel, "Channel modes are fixed")
        if target.startswith("#"):
            return self._no_such_channel(target)
        if name_key(target) != name_key(self.me):
            return self._numeric("502", "Can't change mode for other users")
        if len(params) > 1 and params[1] not in ("+i", "-i", "i"):
            return self._numeric("501", "Unknown MODE flag")
        self._numeric("221", "+io" if self.session.is_root else "+i")

    def irc_WHO(self, params: list[str]) -> None:  # noqa: N802
        mask = params[0] if params else "*"
        if self._is_channel(mask) or mask == "*":
            names = self.session.names()
        else:
            member = self.pool.room.by_name(mask)
            names = [member.name] if member is not None else []
        channel, server = self.gateway.channel, self.gateway.server
        for name in names:
            flags = "H*@" if name == ROOT_NAME else "H"
            self._numeric(
                "352", channel, name, USER_HOST, server, name, flags, f"0 {name}"
            )
        self._numeric("315", _word(mask), "End of /WHO list")

    def irc_WHOIS(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "WHOIS"):
            return
        wanted = params[-1]
        member = self.pool.room.by_name(wanted)
        if member is None:
            self._numeric("401", _word(wanted), "No such nick/channel")
            return self._numeric("318", _word(wanted), "End of /WHOIS list")
        name = member.name
        self._numeric("311", name, name, USER_HOST, "*", name)
        self._numeric(
            "319", name, _prefixed(name).removesuffix(name) + self.gateway.channel
        )
        self._numeric("312", name, self.gateway.server, self.pool.server_name)
        if name == ROOT_NAME:
            self._numeric("313", name, "is the server's administrator")
        self._numeric("318", name, "End of /WHOIS list")

    def irc_USERHOST(self, params: list[str]) -> None:  # noqa: N802
        if not self._enough(params, 1, "USERHOST"):
            return
        replies = [f"{name}=+{name}@{USER_HOST}" for name in self._found(params[:5])]
        for row in pack(replies, self._text_room()) if replies else [[]]:
            self._numeric("302", " ".join(row))

    def irc_ISON(self, params: list[str]) -> None:  # noqa: N802
        """One 303, as clients count them (irssi's notify list does): the
        members found, each once; those past 512 bytes are left out, as
        RFC 2812 lets a server cut the reply."""
        found = self._found(split_words(" ".join(params)))
        row = next(pack(found, self._text_room()), [])
        self._numeric("303", " ".join(row))

    def _found(self, nicks: list[str]) -> list[str]:
        """The names of the members ``nicks`` name, each once, in order."""
        members = filter(None, map(self.pool.room.by_name, nicks))
        return list(dict.fromkeys(member.name for member in members))

    def irc_AWAY(self, params: list[str]) -> None:  # noqa: N802
        """Accepted so clients do not complain; nobody else is told."""
        if params and params[0]:
            self._numeric("306", "You have been marked as being away")
        else:
            self._numeric("305", "You are no longer marked as being away")

    def irc_MOTD(self, params: list[str]) -> None:  # noqa: N802
        self._numeric("422", "MOTD File is missing")

    # -- root ---------------------------------------------------------------------

    def irc_KICK(self, params: list[str]) -> None:  # noqa: N802
        """Root removes a user (``remove -u``); anyone else gets 482.

        A reason given is not sent: a removal's reason is a fixed word
        every door and client matches (``removed by admin``), not text."""
        if not self._enough(params, 2, "KICK"):
            return
        channel = self.gateway.channel
        if not self._is_channel(params[0]):
            return self._no_such_channel(params[0])
        if not self.session.is_root:
            return self._numeric("482", channel, "You're not channel operator")
        self._remove(params[1])

    def irc_KILL(self, params: list[str]) -> None:  # noqa: N802
        """Root removes a user, as KICK does; anyone else gets 481."""
        if not self._enough(params, 1, "KILL"):
            return
        if not self.session.is_root:
            return self._numeric("481", "Permission Denied- You're not an operator")
        self._remove(params[0])

    def _remove(self, nick: str) -> None:
        def answer(result: Result) -> None:
            if result.status:  # success shows as the KICK itself
                self._admin_output(result)

        self.session.admin(shlex.join(["remove", "-u", nick]), answer)

    def _admin_output(self, result: Result) -> None:
        """A command's output as NOTICEs from the service: ``done`` if it
        printed nothing, and its exit status when it failed."""
        lines = result.output.splitlines() or ["done"]
        if result.status:
            lines.append(f"(exit status {result.status})")
        notice = self.gateway.messages
        self._send(
            b"".join(
                notice("NOTICE", source(SERVICE), self.me, line or " ", {})
                for line in lines
            )
        )


def _prefixed(name: str) -> str:
    """A name as NAMES shows it: root, the operator, with ``@``."""
    return "@" + name if name == ROOT_NAME else name


def _word(text: str) -> str:
    """Client-given ``text`` made safe as a middle parameter of a reply."""
    return scrub(text).replace(" ", "").lstrip(":")[:64] or "*"


class IrcProtocol(ChatProtocol):
    """One IRC connection: the chat port's carrier (output backlog, rounds
    of room events, TLS, ``TCP_NODELAY``) with IRC's framing and dialect."""

    def __init__(self, gateway: IrcGateway) -> None:
        super().__init__(gateway.pool)
        self.gateway = gateway
        self._framer = LineFramer()

    def make_dialect(self, host: str, peer: str, handshaking: bool) -> IrcDialect:
        return IrcDialect(self.gateway, host, peer, self, handshaking=handshaking)


class IrcFactory(ServerFactory):
    """Makes an `IrcProtocol` for each connection to the IRC gateway."""

    noisy = False

    def __init__(self, pool: PartyPool, channel: str = DEFAULT_CHANNEL) -> None:
        self.gateway = IrcGateway(pool, channel)

    def buildProtocol(self, addr: IAddress) -> IrcProtocol:  # noqa: N802
        protocol = IrcProtocol(self.gateway)
        protocol.factory = self
        return protocol
