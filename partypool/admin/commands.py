"""The root commands: one typed line in, output text and an exit status out.

Nothing here knows about SSH or terminals, so the interactive shell, a piped
script and ``ssh host <command>`` all run the same code, and the tests drive
it with a bare `Room` and a `task.Clock`.  The syntax is the seed's (quoting
like a shell: ``send -all "two words"``); wrong syntax gives one line saying
what is wrong plus that command's usage, with status 1.

Every command is logged with who ran it: the login method (``password`` or
``key SHA256:…``) and the source address.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from typing import Protocol, cast

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from partypool.room import room as events
from partypool.room.addresses import Network, ban_network, in_network, network_text
from partypool.room.pool import PartyPool, normal_address
from partypool.room.store import Ban, Request
from partypool.tls import ConfigError
from partypool.wire import (
    HISTORY_HEAD,
    NAME_MAX,
    WireError,
    check_fits,
    check_name,
    name_key,
    scrub,
    visible_text,
)

log = Logger(namespace="partypool.admin")

REMOVED = "removed by admin"
BANNED = "banned by admin"
DEFAULT_CLOSE_MESSAGE = "server closing"
DEFAULT_REQUESTS = 20
DEFAULT_HISTORY = 20
_QUOTES = "put the message in quotes"
# The widest name, in bytes: a close-server message is also the reason in
# "LEFT <name> <message>".
_WIDEST_NAME = "x" * (NAME_MAX * 4)
_USAGE_WIDTH = 28  # the usage column of `list`


@attrs.frozen
class Operator:
    """Who is typing: how root logged in, and from where (for the log)."""

    method: str  # "password" or "key SHA256:…"
    address: str  # host:port


@attrs.frozen
class Result:
    """What one command produced.

    ``action`` asks the front end to do something only it can: ``"exit"``
    (log out) or ``"manhole"`` (switch the terminal to a Python shell).
    """

    output: str
    status: int = 0
    action: str | None = None


class _Listed(Protocol):
    """What ``list-conn`` shows of a connection (session.Session has it)."""

    name: str | None
    host: str
    peer: str
    since: float


class UsageError(Exception):
    """Wrong syntax for one command; the message says what is wrong."""


@attrs.frozen
class _Command:
    usage: str
    help: str
    run: Callable[[list[str]], Result | Deferred[Result]]
    listed: bool = True  # False: an alias, run and completed but not in the table


class AdminCommands:
    """Parses and runs root command lines against a live `PartyPool`."""

    def __init__(
        self,
        pool: PartyPool,
        operator: Operator,
        *,
        manhole: bool = False,
        reload_tls: Callable[[], str] | None = None,
    ) -> None:
        self.pool = pool
        self.operator = operator
        self.reload_tls = reload_tls
        table = {
            "list": _Command("list", "show this table (help does too)", self._list),
            "help": _Command("help", "show this table", self._list, listed=False),
            "list-conn": _Command(
                "list-conn [-ip | -u]",
                "active connections (ip:port  name  since)",
                self._list_conn,
            ),
            "remove": _Command(
                "remove -ip <ip> | -u <name>", "disconnect a user", self._remove
            ),
            "send": _Command(
                'send -all "<msg>" | -ip <ip> [<ip> …] "<msg>" | -u <name> "<msg>"',
                "send a NOTICE",
                self._send,
            ),
            "close-server": _Command(
                'close-server [-t <seconds>] [-m "<msg>"] | --cancel',
                "shut the server down (after a countdown)",
                self._close_server,
            ),
            "requests": _Command(
                "requests [-n <count>]", "stored requests, newest first", self._requests
            ),
            "ban": _Command(
                "ban -ip <ip or CIDR> | -u <name>",
                "ban for good, kicking matches",
                self._ban,
            ),
            "unban": _Command(
                "unban -ip <ip or CIDR> | -u <name>", "lift a ban", self._unban
            ),
            "bans": _Command("bans", "list the bans", self._bans),
            "mute": _Command(
                "mute -u <name> [-t <seconds>]",
                "stop a user's messages (until unmuted)",
                self._mute,
            ),
            "unmute": _Command("unmute -u <name>", "lift a mute", self._unmute),
            "mutes": _Command("mutes", "list the mutes", self._mutes),
            "history": _Command(
                "history [-n <count>]", "the room's kept messages", self._history
            ),
            "clear-history": _Command(
                "clear-history", "erase the kept messages", self._clear_history
            ),
            "stats": _Command("stats", "uptime, users and traffic", self._stats),
            "exit": _Command("exit", "log out (Ctrl-D too)", self._exit),
        }
        if reload_tls is not None:
            table["reload-tls"] = _Command(
                "reload-tls", "load the chat certificate files again", self._reload
            )
        if manhole:
            table["manhole"] = _Command(
                "manhole", "Python shell in the live server", self._manhole
            )
        self._table = table

    def names(self) -> list[str]:
        """The command names, for tab completion."""
        return list(self._table)

    def run(self, line: str) -> Deferred[Result]:
        """Run one command line; the Deferred never fails (errors are a Result).

        Every non-empty line is logged with its status, mistakes included.
        """
        try:
            words = shlex.split(line)
        except ValueError as e:
            outcome = defer.succeed(Result(f"cannot parse the line: {e}", 1))
        else:
            if not words:
                return defer.succeed(Result(""))
            outcome = self._dispatch(words[0], words[1:])
        return outcome.addCallback(self._logged, line)

    def _dispatch(self, name: str, args: list[str]) -> Deferred[Result]:
        command = self._table.get(name)
        if command is None:
            shown = scrub(name)[:40]
            return defer.succeed(
                Result(f"unknown command {shown!r}: type list for the commands", 1)
            )
        return defer.maybeDeferred(command.run, args).addErrback(self._failed, name)

    def _failed(self, failure: Failure, name: str) -> Result:
        if failure.check(UsageError):
            usage = self._table[name].usage
            return Result(f"{name}: {failure.value}\nusage: {usage}", 1)
        log.failure("root command {name} failed", failure=failure, name=name)
        return Result(f"{name} failed: {failure.getErrorMessage()}", 1)

    def _logged(self, result: Result, line: str) -> Result:
        log.info(
            "root ({method} from {address}) ran {line!r}: status {status}",
            method=self.operator.method,
            address=self.operator.address,
            line=line,
            status=result.status,
        )
        return result

    # -- the commands ----------------------------------------------------

    def _list(self, args: list[str]) -> Result:
        """The table; a usage too long for the column gets a line of its own."""
        _no_arguments(args)
        lines = []
        for command in self._table.values():
            if not command.listed:
                continue
            if len(command.usage) > _USAGE_WIDTH:
                lines += [command.usage, " " * (_USAGE_WIDTH + 2) + command.help]
            else:
                lines.append(f"{command.usage:<{_USAGE_WIDTH}}  {command.help}")
        return Result("\n".join(lines))

    def _list_conn(self, args: list[str]) -> Result:
        if len(args) > 1 or (args and args[0] not in ("-ip", "-u")):
            raise UsageError("expected nothing, -ip or -u")
        connections = self._connections()
        if args == ["-u"]:
            lines = self.pool.room.names()
        elif args == ["-ip"]:
            lines = [c.host for c in connections]
        else:
            lines = [
                f"{c.peer}  {c.name or '-'}  {_when(c.since)}" for c in connections
            ]
        return Result("\n".join(lines) or "no connections")

    def _remove(self, args: list[str]) -> Result:
        kind, value = _target(args)
        if kind == "ip":
            found = self._from_host(value)
            if not found:
                return Result(f"no connection from {value}", 1)
        else:
            member = self.pool.room.by_name(value)
            if member is None:
                return Result(f"no user named {value}", 1)
            found = [member]
        for connection in found:
            self.pool.room.remove(connection, REMOVED)
        return Result(f"removed {_count(len(found), 'connection')}")

    def _send(self, args: list[str]) -> Result:
        if len(args) < 2 or args[0] not in ("-all", "-ip", "-u"):
            raise UsageError("expected -all, -ip or -u, then the message")
        option, targets = args[0], args[1:-1]
        text = self._message(args[-1], *HISTORY_HEAD, "NOTICE")
        event, room = events.notice(text), self.pool.room
        if option == "-all":
            if targets:
                raise UsageError(_QUOTES)
            return Result(f"sent to {_count(room.announce(event), 'user')}")
        if option == "-u":
            if len(targets) != 1:
                raise UsageError("give one name, then the message in quotes")
            member = room.by_name(targets[0])
            if member is None:
                return Result(f"no user named {targets[0]}", 1)
            room.send_to([member], event)
            return Result("sent to 1 user")
        if not targets:
            raise UsageError("give at least one address, then the message")
        members, missing = [], []
        # Each address once, however often or however spelled (::1, 0::1).
        for address in dict.fromkeys(_address(a, hint=_QUOTES) for a in targets):
            found = room.by_host(address)
            members.extend(found)
            if not found:
                missing.append(address)
        room.send_to(members, event)
        output = f"sent to {_count(len(members), 'user')}"
        if missing:
            return Result(f"{output}; no user at {', '.join(missing)}", 1)
        return Result(output)

    def _close_server(self, args: list[str]) -> Result:
        if args == ["--cancel"]:
            if self.pool.cancel_shutdown():
                return Result("shutdown cancelled; everyone was told")
            return Result("no shutdown is pending", 1)
        options = _options(args, {"-t", "-m"}, text="-m")
        seconds = _number(options.get("-t", "0"), "-t", minimum=0)
        # Sent as "SHUTDOWN <seconds> <message>", then "BYE <message>", and
        # each leaving user's "LEFT <name> <message>" (the longest).
        message = self._message(
            options.get("-m", DEFAULT_CLOSE_MESSAGE), "LEFT", _WIDEST_NAME
        )
        self.pool.schedule_shutdown(seconds, message)
        if seconds:
            return Result(f"server closing in {seconds} s: {message}")
        return Result(f"server closing now: {message}")

    def _message(self, text: str, *head: str) -> str:
        """Free text for users, as the chat port takes it (`visible_text`),
        short enough to be relayed as ``<head…> <text>`` in one line."""
        message = visible_text(text)
        if not message:
            raise UsageError("the message is empty")
        try:
            check_fits(message, self.pool.limits.max_line, *head)
        except WireError as e:
            raise UsageError(f"the message is too long: {e.text}") from None
        return message

    def _requests(self, args: list[str]) -> Deferred[Result]:
        options = _options(args, {"-n"})
        limit = _number(options.get("-n", str(DEFAULT_REQUESTS)), "-n", minimum=1)
        return self.pool.store.recent_requests(limit).addCallback(_show_requests)

    def _ban(self, args: list[str]) -> Deferred[Result]:
        kind, value, network = _ban_target(args)

        def apply(_: None) -> Result:
            room = self.pool.room
            if network is not None:
                room.banned_hosts.add(network)
                kicked = [c for c in self._connections() if in_network(c.host, network)]
            else:
                room.banned_names.add(value)
                member = room.by_name(args[1])
                kicked = [] if member is None else [member]
            for connection in kicked:
                room.remove(connection, BANNED)
            shown = value if kind == "ip" else args[1]
            return Result(f"banned {kind} {shown}; kicked {len(kicked)}")

        return self.pool.store.add_ban(kind, value, BANNED).addCallback(apply)

    def _unban(self, args: list[str]) -> Deferred[Result]:
        try:
            kind, value, network = _ban_target(args)
        except UsageError as e:
            if len(args) != 2 or args[0] != "-ip":
                raise
            return self._unban_unmatchable(args[1].strip(), e)

        def apply(removed: bool) -> Result:
            room = self.pool.room
            if network is not None:
                room.banned_hosts.discard(network)
            else:
                room.banned_names.discard(value)
            shown = value if kind == "ip" else args[1]
            if not removed:
                return Result(f"{kind} {shown} was not banned", 1)
            return Result(f"unbanned {kind} {shown}")

        # A ban stored before bans were networks keeps the address as typed.
        keys = {value, *_stored_before_networks(args[1], network)}
        removals = [self.pool.store.remove_ban(kind, key) for key in keys]
        return defer.gatherResults(removals).addCallback(any).addCallback(apply)

    def _unban_unmatchable(self, value: str, error: UsageError) -> Deferred[Result]:
        """Remove a ban an older server stored although it could never match
        (``0.0.0.0``, not applied since: `make_server`), by its value as
        ``bans`` lists it; for any other value, ``error``."""

        def apply(removed: bool) -> Result:
            if not removed:
                raise error
            return Result(f"unbanned ip {value} (it could never match)")

        return self.pool.store.remove_ban("ip", value).addCallback(apply)

    def _bans(self, args: list[str]) -> Deferred[Result]:
        _no_arguments(args)
        return self.pool.store.bans().addCallback(_show_bans)

    def _mute(self, args: list[str]) -> Result:
        options = _options(args, {"-u", "-t"})
        if "-u" not in options:
            raise UsageError("give the name with -u")
        name = _checked_name(options["-u"])
        seconds = None
        if "-t" in options:
            seconds = _number(options["-t"], "-t", minimum=1)
        room = self.pool.room
        member = room.by_name(name)
        # An address that may carry several people (--allow-same-ip: a proxy,
        # a household) is no one's: muting it would silence them all.
        by_address = member is not None and not room.allow_same_ip
        hosts = frozenset({member.host}) if by_address else frozenset()
        self.pool.mutes.mute(name if member is None else member.name, hosts, seconds)
        how_long = "until unmuted" if seconds is None else f"for {seconds} s"
        if member is None:
            return Result(f"muted {name} {how_long} (not online: by name only)")
        room.send_to([member], events.notice(f"the administrator muted you {how_long}"))
        if not by_address:
            return Result(
                f"muted {member.name} {how_long} (by name only: the "
                "server allows several users per address)"
            )
        return Result(f"muted {member.name} {how_long} (and address {member.host})")

    def _unmute(self, args: list[str]) -> Result:
        options = _options(args, {"-u"})
        if "-u" not in options:
            raise UsageError("give the name with -u")
        name = options["-u"]
        if not self.pool.mutes.unmute(name):
            return Result(f"{scrub(name)[:40]} was not muted", 1)
        member = self.pool.room.by_name(name)
        if member is not None:
            self.pool.room.send_to(
                [member], events.notice("the administrator lifted your mute")
            )
        return Result(f"unmuted {scrub(name)[:40]}")

    def _mutes(self, args: list[str]) -> Result:
        _no_arguments(args)
        now = self.pool.mutes.clock.seconds()  # the steady clock mutes run on
        lines = []
        for mute in self.pool.mutes.active():
            left = (
                "until unmuted"
                if math.isinf(mute.until)
                else _duration(math.ceil(mute.until - now)) + " left"
            )
            hosts = " ".join(sorted(mute.hosts)) or "-"
            lines.append(f"{mute.name}  {hosts}  {left}")
        return Result("\n".join(lines) or "no mutes")

    def _history(self, args: list[str]) -> Result:
        options = _options(args, {"-n"})
        count = _number(options.get("-n", str(DEFAULT_HISTORY)), "-n", minimum=1)
        history = self.pool.history
        if history is None:
            return Result("no history is kept (--history 0)")
        lines = [
            f"#{e.id}  {e.time}  {' '.join((e.event.verb, *e.event.parts))}"
            for e in history.recent(count)
        ]
        return Result("\n".join(lines) or "no messages kept")

    def _clear_history(self, args: list[str]) -> Deferred[Result]:
        _no_arguments(args)
        history = self.pool.history  # None: off, but the database may hold some
        cleared = (
            self.pool.store.clear_history() if history is None else history.clear()
        )
        return cleared.addCallback(
            lambda count: Result(f"history cleared: {_count(count, 'message')} erased")
        )

    def _stats(self, args: list[str]) -> Result:
        _no_arguments(args)
        pool, stats, gatherer = self.pool, self.pool.room.stats, self.pool.gatherer
        uptime = int(pool.now() - pool.started)
        rows = [
            ("uptime", _duration(uptime)),
            (
                "connected",
                f"{_count(len(pool.room), 'user')}, "
                f"{_count(len(pool.connections), 'open connection')}",
            ),
            ("peak", _count(stats.peak, "user")),
            ("messages", str(stats.messages)),
            (
                "relayed",
                f"{stats.bytes_relayed} bytes in {stats.deliveries} deliveries",
            ),
            ("written", f"{gatherer.writes} writes in {gatherer.rounds} rounds"),
            ("requests", str(stats.requests)),
        ]
        return Result("\n".join(f"{label:<10} {value}" for label, value in rows))

    def _reload(self, args: list[str]) -> Result:
        """As SIGHUP; a failure is already logged and the old certificate kept."""
        _no_arguments(args)
        try:
            fp = self.reload_tls()
        except ConfigError as e:
            return Result(f"certificate kept, reload failed: {e}", 1)
        return Result(f"TLS certificate reloaded: SHA-256 fingerprint {fp}")

    def _exit(self, args: list[str]) -> Result:
        _no_arguments(args)
        return Result("logout", action="exit")

    def _manhole(self, args: list[str]) -> Result:
        _no_arguments(args)
        log.warn(
            "root ({method} from {address}) opened the Python manhole",
            method=self.operator.method,
            address=self.operator.address,
        )
        return Result(
            "Python shell; the pool is `pool`. Ctrl-D ends the session.",
            action="manhole",
        )

    def _from_host(self, host: str) -> list[_Listed]:
        """Every open connection from ``host``, named or still logging in."""
        return [c for c in self._connections() if c.host == host]

    def _connections(self) -> list[_Listed]:
        """Open connections, oldest first (``pool.connections`` is a set)."""
        listed = (cast(_Listed, c) for c in self.pool.connections)
        return sorted(listed, key=lambda c: (c.since, c.peer))


# -- argument helpers ---------------------------------------------------------


def _no_arguments(args: list[str]) -> None:
    if args:
        raise UsageError("takes no arguments")


def _target(args: list[str]) -> tuple[str, str]:
    """``-ip <ip>`` or ``-u <name>`` → ("ip", address) or ("name", name)."""
    if len(args) != 2 or args[0] not in ("-ip", "-u"):
        raise UsageError("expected -ip <ip> or -u <name>")
    if args[0] == "-ip":
        return "ip", _address(args[1])
    return "name", args[1]


def _ban_target(args: list[str]) -> tuple[str, str, Network | None]:
    """``-ip <ip or CIDR>`` or ``-u <name>`` → (kind, key as stored, network).

    An IPv6 address bans its /64, as the rules count IPv6 peers
    (`partypool.room.addresses`).
    """
    if len(args) != 2 or args[0] not in ("-ip", "-u"):
        raise UsageError("expected -ip <ip or network> or -u <name>")
    if args[0] == "-u":
        return "name", _name_key(args[1]), None
    try:
        network = ban_network(args[1])
    except ValueError as e:
        raise UsageError(str(e)) from None
    return "ip", network_text(network), network


def _stored_before_networks(text: str, network: Network | None) -> list[str]:
    """How an IPv6 address ban was stored before bans were networks (the
    address itself, not its /64), so ``unban`` lifts such a ban too."""
    if network is None or network.version != 6 or "/" in text:
        return []
    return [normal_address(text)]


def _address(text: str, hint: str = "") -> str:
    """An address in the form connections are named by (`normal_address`)."""
    try:
        return normal_address(text)
    except ValueError as e:
        raise UsageError(f"{e} ({hint})" if hint else str(e)) from None


def _name_key(name: str) -> str:
    return name_key(_checked_name(name))


def _checked_name(name: str) -> str:
    """``name`` as the room would spell it, or `UsageError` saying why not."""
    try:
        return check_name(name)
    except WireError as e:
        raise UsageError(e.text) from None


def _options(
    args: list[str], allowed: set[str], text: str | None = None
) -> dict[str, str]:
    """``-x value`` pairs, each option at most once.

    ``text`` is the option whose value is free text: a word after its value
    is most likely the rest of an unquoted message, and is said to be.
    """
    options: dict[str, str] = {}
    previous = None
    for index in range(0, len(args), 2):
        flag = args[index]
        if flag not in allowed:
            if text is not None and previous == text:
                raise UsageError(f'{_QUOTES}: {text} "{scrub(options[text])[:40]} …"')
            raise UsageError(f"unknown option {scrub(flag)[:40]}")
        if flag in options:
            raise UsageError(f"{flag} given twice")
        if index + 1 == len(args):
            raise UsageError(f"{flag} needs a value")
        options[flag] = args[index + 1]
        previous = flag
    return options


#: The largest number any option takes: seconds (about 31 years) or a count.
#: Past it a number is a typo, and far past it no float or SQLite integer
#: could hold it (an internal error, not a usage error).
MAX_NUMBER = 10**9


def _number(text: str, flag: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag} needs a whole number, not {text[:40]!r}") from None
    if value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}")
    if value > MAX_NUMBER:
        raise UsageError(f"{flag} must be at most {MAX_NUMBER}")
    return value


# -- output helpers -----------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {clock}" if days else clock


def _show_requests(requests: list[Request]) -> Result:
    lines = [
        f"#{r.id}  {r.created_at}  {r.name} ({r.address}): {scrub(r.text)}"
        for r in requests
    ]
    return Result("\n".join(lines) or "no requests")


def _show_bans(bans: list[Ban]) -> Result:
    lines = [f"{b.kind:<4}  {b.value}  since {b.created_at}" for b in bans]
    return Result("\n".join(lines) or "no bans")
