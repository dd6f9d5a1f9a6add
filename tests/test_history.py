"""The room's history: kept in memory, written behind in order, read by
HISTORY and the admin commands, pruned on a timer, and kept by SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from partypool.admin.commands import AdminCommands, Operator
from partypool.room import room as events
from partypool.room.history import (
    DAY,
    WRITE_EVERY,
    Entry,
    History,
    HistoryService,
    fitted,
)
from partypool.room.store import Store, load_history, migrate
from partypool.wire import HISTORY_HEAD, format_line
from tests.helpers import ROOT_PASSWORD, FakeStore, connect, make_pool, unit_limits

NOW = 1_764_467_404.123  # 2025-11-30T01:50:04.123Z


class SlowStore(FakeStore):
    """A store whose writes finish when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[list[Entry], defer.Deferred]] = []

    def add_history(self, entries: list[Entry], first_kept: int) -> defer.Deferred:
        d = defer.Deferred()
        self.writes.append(([e.id for e in entries], d))
        return d


def clock_at(seconds: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(seconds)
    return clock


def said(history: History, count: int = 100) -> list[str]:
    return [" ".join(e.event.parts) for e in history.recent(count)]


def test_entries_are_written_behind_in_order_in_batches():
    """The room never waits: a message is readable at once and written at
    most a second later, with everything said since the last write, in
    order; one write at a time."""
    clock = clock_at()
    store = SlowStore()
    history = History(store, clock, keep=10, days=7)
    history.record(events.chat("alice", "one"))
    history.record(events.chat("bob", "two"))
    assert said(history) == ["alice one", "bob two"]  # readable at once
    assert store.writes == []
    clock.advance(WRITE_EVERY)
    history.record(events.notice("three"))
    history.record(events.notice("four"))
    clock.advance(WRITE_EVERY)
    assert [ids for ids, _ in store.writes] == [[1, 2]]  # still under way
    store.writes[0][1].callback(None)
    clock.advance(WRITE_EVERY)
    assert [ids for ids, _ in store.writes] == [[1, 2], [3, 4]]
    store.writes[1][1].callback(None)
    assert clock.getDelayedCalls() == []


def test_flush_writes_at_once_and_waits_for_every_write():
    clock = clock_at()
    store = SlowStore()
    history = History(store, clock, keep=10, days=7)
    history.record(events.chat("alice", "one"))
    flushed = []
    history.flush().addCallback(flushed.append)
    history.record(events.chat("alice", "two"))  # while the first is written
    assert [ids for ids, _ in store.writes] == [[1]]
    store.writes[0][1].callback(None)
    assert [ids for ids, _ in store.writes] == [[1], [2]] and flushed == []
    store.writes[1][1].callback(None)
    assert flushed == [None] and clock.getDelayedCalls() == []


def test_a_failed_write_is_logged_and_the_next_one_goes_on():
    clock = clock_at()
    store = SlowStore()
    history = History(store, clock, keep=10, days=7)
    history.record(events.chat("alice", "one"))
    clock.advance(WRITE_EVERY)
    history.record(events.chat("alice", "two"))
    store.writes[0][1].errback(OSError("disk full"))
    clock.advance(WRITE_EVERY)
    assert [ids for ids, _ in store.writes] == [[1], [2]]
    assert said(history) == ["alice one", "alice two"]


def test_recent_keeps_the_last_n_and_forgets_the_expired():
    clock = clock_at()
    history = History(FakeStore(), clock, keep=3, days=1)
    for i in range(5):
        history.record(events.chat("alice", str(i)))
        clock.advance(DAY / 4)
    assert said(history) == ["alice 2", "alice 3", "alice 4"]
    assert said(history, 2) == ["alice 3", "alice 4"]
    assert [e.id for e in history.recent(3)] == [3, 4, 5]
    clock.advance(DAY / 2)  # message 2 is now older than a day
    assert said(history) == ["alice 3", "alice 4"]
    history.flush()
    assert [e.id for e in history.store.history] == [3, 4, 5]  # never more than 3


def test_entry_time_is_rfc3339_utc_with_milliseconds():
    assert Entry(1, NOW, events.notice("x")).time == "2025-11-30T01:50:04.123Z"


def test_no_history_kept_with_zero():
    store = FakeStore()
    history = History(store, clock_at(), keep=0, days=7)
    history.record(events.chat("alice", "hello"))
    assert history.recent(10) == [] and store.history == []


def test_prune_forgets_expired_and_surplus_and_never_fails():
    """Pruning drops what expired in memory and asks the store to delete
    rows by age and beyond the last N; a store failure is logged, not raised
    (a TimerService stops for good on a failure)."""
    clock = clock_at()
    store = FakeStore()
    history = History(store, clock, keep=2, days=1)
    for i in range(4):
        history.record(events.chat("alice", str(i)))
    clock.advance(DAY + 1)
    history.record(events.chat("alice", "late"))
    pruned = history.prune()
    assert pruned.called
    assert said(history) == ["alice late"]
    assert [e.id for e in store.history] == [5]
    store.prune_history = lambda before, first_kept: defer.fail(OSError("locked"))
    result = history.prune()
    assert result.called and result.result is None


def test_the_service_prunes_on_a_timer_and_waits_for_the_last_write():
    clock = clock_at()
    store = SlowStore()
    history = History(store, clock, keep=10, days=1)
    service = HistoryService(history, clock)
    service.startService()
    history.record(events.chat("alice", "bye"))
    stopped = []
    service.stopService().addCallback(stopped.append)
    assert stopped == []
    store.writes[0][1].callback(None)
    assert stopped == [None]
    assert clock.getDelayedCalls() == []


# -- HISTORY on the chat port -------------------------------------------------


def named(pool, name: str, host: str):
    peer = connect(pool, host=host)
    peer.received()
    peer.join(name)
    return peer


def test_a_late_joiner_reads_what_was_said_before():
    """CHAT and NOTICE to all are kept; a private message, a notice to one
    user, joins and leaves are not."""
    clock = clock_at()
    pool = make_pool(clock, root=True)
    alice = named(pool, "alice", "127.0.0.2")
    bob = named(pool, "bob", "127.0.0.3")
    alice.send("SAY hello everyone", "MSG bob a secret")
    clock.advance(1.5)
    commands = AdminCommands(pool, Operator("key", "127.0.0.1:1"))
    commands.run('send -all "server news"')
    commands.run('send -u bob "just for bob"')
    bob.send("QUIT")
    carol = named(pool, "carol", "127.0.0.4")
    carol.send("HISTORY")
    assert carol.received() == [
        "HISTORY 1 2025-11-30T01:50:04.123Z CHAT alice hello everyone",
        "HISTORY 2 2025-11-30T01:50:05.623Z NOTICE server news",
        "HISTORY-END 2",
    ]
    carol.send("HISTORY 1")
    assert carol.received() == [
        "HISTORY 2 2025-11-30T01:50:05.623Z NOTICE server news",
        "HISTORY-END 1",
    ]
    carol.send("history 0")
    assert carol.received() == ["HISTORY-END 0"]


def test_history_count_defaults_to_50_and_never_exceeds_what_is_kept():
    pool = make_pool(history=60)
    alice = named(pool, "alice", "127.0.0.2")
    for i in range(70):
        pool.room.say(alice.protocol.session, f"line {i}")
    alice.send("HISTORY")
    lines = alice.received()
    assert lines[0].endswith("CHAT alice line 20") and lines[-1] == "HISTORY-END 50"
    alice.send("HISTORY 99999999999999999999")
    lines = alice.received()
    assert lines[0].endswith("CHAT alice line 10") and lines[-1] == "HISTORY-END 60"


@pytest.mark.parametrize("argument", ["-1", "ten", "1 2", "١٢", "²"])
def test_history_count_must_be_a_whole_number(argument):
    pool = make_pool()
    alice = named(pool, "alice", "127.0.0.2")
    alice.send(f"HISTORY {argument}")
    assert alice.received() == ["ERR bad-syntax usage: HISTORY [count]"]


def test_history_needs_a_name_and_is_empty_when_off():
    pool = make_pool(history=0)
    peer = connect(pool)
    peer.received()
    peer.login()
    peer.send("HISTORY")
    assert peer.received()[0].startswith("ERR nick-required ")
    peer.send("NICK alice", "SAY not kept", "HISTORY")
    assert peer.received() == ["OK NICK alice", "HISTORY-END 0"]


# -- kept under a larger --max-line -------------------------------------------

# A 4-byte letter (Deseret): a cut between its bytes would not be UTF-8.
WIDE = "\U00010400"


def kept_under_4096() -> list[Entry]:
    """What a run at ``--max-line 4096`` kept: each as long as it allowed."""
    return [
        Entry(1, NOW - 60, events.chat("alice", "z" * 3000)),
        Entry(2, NOW - 50, events.notice("n" * 3900)),
        Entry(3, NOW - 40, events.chat("alice", WIDE * 900)),
        Entry(4, NOW - 30, events.chat("alice", "short and kept whole")),
    ]


def lowered(max_line: int = 1024):
    """A pool restarted with ``--max-line max_line`` on that history."""
    kept = kept_under_4096()
    return make_pool(
        clock_at(),
        root=True,
        store=FakeStore(),
        limits=unit_limits(max_line=max_line),
        history_kept=(kept, len(kept)),
    )


def _longest(lines: list[str]) -> int:
    """The longest line's bytes, with its CRLF."""
    return max(len(line.encode()) + 2 for line in lines)


def test_history_replay_fits_a_lowered_max_line():
    """A message accepted under ``--max-line 4096`` and replayed after a
    restart with ``--max-line 1024`` (attack review II, 10)."""
    kept = [Entry(1, NOW - 60, events.chat("alice", "z" * 3000))]
    pool = make_pool(
        clock_at(),
        store=FakeStore(),
        limits=unit_limits(max_line=1024),
        history_kept=(kept, 1),
    )
    v1 = named(pool, "bob", "10.0.0.3")
    v1.send("HISTORY")
    lines = v1.received()
    assert lines[-1] == "HISTORY-END 1"
    assert _longest(lines) <= 1024


@pytest.mark.parametrize("max_line", [512, 1024, 3500])
def test_kept_messages_are_cut_to_fit_on_every_door(max_line):
    """CHAT and NOTICE, ASCII and 4-byte letters: each replay line fits, on
    the chat port and the WebSocket; a cut text ends in "…" (between
    characters), ids and the short message are whole, and root's ``history``
    fits too."""
    from tests.test_web import open_socket

    pool = lowered(max_line)
    chat = named(pool, "bob", "10.0.0.3")
    browser = open_socket(pool, host="10.0.0.4")
    browser.received()
    browser.join("carol")
    chat.received()  # JOINED carol
    for peer in (chat, browser):
        peer.send("HISTORY")
        lines = peer.received()
        assert _longest(lines) <= max_line, peer
        assert [line.split(" ")[1] for line in lines[:-1]] == ["1", "2", "3", "4"]
        assert lines[-1] == "HISTORY-END 4"
        cut = [line for line in lines[:-1] if line.endswith("\u2026")]
        assert len(cut) == (3 if max_line < 3500 else 2), lines
        assert lines[3].endswith(" CHAT alice short and kept whole")
        assert lines[2].removesuffix("\u2026").endswith(WIDE * 10)
    root = connect(pool, host="10.0.0.9")
    root.received()
    assert root.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    root.send("ADMIN history")
    lines = root.received()
    assert lines[-1] == "ADMIN-END 0" and _longest(lines) <= max_line


def test_a_kept_message_is_cut_only_if_it_no_longer_fits():
    """The check is the live one (the widest id): a text that fits stays
    whole, one byte more is cut, and the cut line fits to the byte."""
    head = len(format_line(*HISTORY_HEAD, "CHAT", "alice", ""))
    budget = 1024 - head
    whole = Entry(7, NOW, events.chat("alice", "a" * budget))
    assert fitted(whole, 1024) is whole
    over = fitted(Entry(7, NOW, events.chat("alice", "a" * (budget + 1))), 1024)
    assert over.event.parts == ("alice", "a" * (budget - 3) + "\u2026")
    assert len(format_line(*HISTORY_HEAD, "CHAT", *over.event.parts)) == 1024
    wide = fitted(Entry(8, NOW, events.notice(WIDE * 1000)), 1024)
    [text] = wide.event.parts
    assert set(text[:-1]) == {WIDE} and text[-1] == "\u2026"
    notice_head = len(format_line(*HISTORY_HEAD, "NOTICE", ""))
    assert 1024 - 4 < notice_head + len(text.encode()) <= 1024


def test_the_database_keeps_the_whole_text_of_a_cut_message(tmp_path):
    """Only what is replayed is cut: a later start with a larger limit
    replays the message whole again."""
    path = tmp_path / "db.sqlite3"
    migrate(path)
    connection = sqlite3.connect(path)
    connection.execute(
        "INSERT INTO history (at, verb, name, text) VALUES (?, 'CHAT', 'alice', ?)",
        (NOW, "z" * 3000),
    )
    connection.commit()
    connection.close()
    for max_line, size in ((1024, 1024), (4096, 3000 + 52)):
        pool = make_pool(
            clock_at(),
            limits=unit_limits(max_line=max_line),
            history_kept=load_history(path, 200, 0),
        )
        peer = named(pool, "bob", "10.0.0.3")
        peer.send("HISTORY")
        assert len(peer.received()[0].encode()) + 2 <= size


# -- the admin commands -------------------------------------------------------


def test_admin_history_and_clear_history():
    clock = clock_at()
    pool = make_pool(clock)
    alice = named(pool, "alice", "127.0.0.2")
    alice.send("SAY one", "SAY two")
    commands = AdminCommands(pool, Operator("key", "127.0.0.1:1"))

    def run(line: str):
        result = commands.run(line)
        assert result.called
        return result.result

    assert run("history -n 1").output == "#2  2025-11-30T01:50:04.123Z  CHAT alice two"
    assert run("history").output.count("\n") == 1
    assert run("history -n 0").status == 1
    assert run("clear-history").output == "history cleared: 2 messages erased"
    assert run("history").output == "no messages kept"
    alice.send("SAY three", "HISTORY")
    assert alice.received() == [
        "HISTORY 3 2025-11-30T01:50:04.123Z CHAT alice three",  # ids go on
        "HISTORY-END 1",
    ]
    store = FakeStore()
    store.history = ["kept by an earlier run"]
    off = AdminCommands(make_pool(history=0, store=store), Operator("key", "x:1"))
    assert off.run("history").result.output == "no history is kept (--history 0)"
    assert off.run("clear-history").result.output == (
        "history cleared: 1 message erased"
    )


# -- SQLite -------------------------------------------------------------------


class StoreHistoryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp() + ".sqlite3")
        self.store = Store(self.path)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_kept_across_a_restart_oldest_first_within_the_limits(self):
        entries = [
            Entry(1, NOW - 3 * DAY, events.chat("alice", "old")),
            Entry(2, NOW - 10, events.notice("news")),
            Entry(3, NOW - 5, events.chat("bob", "hi there")),
            Entry(4, NOW, events.chat("carol", "last")),
        ]
        yield self.store.add_history(entries[:2], 1)
        yield self.store.add_history(entries[2:], 1)
        kept, last_id = load_history(self.path, 2, NOW - DAY)
        self.assertEqual(kept, entries[2:])
        self.assertEqual(last_id, 4)
        kept, _ = load_history(self.path, 200, NOW - DAY)
        self.assertEqual([e.event for e in kept], [e.event for e in entries[1:]])
        pool = make_pool(clock_at(), history_kept=(kept, last_id))
        alice = named(pool, "alice", "127.0.0.2")
        alice.send("HISTORY 1")
        self.assertEqual(
            alice.received(),
            ["HISTORY 4 2025-11-30T01:50:04.123Z CHAT carol last", "HISTORY-END 1"],
        )

    @defer.inlineCallbacks
    def test_a_write_drops_the_rows_past_the_count_kept(self):
        """The table never holds more than --history rows, whatever the pace."""
        for first in range(1, 40, 3):
            yield self.store.add_history(
                [Entry(i, NOW, events.notice(str(i))) for i in range(first, first + 3)],
                first + 3 - 10,
            )
        kept, last_id = load_history(self.path, 100, 0)
        self.assertEqual([e.id for e in kept], list(range(30, 40)))
        self.assertEqual(last_id, 39)

    @defer.inlineCallbacks
    def test_prune_by_age_and_count_and_clear_keeps_ids_increasing(self):
        yield self.store.add_history(
            [Entry(i, NOW - 10 + i, events.chat("a", str(i))) for i in range(1, 6)], 1
        )
        gone = yield self.store.prune_history(NOW - 8, 3)  # ids 1, 2 too old
        self.assertEqual(gone, 2)
        gone = yield self.store.prune_history(NOW - 100, 5)
        self.assertEqual(gone, 2)
        cleared = yield self.store.clear_history()
        self.assertEqual(cleared, 1)
        self.assertEqual(load_history(self.path, 10, 0), ([], 5))


class ErasedTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_clear_history_leaves_no_trace_in_the_database_file(self):
        """Deleted rows are zeroed (secure_delete), not left in free pages."""
        path = Path(self.mktemp() + ".sqlite3")
        store = Store(path)
        self.addCleanup(store.close)
        yield store.add_history(
            [
                Entry(i, NOW, events.chat("alice", f"needle-{i}-xyzzy"))
                for i in range(1, 30)
            ],
            1,
        )
        yield store.clear_history()
        yield store._pool.runOperation("PRAGMA wal_checkpoint(TRUNCATE)")
        self.assertNotIn(b"xyzzy", path.read_bytes())
        wal = path.with_name(path.name + "-wal")
        self.assertFalse(wal.exists() and b"xyzzy" in wal.read_bytes())


def test_a_version_1_database_gains_the_history_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    schema_1 = (
        Path(__file__).parents[1] / "partypool/room/schema/001-initial.sql"
    ).read_text()
    connection.executescript(schema_1 + "; PRAGMA user_version = 1;")
    connection.execute("INSERT INTO bans VALUES ('ip', '127.0.0.9', 'then', '')")
    connection.commit()
    connection.close()
    migrate(path)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] >= 2  # and on
    assert connection.execute("SELECT value FROM bans").fetchall() == [("127.0.0.9",)]
    assert connection.execute("SELECT count(*) FROM history").fetchone() == (0,)
    connection.close()
