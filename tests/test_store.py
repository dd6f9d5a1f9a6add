"""The SQLite store, for real: schema, requests, bans, durability settings."""

import datetime
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from partypool.room.store import (
    REQUEST_WINDOW,
    Store,
    TooManyRequests,
    load_bans,
    migrate,
    utc_now,
)

SCHEMA = Path(__file__).parent.parent / "partypool" / "room" / "schema"
# The newest schema version: the number of the last file in schema/.
SCHEMA_VERSION = max(
    int(f.name.split("-", 1)[0]) for f in SCHEMA.iterdir() if f.suffix == ".sql"
)


class StoreTests(unittest.TestCase):
    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "partypool.sqlite3")
        self.store = Store(Path(self.path))
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_requests_get_increasing_ids_and_come_back_newest_first(self):
        first = yield self.store.add_request(
            "alice", "127.0.0.2", "more cake", per_day=20
        )
        second = yield self.store.add_request("bob", "::1", "less noise", per_day=20)
        self.assertLess(first, second)
        recent = yield self.store.recent_requests(10)
        self.assertEqual([r.name for r in recent], ["bob", "alice"])
        self.assertEqual(recent[1].text, "more cake")
        self.assertRegex(recent[1].created_at, r"^\d{4}-\d\d-\d\dT.*\+00:00$")
        only = yield self.store.recent_requests(1)
        self.assertEqual(len(only), 1)

    @defer.inlineCallbacks
    def test_bans_persist_and_are_removed_once(self):
        yield self.store.add_ban("ip", "127.0.0.9", "spam")
        yield self.store.add_ban("name", "mallory")
        bans = yield self.store.bans()
        self.assertEqual(
            {(b.kind, b.value) for b in bans},
            {("ip", "127.0.0.9"), ("name", "mallory")},
        )
        self.assertEqual(
            {(b.kind, b.value) for b in load_bans(self.store.path)},
            {("ip", "127.0.0.9"), ("name", "mallory")},
        )
        removed = yield self.store.remove_ban("ip", "127.0.0.9")
        again = yield self.store.remove_ban("ip", "127.0.0.9")
        self.assertEqual((removed, again), (True, False))

    def test_database_is_wal_private_and_versioned(self):
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        version = connection.execute("PRAGMA user_version").fetchone()
        self.assertEqual(version, (SCHEMA_VERSION,))
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_migrate_twice_is_harmless(self):
        migrate(self.store.path)
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        version = connection.execute("PRAGMA user_version").fetchone()
        self.assertEqual(version, (SCHEMA_VERSION,))


class RequestLimitTests(unittest.TestCase):
    """--max-requests-per-day, counted in the database (issue 12)."""

    def setUp(self):
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.path = Path(directory) / "partypool.sqlite3"
        self.store = self.open()

    def open(self) -> Store:
        store = Store(self.path)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_the_limit_holds_per_name_and_per_address(self):
        for text in ("one", "two"):
            yield self.store.add_request("alice", "127.0.0.2", text, per_day=2)
        # The same name from elsewhere, in another case or width, is refused…
        for name, address in (("alice", "127.0.0.3"), ("ＡＬＩＣＥ", "::1")):
            with self.assertRaises(TooManyRequests):
                yield self.store.add_request(name, address, "three", per_day=2)
        # …and so is the same address under a new name.
        with self.assertRaises(TooManyRequests):
            yield self.store.add_request("mallory", "127.0.0.2", "three", per_day=2)
        yield self.store.add_request("bob", "127.0.0.4", "mine", per_day=2)
        self.assertEqual(len((yield self.store.recent_requests(10))), 3)

    @defer.inlineCallbacks
    def test_request_limit_counts_an_ipv6_64_as_one_address(self):
        """New name and new address of the same /64 each time: the /64 is one
        address, as for every per-address rule (attack review II, 11)."""
        refused = 0
        for i in range(1, 6):
            try:
                yield self.store.add_request(
                    f"user{i}", f"2001:db8::{i}", "more cake", per_day=2
                )
            except TooManyRequests:
                refused += 1
        self.assertEqual(refused, 3)
        # Another /64 is another address; IPv4 is counted by the address itself.
        yield self.store.add_request("other", "2001:db8:0:1::1", "mine", per_day=2)
        for host in ("192.0.2.1", "192.0.2.2"):
            yield self.store.add_request(f"v4-{host}", host, "cake", per_day=1)
        # The administrator still sees each exact address.
        recent = yield self.store.recent_requests(10)
        self.assertEqual(
            [r.address for r in reversed(recent)],
            ["2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "192.0.2.1", "192.0.2.2"],
        )

    @defer.inlineCallbacks
    def test_a_restart_keeps_the_count(self):
        yield self.store.add_request("alice", "127.0.0.2", "one", per_day=1)
        again = self.open()  # a second server process on the same file
        with self.assertRaises(TooManyRequests):
            yield again.add_request("alice", "127.0.0.9", "two", per_day=1)

    @defer.inlineCallbacks
    def test_requests_older_than_a_day_do_not_count(self):
        yield self.store.add_request("alice", "127.0.0.2", "old", per_day=1)
        connection = sqlite3.connect(self.path)
        yesterday = utc_now(REQUEST_WINDOW + datetime.timedelta(seconds=1))
        connection.execute("UPDATE requests SET created_at = ?", (yesterday,))
        connection.commit()
        connection.close()
        yield self.store.add_request("alice", "127.0.0.2", "new", per_day=1)

    def test_a_version_1_database_is_migrated_with_its_requests(self):
        old = Path(tempfile.mkdtemp()) / "old.sqlite3"
        self.addCleanup(shutil.rmtree, old.parent)
        connection = sqlite3.connect(old)
        connection.executescript(
            (SCHEMA / "001-initial.sql").read_text()
            + "PRAGMA user_version = 1;"
            + "INSERT INTO requests (created_at, name, address, text)"
            + " VALUES ('2026-01-01T00:00:00+00:00', 'Bob', '::1', 'hi');"
        )
        connection.close()
        migrate(old)
        connection = sqlite3.connect(old)
        self.addCleanup(connection.close)
        rows = connection.execute("SELECT name, name_key, text FROM requests")
        self.assertEqual(rows.fetchall(), [("Bob", "bob", "hi")])

    @defer.inlineCallbacks
    def test_a_version_3_database_counts_its_ipv6_requests_by_64(self):
        """Rows stored by exact address before version 4 get their group, so
        today's requests from an IPv6 /64 still count after the upgrade."""
        old = Path(tempfile.mkdtemp()) / "old.sqlite3"
        self.addCleanup(shutil.rmtree, old.parent)
        connection = sqlite3.connect(old)
        for version in (1, 2, 3):
            [sql] = SCHEMA.glob(f"{version:03d}-*.sql")
            connection.executescript(sql.read_text())
        connection.executemany(
            "INSERT INTO requests (created_at, name, name_key, address, text)"
            " VALUES (?, ?, ?, ?, 'hi')",
            [
                (utc_now(), "a", "a", "2001:db8::1"),
                (utc_now(), "b", "b", "::ffff:192.0.2.1"),  # an odd old spelling
                (utc_now(), "c", "c", "192.0.2.9"),
            ],
        )
        connection.execute("PRAGMA user_version = 3")
        connection.commit()
        connection.close()
        store = Store(old)
        self.addCleanup(store.close)
        connection = sqlite3.connect(old)
        self.addCleanup(connection.close)
        rows = connection.execute("SELECT address, address_group FROM requests")
        self.assertEqual(
            rows.fetchall(),
            [
                ("2001:db8::1", "2001:db8::/64"),
                ("::ffff:192.0.2.1", "192.0.2.1"),
                ("192.0.2.9", "192.0.2.9"),
            ],
        )
        with self.assertRaises(TooManyRequests):
            yield store.add_request("new", "2001:db8::77", "again", per_day=1)
        with self.assertRaises(TooManyRequests):
            yield store.add_request("new", "192.0.2.9", "again", per_day=1)
