"""The SQLite store, for real: schema, requests, bans, durability settings."""

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from twisted.internet import defer
from twisted.trial import unittest

from partypool.room.store import Store, load_bans, migrate

# The newest schema version: the number of the last file in schema/.
SCHEMA_VERSION = max(
    int(f.name.split("-", 1)[0])
    for f in (Path(__file__).parent.parent / "partypool" / "room" / "schema").iterdir()
    if f.suffix == ".sql"
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
