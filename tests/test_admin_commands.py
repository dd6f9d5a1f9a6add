"""The root commands against a Room of fake members, a task.Clock and a real Store.

No sockets: each fake member records the lines it would have been sent.  The
store-backed commands (requests, ban, unban, bans) run against SQLite in a
temporary directory, so those tests wait on adbapi's thread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from partypool.admin.commands import BANNED, AdminCommands, Operator, Result
from partypool.room.auth import ChatVerifier
from partypool.room.pool import SHUTDOWN_CANCELLED, make_server
from partypool.room.room import Event
from partypool.room.store import Store
from partypool.tls import ConfigError
from tests.helpers import make_pool

OPERATOR = Operator("key SHA256:abc", "127.0.0.1:50000")


@attrs.define(eq=False)
class FakeMember:
    host: str
    port: int
    name: str | None = None
    since: float = 0.0
    lines: list[str] = attrs.Factory(list)
    closed: bool = False

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    def deliver(self, event: Event) -> None:
        self.lines.append(event.wire.decode("utf-8").rstrip("\r\n"))

    def disconnect(self, reason: str) -> None:
        self.lines.append(f"BYE {reason}")
        self.closed = True


class CommandsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.stopped = []
        self.store = Store(Path(self.mktemp() + ".sqlite3"))
        self.addCleanup(self.store.close)
        self.pool = make_server(
            verifier=ChatVerifier.from_passkey("passkey", 4096),
            store=self.store,
            clock=self.clock,
            server_name="test",
            allow_same_ip=True,
            stop_server=lambda: self.stopped.append(True),
        )
        self.commands = AdminCommands(self.pool, OPERATOR)
        self.alice = self.connect("127.0.5.1", 4001, "alice")
        self.bob = self.connect("127.0.5.2", 4002, "bob")
        self.carol = self.connect("127.0.5.2", 4003, "Carol")
        self.alice.lines.clear()
        self.bob.lines.clear()
        self.carol.lines.clear()

    def connect(self, host: str, port: int, name: str | None) -> FakeMember:
        member = FakeMember(host, port, since=self.clock.seconds())
        self.clock.advance(1)
        self.pool.connections.add(member)
        if name is not None:
            self.pool.room.join(member, name)
        return member

    def run_sync(self, line: str) -> Result:
        """Commands that touch no store answer at once."""
        return self.successResultOf(self.commands.run(line))

    def assert_usage_error(self, line: str) -> None:
        """``line`` fails (status 1) with one line of reason, then its usage."""
        with self.subTest(line=line):
            result = self.run_sync(line)
            self.assertEqual(result.status, 1)
            reason, usage = result.output.split("\n")
            self.assertTrue(reason.startswith(line.split()[0] + ": "), reason)
            self.assertTrue(usage.startswith("usage: " + line.split()[0]), usage)

    # -- list, parsing, unknown ----------------------------------------------

    def test_list_and_help_show_every_command_with_usage(self) -> None:
        """list and help print the table, one command per line with its usage."""
        result = self.run_sync("list")
        self.assertEqual(result.status, 0)
        for usage in ("list-conn [-ip | -u]", "remove -ip <ip> | -u <name>", "exit"):
            self.assertIn(usage, result.output)
        self.assertEqual(self.run_sync("help").output, result.output)
        self.assertNotIn("manhole", result.output)

    def test_help_is_an_alias_not_a_second_row(self) -> None:
        rows = self.run_sync("list").output.splitlines()
        self.assertEqual([r for r in rows if r.startswith("list ")], [rows[0]])
        self.assertIn("help", rows[0])
        self.assertFalse([r for r in rows if r.startswith("help")])
        self.assertIn("help", self.commands.names())

    def test_manhole_is_listed_only_when_enabled(self) -> None:
        """--manhole adds the manhole command, which asks the front end to switch."""
        commands = AdminCommands(self.pool, OPERATOR, manhole=True)
        self.assertIn("manhole", commands.names())
        result = self.successResultOf(commands.run("manhole"))
        self.assertEqual(result.action, "manhole")
        self.assertEqual(self.run_sync("manhole").status, 1)

    def test_reload_tls(self) -> None:
        """reload-tls (offered when the server can reload) reports either outcome."""
        self.assertNotIn("reload-tls", self.commands.names())
        outcomes = ["AB:CD"]

        def reload() -> str:
            if not outcomes:
                raise ConfigError("key.pem: no such file")
            return outcomes.pop()

        commands = AdminCommands(self.pool, OPERATOR, reload_tls=reload)
        ok = self.successResultOf(commands.run("reload-tls"))
        self.assertEqual(
            ok.output, "TLS certificate reloaded: SHA-256 fingerprint AB:CD"
        )
        failed = self.successResultOf(commands.run("reload-tls"))
        self.assertEqual(
            failed, Result("certificate kept, reload failed: key.pem: no such file", 1)
        )

    def test_unknown_command_hints_at_list_and_is_logged(self) -> None:
        """Every line root types is logged with the login method and address."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        result = self.run_sync("frobnicate now")
        self.assertEqual(result.status, 1)
        self.assertIn("type list", result.output)
        self.assertIn(
            "root (key SHA256:abc from 127.0.0.1:50000) ran 'frobnicate now': status 1",
            [formatEvent(e) for e in events],
        )

    def test_empty_line_does_nothing(self) -> None:
        self.assertEqual(self.run_sync("   "), Result(""))

    def test_unclosed_quote_is_one_clear_error(self) -> None:
        result = self.run_sync('send -all "oops')
        self.assertEqual(result.status, 1)
        self.assertIn("quotation", result.output)

    def test_exit_asks_the_front_end_to_log_out(self) -> None:
        self.assertEqual(self.run_sync("exit").action, "exit")
        self.assertEqual(self.run_sync("exit now").status, 1)

    def test_wrong_syntax_gives_the_reason_and_the_usage(self) -> None:
        """Each usage error is one line of reason, then that command's usage."""
        for line in (
            "list-conn -x",
            "remove bob",
            "remove -ip not-an-ip",
            "send -all",
            "send -everyone hi",
            "send -all two words",
            "close-server -t soon",
            "close-server -t -5",
            "close-server -m",
            "close-server -x 1",
            "close-server -t 1 -t 2",
            "requests -n 0",
            "stats now",
            "ban -u",
            "bans all",
        ):
            self.assert_usage_error(line)

    # -- list-conn -----------------------------------------------------------

    def test_list_conn_shows_address_name_and_since(self) -> None:
        """Every open connection, oldest first; one still logging in shows '-'."""
        self.connect("127.0.5.9", 4009, None)
        lines = self.run_sync("list-conn").output.splitlines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[0], "127.0.5.1:4001  alice  2023-11-14 22:13:20Z")
        self.assertTrue(lines[3].startswith("127.0.5.9:4009  -  "))

    def test_list_conn_ip_and_u(self) -> None:
        self.assertEqual(
            self.run_sync("list-conn -ip").output, "127.0.5.1\n127.0.5.2\n127.0.5.2"
        )
        self.assertEqual(self.run_sync("list-conn -u").output, "alice\nbob\nCarol")

    def test_list_conn_when_nobody_is_here(self) -> None:
        self.pool.connections.clear()
        self.assertEqual(self.run_sync("list-conn").output, "no connections")

    # -- remove ----------------------------------------------------------------

    def test_remove_by_name(self) -> None:
        """The user gets BYE removed by admin; everyone else LEFT <name> …."""
        result = self.run_sync("remove -u BOB")
        self.assertEqual((result.status, result.output), (0, "removed 1 connection"))
        self.assertEqual(self.bob.lines, ["BYE removed by admin"])
        self.assertEqual(self.alice.lines, ["LEFT bob removed by admin"])
        self.assertEqual(self.pool.room.names(), ["alice", "Carol"])

    def test_remove_by_address_takes_every_connection_from_it(self) -> None:
        result = self.run_sync("remove -ip 127.0.5.2")
        self.assertEqual(result.output, "removed 2 connections")
        self.assertTrue(self.bob.closed and self.carol.closed)
        self.assertEqual(
            self.alice.lines,
            ["LEFT bob removed by admin", "LEFT Carol removed by admin"],
        )

    def test_remove_nobody(self) -> None:
        self.assertEqual(self.run_sync("remove -u dave").status, 1)
        self.assertEqual(self.run_sync("remove -ip 10.9.9.9").status, 1)
        self.assertFalse(self.alice.lines)

    # -- send -----------------------------------------------------------------

    def test_send_all(self) -> None:
        """send -all reaches everyone as NOTICE, control characters scrubbed."""
        result = self.run_sync('send -all "party at \x1b[31meight"')
        self.assertEqual(result.output, "sent to 3 users")
        for member in (self.alice, self.bob, self.carol):
            self.assertEqual(member.lines, ["NOTICE party at [31meight"])

    def test_send_to_addresses(self) -> None:
        result = self.run_sync('send -ip 127.0.5.1 127.0.5.2 "hello there"')
        self.assertEqual((result.status, result.output), (0, "sent to 3 users"))
        self.assertEqual(self.carol.lines, ["NOTICE hello there"])

    def test_send_to_an_address_given_twice_sends_once(self) -> None:
        result = self.run_sync('send -ip 127.0.5.2 127.0.5.2 "once"')
        self.assertEqual((result.status, result.output), (0, "sent to 2 users"))
        self.assertEqual(self.bob.lines, ["NOTICE once"])
        self.assertEqual(self.carol.lines, ["NOTICE once"])

    def test_send_to_an_address_with_nobody_fails_but_reaches_the_rest(self) -> None:
        result = self.run_sync("send -ip 127.0.5.1 127.0.5.7 hi")
        self.assertEqual(result.status, 1)
        self.assertIn("no user at 127.0.5.7", result.output)
        self.assertEqual(self.alice.lines, ["NOTICE hi"])
        self.assertFalse(self.bob.lines)

    def test_send_to_a_name(self) -> None:
        self.assertEqual(self.run_sync("send -u carol 'just you'").status, 0)
        self.assertEqual(self.carol.lines, ["NOTICE just you"])
        self.assertFalse(self.alice.lines)
        self.assertEqual(self.run_sync("send -u nobody hi").status, 1)

    # -- close-server ------------------------------------------------------------

    def test_close_server_counts_down_then_says_bye_and_stops(self) -> None:
        result = self.run_sync('close-server -t 2 -m "bye"')
        self.assertEqual(result.output, "server closing in 2 s: bye")
        self.assertEqual(self.alice.lines, ["SHUTDOWN 2 bye"])
        self.clock.advance(1)
        self.assertEqual(self.alice.lines[-1], "SHUTDOWN 1 bye")
        self.clock.advance(1)
        self.assertEqual(self.alice.lines[-1], "BYE bye")
        self.assertEqual(self.stopped, [True])
        self.assertFalse(self.clock.getDelayedCalls())

    def test_close_server_defaults_to_now(self) -> None:
        self.assertEqual(
            self.run_sync("close-server").output, "server closing now: server closing"
        )
        self.assertEqual(self.bob.lines, ["BYE server closing"])
        self.assertEqual(self.stopped, [True])

    def test_close_server_cancel(self) -> None:
        self.run_sync("close-server -t 30")
        result = self.run_sync("close-server --cancel")
        self.assertEqual(
            (result.status, result.output), (0, "shutdown cancelled; everyone was told")
        )
        self.assertFalse(self.clock.getDelayedCalls())
        self.assertEqual(self.run_sync("close-server --cancel").status, 1)
        self.assertEqual(self.stopped, [])

    # -- stats --------------------------------------------------------------------

    def test_stats(self) -> None:
        """Uptime from the clock, named users vs open connections, room counters."""
        self.connect("127.0.5.9", 4009, None)
        self.pool.room.say(self.alice, "hi")
        self.clock.advance(90_000)
        rows = dict(
            line.split(None, 1) for line in self.run_sync("stats").output.splitlines()
        )
        self.assertEqual(rows["uptime"], "1d 01:00:04")
        self.assertEqual(rows["connected"], "3 users, 4 open connections")
        self.assertEqual(rows["peak"], "3 users")
        self.assertEqual(rows["messages"], "1")
        self.assertEqual(rows["written"], "0 writes in 0 rounds")  # no chat port
        self.pool.gatherer.rounds, self.pool.gatherer.writes = 2, 7
        output = self.run_sync("stats").output
        self.assertIn("written    7 writes in 2 rounds", output.splitlines())

    # -- store-backed: requests and bans -------------------------------------------

    @inlineCallbacks
    def test_requests_newest_first_and_limited(self) -> Deferred:
        empty = yield self.commands.run("requests")
        self.assertEqual(empty.output, "no requests")
        for text in ("first", "second", "third"):
            yield self.store.add_request("alice", "127.0.5.1", text, per_day=20)
        result = yield self.commands.run("requests -n 2")
        lines = result.output.splitlines()
        self.assertEqual(len(lines), 2)
        self.assertTrue(lines[0].startswith("#3  "), lines[0])
        self.assertTrue(lines[0].endswith("alice (127.0.5.1): third"), lines[0])

    @inlineCallbacks
    def test_ban_address_kicks_persists_and_unbans(self) -> Deferred:
        result = yield self.commands.run("ban -ip 127.0.5.2")
        self.assertEqual(
            (result.status, result.output), (0, "banned ip 127.0.5.2; kicked 2")
        )
        self.assertEqual(self.bob.lines, ["BYE banned by admin"])
        self.assertIn("LEFT bob banned by admin", self.alice.lines)
        self.assertIn("127.0.5.2", self.pool.room.banned_hosts)
        self.assertIsNotNone(self.pool.room.admission_error("127.0.5.2"))
        bans = yield self.store.bans()
        self.assertEqual([(b.kind, b.value) for b in bans], [("ip", "127.0.5.2")])
        listed = yield self.commands.run("bans")
        self.assertIn("ip    127.0.5.2  since ", listed.output)
        result = yield self.commands.run("unban -ip 127.0.5.2")
        self.assertEqual(result.output, "unbanned ip 127.0.5.2")
        self.assertNotIn("127.0.5.2", self.pool.room.banned_hosts)
        self.assertEqual((yield self.store.bans()), [])
        again = yield self.commands.run("unban -ip 127.0.5.2")
        self.assertEqual(again.status, 1)

    @inlineCallbacks
    def test_ban_a_network_kicks_everyone_in_it_and_refuses_newcomers(
        self,
    ) -> Deferred:
        """``ban -ip`` takes a CIDR (IPv6 or IPv4); an IPv6 address bans its
        /64, as every per-address rule counts IPv6 peers by /64."""
        inside = [
            self.connect(f"2001:db8::{i}", 5000 + i, f"v6user{i}") for i in (1, 2)
        ]
        pending = self.connect("2001:db8::ff", 5003, None)  # still logging in
        outside = self.connect("2001:db8:0:1::1", 5004, "neighbour")
        result = yield self.commands.run("ban -ip 2001:db8::/64")
        self.assertEqual(
            (result.status, result.output), (0, "banned ip 2001:db8::/64; kicked 3")
        )
        for member in (*inside, pending):
            self.assertEqual(member.lines[-1], "BYE banned by admin")
        self.assertFalse(outside.closed)
        self.assertEqual(
            self.pool.room.admission_error("2001:db8::abcd").code, "banned"
        )
        result = yield self.commands.run("ban -ip 2001:db8:0:1::9")
        self.assertEqual(result.output, "banned ip 2001:db8:0:1::/64; kicked 1")
        result = yield self.commands.run("ban -ip 127.0.0.0/16")
        self.assertEqual(result.output, "banned ip 127.0.0.0/16; kicked 3")
        bans = yield self.store.bans()
        self.assertEqual(
            sorted(b.value for b in bans),
            ["127.0.0.0/16", "2001:db8:0:1::/64", "2001:db8::/64"],
        )
        result = yield self.commands.run("unban -ip 2001:db8::1/64")
        self.assertEqual(result.output, "unbanned ip 2001:db8::/64")
        self.assertIsNone(self.pool.room.admission_error("2001:db8::abcd"))
        self.assertIsNotNone(self.pool.room.admission_error("127.0.9.9"))

    @inlineCallbacks
    def test_unban_lifts_an_address_ban_stored_before_bans_were_networks(
        self,
    ) -> Deferred:
        """A row of an older server holds the IPv6 address itself; loaded,
        it bans the /64, and ``unban -ip`` with that address lifts it."""
        yield self.store.add_ban("ip", "2001:db8::5", BANNED)
        self.pool.room.banned_hosts.add("2001:db8::5")
        result = yield self.commands.run("unban -ip 2001:db8::5")
        self.assertEqual(result.output, "unbanned ip 2001:db8::/64")
        self.assertEqual((yield self.store.bans()), [])
        self.assertIsNone(self.pool.room.admission_error("2001:db8::9"))

    def test_ban_refuses_what_is_no_address_or_network(self) -> None:
        for text in ("10.0.0.0/33", "example.com", "2001:db8::/x", "ff00::/8"):
            result = self.run_sync(f"ban -ip {text}")
            self.assertEqual(result.status, 1)
            self.assertRegex(result.output, "not an IP address|no client addresses")
        self.assertEqual(len(self.pool.room.banned_hosts), 0)

    @inlineCallbacks
    def test_ban_name_stores_the_name_key(self) -> Deferred:
        """A name ban is kept case-folded, so Carol and CAROL are the same ban."""
        result = yield self.commands.run("ban -u CAROL")
        self.assertEqual(result.output, "banned name CAROL; kicked 1")
        self.assertEqual(self.carol.lines, ["BYE banned by admin"])
        self.assertIn("carol", self.pool.room.banned_names)
        bans = yield self.store.bans()
        self.assertEqual([(b.kind, b.value) for b in bans], [("name", "carol")])
        result = yield self.commands.run("unban -u Carol")
        self.assertEqual(result.status, 0)
        self.assertEqual(self.pool.room.banned_names, set())

    @inlineCallbacks
    def test_ban_refuses_an_invalid_name(self) -> Deferred:
        result = yield self.commands.run("ban -u 'two words'")
        self.assertEqual(result.status, 1)
        self.assertIn("usage: ban", result.output)
        self.assertEqual((yield self.store.bans()), [])

    def test_store_failure_is_a_failed_command(self) -> None:
        """If the database fails, the command says so with status 1 (and logs it)."""

        class BrokenStore:
            def bans(self) -> Deferred:
                return fail(sqlite3.OperationalError("disk I/O error"))

        self.pool.store = BrokenStore()
        result = self.run_sync("bans")
        self.assertEqual(result, Result("bans failed: disk I/O error", 1))
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)

    # -- mute, unmute, mutes (the session refusing a muted user's messages is
    # in tests/test_room_ii.py) -------------------------------------------------

    def test_mute_for_a_while_by_name_and_address(self) -> None:
        self.pool.room.allow_same_ip = False  # else by name only (test_room_ii)
        result = self.run_sync("mute -u ALICE -t 60")
        self.assertEqual(result, Result("muted alice for 60 s (and address 127.0.5.1)"))
        self.assertEqual(
            self.alice.lines, ["NOTICE the administrator muted you for 60 s"]
        )
        mutes = self.pool.mutes
        self.assertEqual(mutes.remaining("alice", "127.0.0.9"), 60)
        self.assertEqual(mutes.remaining("someone", "127.0.5.1"), 60)  # her address
        self.assertEqual(
            self.run_sync("mutes").output, "alice  127.0.5.1  00:01:00 left"
        )
        self.clock.advance(60)
        self.assertIsNone(mutes.remaining("alice", "127.0.5.1"))
        self.assertEqual(self.run_sync("mutes").output, "no mutes")

    def test_mute_until_lifted_and_unmute(self) -> None:
        self.assertEqual(
            self.run_sync("mute -u dave").output,
            "muted dave until unmuted (not online: by name only)",
        )
        self.run_sync("mute -u bob")  # by name only: --allow-same-ip
        self.assertEqual(
            self.run_sync("mutes").output.splitlines(),
            ["dave  -  until unmuted", "bob  -  until unmuted"],
        )
        self.assertEqual(self.run_sync("unmute -u BOB"), Result("unmuted BOB"))
        self.assertEqual(
            self.bob.lines[-1], "NOTICE the administrator lifted your mute"
        )
        self.assertIsNone(self.pool.mutes.remaining("bob", "127.0.5.2"))
        self.assertEqual(self.run_sync("unmute -u bob"), Result("bob was not muted", 1))

    def test_mute_usage_errors(self) -> None:
        for line in (
            "mute",
            "mute bob",
            "mute -u",
            "mute -t 5",
            "mute -u bob -t soon",
            "mute -u bob -t 0",
            "mute -u root",
            "mute -u a-b-c-d-e-f-g-h-i-j-k-l-m",
            "unmute",
            "unmute -u bob -t 5",
            "mutes now",
        ):
            self.assert_usage_error(line)
        self.assertEqual(self.pool.mutes.active(), [])


class AdminHardeningTests(unittest.TestCase):
    """Issue 12: addresses in any spelling, the cancel announced, hints on
    unquoted text, and notices that fit the line limit."""

    setUp = CommandsTests.setUp
    connect = CommandsTests.connect
    run_sync = CommandsTests.run_sync

    # -- addresses -------------------------------------------------------------

    def test_remove_and_send_find_connections_in_any_spelling(self) -> None:
        for spelling in (
            "::ffff:127.0.5.1",
            "0:0:0:0:0:ffff:7f00:501",
            "[::ffff:127.0.5.1]",
        ):
            with self.subTest(spelling=spelling):
                result = self.run_sync(f"send -ip {spelling} hi")
                self.assertEqual((result.status, result.output), (0, "sent to 1 user"))
        self.assertEqual(self.alice.lines, ["NOTICE hi"] * 3)
        result = self.run_sync("remove -ip ::FFFF:127.0.5.1")
        self.assertEqual((result.status, result.output), (0, "removed 1 connection"))

    def test_send_to_two_addresses_that_both_reach_someone_exits_zero(self) -> None:
        result = self.run_sync('send -ip ::ffff:127.0.5.1 127.0.5.2 "to all three"')
        self.assertEqual((result.status, result.output), (0, "sent to 3 users"))

    def test_ipv6_addresses_in_full_or_with_a_zone_match_the_compressed_form(
        self,
    ) -> None:
        dave = self.connect("2001:db8::7", 4004, "dave")
        for spelling in ("2001:DB8:0:0:0:0:0:7", "2001:db8::7%eth0", "[2001:db8::7]"):
            with self.subTest(spelling=spelling):
                self.assertEqual(self.run_sync(f"send -ip {spelling} x").status, 0)
        self.assertEqual(len(dave.lines), 3)

    @inlineCallbacks
    def test_ban_in_another_spelling_is_stored_normalised_and_matches(self) -> Deferred:
        result = yield self.commands.run("ban -ip ::ffff:127.0.5.2")
        self.assertEqual(result.output, "banned ip 127.0.5.2; kicked 2")
        self.assertIsNotNone(self.pool.room.admission_error("127.0.5.2"))
        bans = yield self.store.bans()
        self.assertEqual([b.value for b in bans], ["127.0.5.2"])
        result = yield self.commands.run("unban -ip 0:0::ffff:7f00:502")
        self.assertEqual((result.status, result.output), (0, "unbanned ip 127.0.5.2"))

    @inlineCallbacks
    def test_an_address_that_can_never_match_is_refused(self) -> Deferred:
        for command in ("ban -ip", "unban -ip", "remove -ip", "send -ip"):
            for address in ("0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"):
                line = f"{command} {address}" + (" hi" if command == "send -ip" else "")
                result = yield self.commands.run(line)
                self.assertEqual(result.status, 1, line)
                self.assertIn("never the address of a client", result.output)
            for address in ("alice", "127.1", "10.0.0.0/8", "::1::2"):
                result = yield self.commands.run(f"{command} {address} x")
                self.assertEqual(result.status, 1)
        self.assertEqual((yield self.store.bans()), [])

    @inlineCallbacks
    def test_a_network_no_client_has_is_refused_by_every_address_verb(
        self,
    ) -> Deferred:
        """Written as a network (``/32``, ``/128``, mapped IPv4): checked after
        mapping and clearing host bits, so no spelling gets past any verb that
        takes an address (attack review II, 12).  ``mute`` takes no address."""
        networks = (
            "0.0.0.0/32",
            "255.255.255.255/32",
            "::ffff:224.0.0.1/128",
            "::ffff:0.0.0.0/128",
            "::/128",
            "ff02::1/128",
            "::ffff:224.0.0.0/100",
        )
        for command in ("ban -ip", "unban -ip", "remove -ip", "send -ip"):
            for network in networks:
                line = f"{command} {network}" + (" hi" if command == "send -ip" else "")
                result = yield self.commands.run(line)
                self.assertEqual(result.status, 1, (line, result.output))
                self.assertRegex(
                    result.output,
                    "never the address of a client|holds no client addresses"
                    if command.endswith("ban -ip")
                    else "not an IP address",  # remove and send take addresses
                )
        self.assertEqual((yield self.store.bans()), [])
        self.assertEqual(len(self.pool.room.banned_hosts), 0)
        for member in (self.alice, self.bob, self.carol):
            self.assertEqual(member.lines, [])

    @inlineCallbacks
    def test_a_stored_ban_that_can_never_match_neither_stops_a_start_nor_stays(
        self,
    ) -> Deferred:
        """An older server stored ``ban -ip 0.0.0.0/32`` as ``0.0.0.0``: the
        next start skips it with a warning (it refused to start), and
        ``unban -ip 0.0.0.0`` removes it, as ``bans`` lists it."""
        for value in ("0.0.0.0", "224.0.0.1", "127.0.9.9"):
            yield self.store.add_ban("ip", value, BANNED)
        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        try:
            pool = make_server(
                verifier=ChatVerifier.from_passkey("passkey", 4096),
                store=self.store,
                clock=self.clock,
                server_name="test",
                bans=(yield self.store.bans()),
            )
        finally:
            globalLogPublisher.removeObserver(seen.append)
        self.assertEqual(len(pool.room.banned_hosts), 1)
        self.assertIn("127.0.9.9", pool.room.banned_hosts)
        warned = [formatEvent(e) for e in seen if "stored ban" in formatEvent(e)]
        self.assertEqual(len(warned), 2, warned)
        self.assertIn("unban -ip 0.0.0.0 removes it", warned[0])
        commands = AdminCommands(pool, OPERATOR)
        result = yield commands.run("unban -ip 0.0.0.0")
        self.assertEqual(
            (result.status, result.output),
            (0, "unbanned ip 0.0.0.0 (it could never match)"),
        )
        again = yield commands.run("unban -ip 0.0.0.0")
        self.assertEqual(again.status, 1)
        self.assertIn("never the address of a client", again.output)
        self.assertEqual(
            sorted(b.value for b in (yield self.store.bans())),
            ["127.0.9.9", "224.0.0.1"],
        )

    # -- close-server --cancel ----------------------------------------------

    def test_cancelling_a_shutdown_tells_everyone(self) -> None:
        self.run_sync('close-server -t 120 -m "maintenance"')
        self.assertEqual(self.alice.lines, ["SHUTDOWN 120 maintenance"])
        self.assertEqual(self.run_sync("close-server --cancel").status, 0)
        for member in (self.alice, self.bob, self.carol):
            self.assertEqual(member.lines[-1], f"NOTICE {SHUTDOWN_CANCELLED}")
        self.clock.advance(200)
        self.assertEqual(self.stopped, [])

    def test_rescheduling_a_shutdown_announces_only_the_new_one(self) -> None:
        self.run_sync("close-server -t 120")
        self.run_sync("close-server -t 30")
        self.assertEqual(
            self.alice.lines,
            ["SHUTDOWN 120 server closing", "SHUTDOWN 30 server closing"],
        )

    # -- unquoted text ---------------------------------------------------------

    def test_unquoted_messages_get_the_quotes_hint(self) -> None:
        for line in (
            "close-server -t 5 -m Maint now",
            "close-server -m Maint now -t 5",
            "close-server -m back soon",
            "send -ip 127.0.5.1 hello world",
            "send -all hello world",
            "send -u bob hello world",
        ):
            with self.subTest(line=line):
                result = self.run_sync(line)
                self.assertEqual(result.status, 1)
                self.assertIn("in quotes", result.output.splitlines()[0])
        self.assertIsNone(self.pool.countdown)
        self.assertFalse(self.alice.lines)

    # -- notice text -----------------------------------------------------------

    def test_notices_that_render_as_nothing_are_empty(self) -> None:
        for line in (
            'send -all "\u3164"',
            "send -u bob '\u200b'",
            'close-server -m "\u2800"',
        ):
            with self.subTest(line=line):
                result = self.run_sync(line)
                self.assertEqual(result.status, 1)
                self.assertIn("the message is empty", result.output)
        self.assertFalse(self.alice.lines)

    def test_notices_and_shutdown_messages_must_fit_the_line_limit(self) -> None:
        max_line = self.pool.limits.max_line
        for line in (
            f'send -all "{"n" * max_line}"',
            f'close-server -m "{"c" * 4000}"',
        ):
            with self.subTest(line=line[:20]):
                result = self.run_sync(line)
                self.assertEqual(result.status, 1)
                self.assertIn("the message is too long", result.output)
        self.assertFalse(self.alice.lines)
        self.assertIsNone(self.pool.countdown)
        self.assertEqual(self.run_sync(f'send -all "{"n" * 3900}"').status, 0)


@pytest.mark.parametrize(
    "command",
    ["mute -u bob -t", "close-server -t", "requests -n", "history -n"],
)
def test_a_number_past_any_range_is_a_usage_error(command, logged):
    """``-t`` or ``-n`` with 400 digits is bad input: a usage error (status 1,
    the usage shown), not an internal failure logged with a traceback (a
    float or an SQLite integer cannot hold it)."""
    pool = make_pool()
    commands = AdminCommands(pool, Operator("test", "127.0.0.1:1"))
    results = []
    commands.run(f"{command} {'9' * 400}").addCallback(results.append)
    (result,) = results
    assert result.status == 1
    assert "usage:" in result.output, result.output
    assert not [e for e in logged if e.get("log_failure") is not None]
    assert not pool.cancel_shutdown()  # nothing was scheduled
