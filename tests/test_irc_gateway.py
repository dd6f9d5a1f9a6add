"""The IRC gateway through StringTransport and a fake Clock: every
registration path, the room as a channel, both ways with v1 users, the
shared limits and timers."""

from __future__ import annotations

import base64
import weakref

import attrs
import pytest
import scramp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent

from partypool.doors import chat, door_name, irc, web
from partypool.doors.irc import IrcFactory, IrcProtocol
from partypool.doors.irc_wire import MESSAGE_MAX, parse_message
from tests.helpers import PASSKEY, ROOT_PASSWORD, connect, make_pool, unit_limits


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock):
    return make_pool(clock)


@attrs.define(eq=False)
class IrcPeer:
    """An IRC client under test: raw lines in, raw lines out."""

    protocol: IrcProtocol
    transport: StringTransport

    def send(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line.encode() if isinstance(line, str) else line
            self.protocol.dataReceived(data + b"\r\n")

    def received(self) -> list[str]:
        self.protocol.pool.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        assert data == b"" or data.endswith(b"\r\n"), data
        return data.decode().split("\r\n")[:-1]

    def commands(self) -> list[str]:
        """The command (or numeric) of each line received, source and tags dropped."""
        out = []
        for line in self.received():
            words = line.split(" ")
            if words[0].startswith("@"):
                words = words[1:]
            if words[0].startswith(":"):
                words = words[1:]
            out.append(words[0])
        return out

    def scram(self, passkey: str = PASSKEY, user: str = "chat") -> list[str]:
        """SASL SCRAM-SHA-256 after CAP REQ :sasl; the replies to the last step."""
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, passkey)
        self.send("AUTHENTICATE SCRAM-SHA-256")
        assert self.received()[-1] == "AUTHENTICATE +"
        self.send("AUTHENTICATE " + _b64(client.get_client_first()))
        reply = self.received()
        if not reply[-1].startswith("AUTHENTICATE "):
            return reply
        client.set_server_first(_unb64(reply[-1].split(" ")[1]))
        self.send("AUTHENTICATE " + _b64(client.get_client_final()))
        reply = self.received()
        if not reply[-1].startswith("AUTHENTICATE "):
            return reply
        client.set_server_final(_unb64(reply[-1].split(" ")[1]))  # checks the server
        self.send("AUTHENTICATE +")
        return self.received()

    def register(self, nick: str, passkey: str = PASSKEY) -> list[str]:
        """The plain path: PASS, NICK, USER."""
        self.send(f"PASS :{passkey}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        return self.received()


_factories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def irc_connect(pool, host: str = "127.0.0.1", port: int = 40000, channel="#party"):
    """A connection to the pool's one IRC listener (made at first use)."""
    factories = _factories.setdefault(pool, {})
    factory = factories.setdefault(channel, IrcFactory(pool, channel))
    protocol = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    protocol.makeConnection(transport)
    return IrcPeer(protocol, transport)


def irc_named(pool, nick: str, host: str) -> IrcPeer:
    peer = irc_connect(pool, host=host)
    lines = peer.register(nick)
    assert any(" 001 " in line for line in lines), lines
    return peer


def v1_named(pool, name: str, host: str):
    peer = connect(pool, host=host)
    peer.received()
    peer.join(name)
    return peer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _plain(account: str, passkey: str) -> str:
    return _b64(f"\0{account}\0{passkey}")


# -- registration ---------------------------------------------------------------


def test_cap_sasl_plain_registers_and_joins_the_channel(pool):
    """CAP LS 302 / REQ / AUTHENTICATE PLAIN / CAP END: 900, 903, 001…, JOIN."""
    peer = irc_connect(pool)
    peer.send("CAP LS 302", "NICK alice", "USER alice 0 * :Alice")
    ls = peer.received()
    assert ls == [
        ":unit CAP * LS :batch echo-message message-tags multi-prefix "
        "sasl=PLAIN,SCRAM-SHA-256 server-time"
    ]
    peer.send("CAP REQ :sasl server-time")
    assert peer.received() == [":unit CAP alice ACK :sasl server-time"]
    peer.send("AUTHENTICATE PLAIN")
    assert peer.received() == ["AUTHENTICATE +"]
    peer.send("AUTHENTICATE " + _plain("chat", PASSKEY))
    assert peer.commands() == ["900", "903"]  # registration still waits for END
    peer.send("CAP END")
    lines = peer.received()
    assert lines[0] == ":unit 001 alice :Welcome to unit, alice"
    assert ":alice!alice@partypool JOIN #party" in lines
    assert any(" 005 alice " in line and "NETWORK=unit " in line for line in lines)
    assert ":unit 332 alice #party :unit" in lines
    assert ":unit 353 alice = #party :alice" in lines
    assert pool.room.names() == ["alice"]


def test_cap_sasl_scram_registers(pool):
    """SCRAM-SHA-256 over AUTHENTICATE, the server's signature checked."""
    peer = irc_connect(pool)
    peer.send("CAP LS 302", "CAP REQ :sasl", "NICK bob", "USER b 0 * :b")
    peer.received()
    assert [line.split(" ")[1] for line in peer.scram()] == ["900", "903"]
    peer.send("CAP END")
    assert ":bob!bob@partypool JOIN #party" in peer.received()


def test_sasl_plain_takes_the_nick_as_account(pool):
    peer = irc_connect(pool)
    peer.send("CAP REQ sasl", "NICK carol", "USER c 0 * :c", "AUTHENTICATE PLAIN")
    peer.received()
    peer.send("AUTHENTICATE " + _plain("carol", PASSKEY), "CAP END")
    assert "001" in peer.commands()


def test_pass_registers_without_cap(pool):
    peer = irc_connect(pool)
    lines = peer.register("dave")
    assert lines[0].startswith(":unit 001 dave ")
    assert any(
        line.startswith(":unit 005 dave ") and "UTF8ONLY" in line for line in lines
    )
    assert pool.room.names() == ["dave"]


def test_no_secret_at_all_is_464_error_and_close(pool):
    peer = irc_connect(pool)
    peer.send("NICK eve", "USER eve 0 * :eve")
    lines = peer.received()
    assert lines[0] == ":unit 464 eve :Password required (SASL or PASS)"
    assert lines[-1].startswith("ERROR :Closing Link: 127.0.0.1")
    assert peer.transport.disconnecting
    assert pool.throttle.recent_failures("127.0.0.1") == 1


@pytest.mark.parametrize("path", ["PASS", "PLAIN", "SCRAM"])
def test_a_wrong_secret_fails_closes_and_counts(pool, path):
    peer = irc_connect(pool)
    if path == "PASS":
        lines = peer.register("mallory", passkey="wrong")
        expected = "464"
    else:
        peer.send("CAP REQ :sasl", "NICK mallory", "USER m 0 * :m")
        peer.received()
        if path == "PLAIN":
            peer.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + _plain("chat", "wrong"))
            lines = peer.received()[1:]
        else:
            lines = peer.scram(passkey="wrong")
        expected = "904"
    assert lines[0].split(" ")[1] == expected
    assert lines[-1].startswith("ERROR :Closing Link")
    assert peer.transport.disconnecting
    assert pool.throttle.recent_failures("127.0.0.1") == 1
    assert pool.room.names() == []


def test_the_login_throttle_is_shared_with_the_chat_port(pool):
    for _ in range(5):
        pool.throttle.failed("127.0.0.9")
    peer = irc_connect(pool, host="127.0.0.9")
    lines = peer.register("zed")
    assert any("auth-throttled" in line for line in lines)
    assert lines[-1].startswith("ERROR ")


def test_unknown_sasl_mechanism_lists_ours_and_lets_the_client_go_on(pool):
    peer = irc_connect(pool)
    peer.send("CAP REQ :sasl", "AUTHENTICATE EXTERNAL")
    lines = peer.received()
    assert lines[1:] == [
        ":unit 908 * PLAIN,SCRAM-SHA-256 :are available SASL mechanisms",
        ":unit 904 * :SASL authentication failed",
    ]
    peer.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + _plain("chat", PASSKEY))
    assert peer.commands()[-2:] == ["900", "903"]


def test_sasl_abort_then_pass(pool):
    peer = irc_connect(pool)
    peer.send("CAP REQ :sasl", "AUTHENTICATE SCRAM-SHA-256", "AUTHENTICATE *")
    assert peer.commands()[-1] == "906"
    peer.send(f"PASS :{PASSKEY}", "NICK fay", "USER f 0 * :f", "CAP END")
    assert "001" in peer.commands()


def test_sasl_payload_in_400_byte_chunks(pool):
    """A response of exactly 400 bytes is continued by the next AUTHENTICATE."""
    passkey = "k" * 400
    pool.verifier = type(pool.verifier).from_passkey(passkey, 4096)
    peer = irc_connect(pool)
    peer.send("CAP REQ :sasl", "NICK gus", "USER g 0 * :g", "AUTHENTICATE PLAIN")
    peer.received()
    payload = _plain("chat", passkey)
    for start in range(0, len(payload), 400):
        peer.send("AUTHENTICATE " + payload[start : start + 400])
    if len(payload) % 400 == 0:
        peer.send("AUTHENTICATE +")
    assert peer.commands() == ["900", "903"]


def test_registration_fed_one_byte_at_a_time(pool):
    peer = irc_connect(pool)
    for byte in f"PASS :{PASSKEY}\r\nNICK hal\r\nUSER h 0 * :h\r\n".encode():
        peer.protocol.dataReceived(bytes([byte]))
    assert "001" in peer.commands()


def test_commands_before_registration_get_451_not_a_disconnect(pool):
    """irssi probes with `JOIN :` before registering."""
    peer = irc_connect(pool)
    peer.send("JOIN :", "PRIVMSG #party :hi", "NAMES")
    assert peer.received() == [":unit 451 * :You have not registered"] * 3
    assert not peer.transport.disconnecting
    assert "001" in peer.commands() or peer.register("ida")[0].startswith(":unit 001")


@pytest.mark.parametrize(
    "nick, numeric",
    [("two words", "432"), ("a[b]", "432"), ("partypool", "432")],
)
def test_bad_nicks_get_432_and_the_client_may_try_again(pool, nick, numeric):
    peer = irc_connect(pool)
    peer.send(f"PASS :{PASSKEY}", f"NICK :{nick}")
    assert peer.commands() == [numeric]
    peer.send("NICK jo", "USER jo 0 * :jo")
    assert "001" in peer.commands()


def test_taken_nick_gets_433_even_against_a_v1_user(pool):
    v1_named(pool, "Kim", "127.0.0.2")
    peer = irc_connect(pool)
    peer.send(f"PASS :{PASSKEY}", "NICK kim")
    assert peer.received() == [":unit 433 * kim :Nickname is already in use"]
    peer.send("NICK kim_", "USER k 0 * :k")
    assert "001" in peer.commands()


def test_no_nick_is_431_and_nick_change_later_is_refused(pool):
    peer = irc_connect(pool)
    peer.send("NICK")
    assert peer.commands() == ["431"]
    peer.register("lee")
    peer.send("NICK other")
    assert peer.commands() == ["447"]


def test_login_timeout_closes_with_error(pool, clock):
    peer = irc_connect(pool)
    peer.send("CAP LS 302")
    peer.received()
    clock.advance(pool.limits.login_timeout)
    assert peer.received()[-1].startswith("ERROR :Closing Link: 127.0.0.1 (timeout)")
    assert peer.transport.disconnecting
    peer.protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_a_full_room_refuses_at_connect(clock):
    pool = make_pool(clock, max_clients=1)
    irc_named(pool, "one", "127.0.0.2")
    peer = irc_connect(pool, host="127.0.0.3")
    lines = peer.received()
    assert "server-full" in lines[0] and lines[-1].startswith("ERROR ")


# -- wire-level robustness --------------------------------------------------------


def test_a_utf8_character_split_across_reads(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    bob.received()
    alice.received()
    data = "PRIVMSG #party :smørrebrød ✓\r\n".encode()
    cut = data.index("✓".encode()) + 1  # inside the three bytes of ✓
    alice.protocol.dataReceived(data[:cut])
    alice.protocol.dataReceived(data[cut:])
    assert bob.received() == ["CHAT alice smørrebrød ✓"]


def test_invalid_utf8_is_refused_and_the_session_goes_on(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send(b"PRIVMSG #party :\xff\xfe")
    assert alice.received() == [
        ":unit FAIL PRIVMSG INVALID_UTF8 :Message rejected, your message is not UTF-8"
    ]
    alice.send("PING x")
    assert alice.received() == [":unit PONG unit x"]


def test_an_overlong_line_is_417_and_the_next_line_works(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("PRIVMSG #party :" + "x" * MESSAGE_MAX, "PING y")
    assert alice.commands() == ["417", "PONG"]


def test_unknown_command_is_421(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("FROB x")
    assert alice.received() == [":unit 421 alice FROB :Unknown command"]


# -- the room both ways ------------------------------------------------------------


def test_messages_both_ways_with_a_v1_user(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    assert alice.received() == [":bob!bob@partypool JOIN #party"]
    alice.send("PRIVMSG #party :hello bob")
    assert bob.received() == ["CHAT alice hello bob"]
    bob.send("SAY hello alice")
    assert alice.received() == [":bob!bob@partypool PRIVMSG #party :hello alice"]
    bob.send("QUIT gone fishing")
    assert alice.received() == [":bob!bob@partypool QUIT :Quit: gone fishing"]


def test_irc_quit_is_left_for_v1_users(pool):
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice = irc_named(pool, "alice", "127.0.0.2")
    assert bob.received() == ["JOINED alice"]
    alice.received()
    alice.send("QUIT :see you")
    assert alice.received() == ["ERROR :Closing Link: 127.0.0.2 (Quit: see you)"]
    assert bob.received() == ["LEFT alice quit: see you"]


def test_part_leaves_the_room(pool):
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob.received()
    alice.received()
    alice.send("PART #party :bye")
    lines = alice.received()
    assert lines[0] == ":alice!alice@partypool PART #party bye"
    assert bob.received() == ["LEFT alice quit: bye"]


def test_tags_for_clients_that_asked_and_the_same_msgid_for_all(pool):
    pool.clock.advance(1767323045.006)
    alice = irc_connect(pool, host="127.0.0.2")
    alice.send("CAP REQ :server-time message-tags", "CAP END")
    alice.register("alice")
    carol = irc_named(pool, "carol", "127.0.0.4")
    dave = irc_connect(pool, host="127.0.0.5")
    dave.send("CAP REQ :message-tags server-time", "CAP END")
    dave.register("dave")
    bob = v1_named(pool, "bob", "127.0.0.3")
    for peer in (alice, carol, dave):
        peer.received()
    bob.send("SAY tagged")
    [tagged] = alice.received()
    assert tagged.startswith("@time=2026-01-02T03:04:05.006Z;msgid=")
    assert tagged.endswith(" :bob!bob@partypool PRIVMSG #party :tagged")
    assert dave.received() == [tagged]  # one encoding, one msgid
    assert carol.received() == [":bob!bob@partypool PRIVMSG #party :tagged"]


def test_echo_message(pool):
    alice = irc_connect(pool, host="127.0.0.2")
    alice.send("CAP REQ :echo-message", "CAP END")
    alice.register("alice")
    alice.received()
    alice.send("PRIVMSG #party :me too")
    assert alice.received() == [":alice!alice@partypool PRIVMSG #party :me too"]


def test_a_long_v1_message_is_split_to_fit_irc_lines(clock):
    pool = make_pool(clock, limits=unit_limits(max_line=8192, max_text=3000))
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice.received()
    text = " ".join(["word"] * 500)
    bob.send("SAY " + text)
    lines = alice.received()
    assert len(lines) > 1
    assert all(len(line.encode()) + 2 <= MESSAGE_MAX for line in lines)
    prefix = ":bob!bob@partypool PRIVMSG #party :"
    assert " ".join(line.removeprefix(prefix) for line in lines) == text


def test_names_split_across_353_lines(clock):
    pool = make_pool(clock, max_clients=60, allow_same_ip=True)
    for n in range(40):
        v1_named(pool, f"user{n:02d}_{'x' * 16}", "127.0.0.3")
    alice = irc_named(pool, "alice", "127.0.0.2")
    lines = alice.received()
    alice.send("NAMES #party")
    lines = alice.received()
    names_lines = [line for line in lines if " 353 " in line]
    assert len(names_lines) > 1
    assert all(len(line.encode()) + 2 <= MESSAGE_MAX for line in names_lines)
    shown = [
        name
        for line in names_lines
        for name in parse_message(line.encode()).params[-1].split()
    ]
    assert sorted(shown) == sorted(pool.room.names())
    assert lines[-1] == ":unit 366 alice #party :End of /NAMES list"


def test_other_channels_are_403_and_a_join_of_ours_is_ignored(pool):
    """WeeChat's -autojoin=#party after the JOIN at registration: no second
    JOIN, topic and names (other servers ignore it too)."""
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice.received()
    alice.send("JOIN #party", "JOIN #PARTY", "JOIN #party,#other")
    assert alice.received() == [":unit 403 alice #other :No such channel"]
    alice.send("PRIVMSG #other :x")
    assert alice.commands() == ["403"]
    assert bob.received() == []


def test_a_configured_channel(pool):
    peer = irc_connect(pool, channel="#lobby")
    lines = peer.register("alice")
    assert ":alice!alice@partypool JOIN #lobby" in lines


def test_mode_who_whois_userhost_ison_away_topic_list(clock):
    pool = make_pool(clock, limits=unit_limits(burst=100))
    v1_named(pool, "bob", "127.0.0.3")
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("MODE #party", "MODE alice", "MODE alice +i", "MODE #party b")
    assert alice.received() == [
        ":unit 324 alice #party :+nt",
        ":unit 221 alice :+i",
        ":unit 221 alice :+i",
        ":unit 368 alice #party :End of channel ban list",
    ]
    alice.send("WHO #party")
    assert alice.commands() == ["352", "352", "315"]
    alice.send("WHOIS bob")
    assert alice.commands() == ["311", "319", "312", "318"]
    alice.send("WHOIS nobody")
    assert alice.commands() == ["401", "318"]
    alice.send("USERHOST bob nobody", "ISON bob nobody alice")
    assert alice.received() == [
        ":unit 302 alice :bob=+bob@partypool",
        ":unit 303 alice :bob alice",
    ]
    alice.send("AWAY :lunch", "AWAY", "TOPIC #party", "TOPIC #party :new")
    assert alice.commands() == ["306", "305", "332", "482"]
    alice.send("LIST")
    assert alice.received()[1] == ":unit 322 alice #party 2 :unit"


def test_ping_both_ways_and_a_silent_client_is_dropped(pool, clock):
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("PING :abc")
    assert alice.received() == [":unit PONG unit abc"]
    clock.advance(pool.limits.idle_ping)
    [ping] = alice.received()
    assert ping.startswith(":unit PING ")
    clock.advance(pool.limits.idle_ping)
    assert alice.received()[-1] == "ERROR :Closing Link: 127.0.0.2 (timeout)"
    alice.protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_answered_ping_keeps_the_client(pool, clock):
    alice = irc_named(pool, "alice", "127.0.0.2")
    clock.advance(pool.limits.idle_ping)
    token = alice.received()[-1].split(" ")[-1]
    alice.send(f"PONG {token}")
    clock.advance(pool.limits.idle_ping)
    assert not alice.transport.disconnecting


def test_flood_gets_the_same_limits_as_the_chat_port(clock):
    pool = make_pool(clock, limits=unit_limits(rate=1, burst=3, flood_drops=5))
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice.received()
    bob.received()
    clock.advance(10)  # refill the bucket
    alice.send(*[f"PRIVMSG #party :{n}" for n in range(4)])
    lines = alice.received()
    assert lines[0].startswith(":unit NOTICE alice :rate-limited: ")
    assert bob.received() == ["CHAT alice 0", "CHAT alice 1", "CHAT alice 2"]
    alice.send(*[f"PRIVMSG #party :{n}" for n in range(4)])
    assert alice.received()[-1] == "ERROR :Closing Link: 127.0.0.2 (flooding)"
    assert bob.received() == ["LEFT alice flooding"]


def test_removed_by_admin_arrives_as_kick_then_error(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    carol = irc_named(pool, "carol", "127.0.0.4")
    alice.received()
    carol.received()
    pool.room.remove(pool.room.by_name("alice"), "removed by admin")
    assert alice.received() == [
        ":partypool!partypool@partypool KICK #party alice :removed by admin",
        "ERROR :Closing Link: 127.0.0.2 (removed by admin)",
    ]
    assert carol.received() == [
        ":partypool!partypool@partypool KICK #party alice :removed by admin"
    ]


def test_admin_notice_and_shutdown_are_notices(pool):
    from partypool.room import room as events

    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    pool.room.broadcast(events.notice("maintenance at noon"))
    pool.schedule_shutdown(30, "bye")
    assert alice.received() == [
        ":partypool!partypool@partypool NOTICE #party :maintenance at noon",
        ":partypool!partypool@partypool NOTICE #party :the server closes in 30 s: bye",
    ]
    pool.cancel_shutdown()


def test_empty_text_is_412(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("PRIVMSG #party :", "PRIVMSG", "PRIVMSG #party :   ")
    lines = alice.received()
    assert [line.split(" ")[1] for line in lines[:2]] == ["412", "411"]
    assert lines[2].startswith(":unit NOTICE alice :bad-syntax: ")


def test_the_nick_root_is_refused_at_registration_unless_root(pool):
    peer = irc_connect(pool)
    peer.send(f"PASS :{PASSKEY}", "NICK root", "USER r 0 * :r")
    assert peer.received() == [":unit 432 root root :the name root is reserved"]
    peer.send("NICK notroot")
    assert "001" in peer.commands()


# -- private messages, history ---------------------------------------------------


def test_private_messages_both_ways_with_a_v1_user(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "Bob", "127.0.0.3")
    carol = irc_named(pool, "carol", "127.0.0.4")
    for peer in (alice, bob, carol):
        peer.received()
    alice.send("PRIVMSG bob :psst")
    assert bob.received() == ["PRIVATE alice psst"]
    bob.send("MSG alice hello there")
    assert bob.received() == ["OK MSG alice"]
    assert alice.received() == [":Bob!Bob@partypool PRIVMSG alice :hello there"]
    alice.send("PRIVMSG carol :irc to irc")
    assert carol.received() == [":alice!alice@partypool PRIVMSG carol :irc to irc"]
    alice.send("PRIVMSG nobody :x")
    assert alice.received() == [":unit 401 alice nobody :no user named nobody"]


def test_a_muted_user_gets_404(clock):
    pool = make_pool(clock, root=True)
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    pool.mutes.mute("alice", "127.0.0.2", None)
    alice.send("PRIVMSG #party :hi", "PRIVMSG bob :hi")
    lines = alice.received()
    assert lines[0].startswith(":unit 404 alice #party :you are muted")
    assert lines[1].startswith(":unit 404 alice bob :you are muted")


def test_history_is_replayed_in_a_chathistory_batch_on_joining(pool, clock):
    clock.advance(1767323045.0)
    bob = v1_named(pool, "bob", "127.0.0.3")
    bob.send("SAY first", "SAY second")
    alice = irc_connect(pool, host="127.0.0.2")
    alice.send("CAP REQ :batch server-time", "CAP END")
    lines = alice.register("alice")
    start = lines.index(":unit 366 alice #party :End of /NAMES list") + 1
    opening, first, second, closing = lines[start:]
    reference = opening.split(" ")[2][1:]
    assert opening == f":unit BATCH +{reference} chathistory #party"
    assert first == (
        f"@batch={reference};time=2026-01-02T03:04:05.000Z "
        ":bob!bob@partypool PRIVMSG #party :first"
    )
    assert second.endswith(":bob!bob@partypool PRIVMSG #party :second")
    assert closing == f":unit BATCH -{reference}"


def test_history_without_batch_is_plain_lines(pool):
    bob = v1_named(pool, "bob", "127.0.0.3")
    bob.send("SAY earlier")
    alice = irc_connect(pool, host="127.0.0.2")
    assert alice.register("alice")[-1] == ":bob!bob@partypool PRIVMSG #party :earlier"


# -- root -----------------------------------------------------------------------------


def said(events: list[dict]) -> list[str]:
    return [formatEvent(event) for event in events]


@pytest.fixture
def root_pool(clock):
    return make_pool(clock, root=True)


def irc_root(pool, mechanism: str = "PLAIN") -> IrcPeer:
    root = irc_connect(pool, host="127.0.0.9")
    root.send("CAP REQ :sasl", "NICK admin_nick", "USER r 0 * :r")
    root.received()
    if mechanism == "PLAIN":
        root.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + _plain("root", ROOT_PASSWORD))
    else:
        root.scram(ROOT_PASSWORD, user="root")
    root.send("CAP END")
    return root


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM"])
def test_sasl_root_is_the_operator(root_pool, mechanism):
    alice = irc_named(root_pool, "alice", "127.0.0.2")
    alice.received()
    root = irc_root(root_pool, mechanism)
    lines = root.received()
    assert ":admin_nick!admin_nick@partypool NICK root" in lines
    assert any(" 001 root " in line for line in lines)
    assert ":unit 353 root = #party :alice @root" in lines
    assert alice.received() == [
        ":root!root@partypool JOIN #party",
        ":partypool!partypool@partypool MODE #party +o root",
    ]
    alice.send("NAMES #party", "WHOIS root")
    lines = alice.received()
    assert ":unit 353 alice = #party :alice @root" in lines
    assert ":unit 313 alice root :is the server's administrator" in lines


def v1_root_in_the_room(pool):
    root = connect(pool, host="127.0.0.8")
    root.received()
    assert root.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    root.send("NICK root")
    assert root.received() == ["OK NICK root"]
    return root


@pytest.mark.parametrize("nick", ["boss", "root"])
def test_one_root_seat_a_second_irc_root_is_told_and_closed(root_pool, nick, logged):
    """Root is in the room by the chat port: an IRC root login, whatever
    nick it asked for, gets a clear refusal and ERROR (no 433 that a client
    would answer with nick after nick), and the first root stays."""
    first = v1_root_in_the_room(root_pool)
    second = irc_connect(root_pool, host="127.0.0.9")
    second.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
    second.send("AUTHENTICATE " + _plain("root", ROOT_PASSWORD))
    second.received()
    second.send(f"NICK {nick}", "USER r 0 * :r", "CAP END")
    assert second.received() == [
        f":unit NOTICE {nick} :nick-taken: root is already in the room "
        "(another connection)",
        "ERROR :Closing Link: 127.0.0.9 (nick-taken)",
    ]
    assert second.transport.disconnecting
    assert first.received() == []
    assert root_pool.room.root is first.protocol.session
    assert (
        "refused 127.0.0.9:40000: root is already in the room (another connection)"
        in said(logged)
    )


def test_one_root_seat_a_second_v1_root_is_told_and_closed(root_pool):
    """The same rule, the other way round: root is in by IRC."""
    irc_root(root_pool).received()
    second = connect(root_pool, host="127.0.0.8")
    second.received()
    assert second.login(ROOT_PASSWORD, username="root")[0].startswith("AUTH-OK ")
    second.send("ADMIN list-conn -u")  # a root session out of the room still runs
    assert second.received()[-1] == "ADMIN-END 0"
    second.send("NICK root")
    assert second.received() == [
        "ERR nick-taken root is already in the room (another connection)",
        "BYE nick-taken",
    ]
    assert second.transport.disconnecting


def test_root_logs_name_the_irc_gateway(root_pool, logged):
    """The login and root's commands are logged with the door they came by,
    as for every door (each door's name, by its log namespace)."""
    root = irc_root(root_pool)
    root.send("PRIVMSG partypool :list-conn -u")
    root.received()
    lines = said(logged)
    assert "root logged in on the IRC gateway from 127.0.0.9:40000" in lines
    assert (
        "root (password (IRC gateway) from 127.0.0.9:40000) ran 'list-conn -u': "
        "status 0" in lines
    )
    assert not any("chat port" in line for line in lines)
    assert [door_name(door.log) for door in (chat, web, irc)] == [
        "chat port",
        "web door",
        "IRC gateway",
    ]


def test_the_root_password_as_chat_passkey_or_vice_versa_fails(root_pool):
    peer = irc_connect(root_pool)
    peer.send("CAP REQ :sasl", "NICK x", "USER x 0 * :x", "AUTHENTICATE PLAIN")
    peer.send("AUTHENTICATE " + _plain("root", PASSKEY))
    assert "904" in peer.commands()
    assert peer.transport.disconnecting


def test_root_kicks_a_v1_user(root_pool):
    bob = v1_named(root_pool, "bob", "127.0.0.3")
    alice = irc_named(root_pool, "alice", "127.0.0.2")
    root = irc_root(root_pool)
    for peer in (bob, alice, root):
        peer.received()
    root.send("KICK #party bob :behave")  # the reason is not sent (docs/irc.md)
    assert bob.received()[-1] == "BYE removed by admin"
    kick = ":partypool!partypool@partypool KICK #party bob :removed by admin"
    assert alice.received() == [kick]
    assert root.received() == [kick]
    root.send("KICK #party nobody")
    notices = root.received()
    assert notices[-1].endswith(":(exit status 1)")


def test_only_root_kicks_or_runs_commands(pool):
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice = irc_named(pool, "alice", "127.0.0.2")
    alice.received()
    alice.send("KICK #party bob", "KILL bob", "PRIVMSG partypool :list")
    lines = alice.received()
    assert [line.split(" ")[1] for line in lines] == ["482", "481", "481"]
    assert bob.received() == ["JOINED alice"]


def test_root_runs_admin_commands_answered_by_the_service(root_pool):
    root = irc_root(root_pool)
    root.received()
    root.send("PRIVMSG partypool :list-conn -u")
    lines = root.received()
    assert lines and all(
        line.startswith(":partypool!partypool@partypool NOTICE root :")
        for line in lines
    )
    assert any("root" in line for line in lines)
    root.send('PRIVMSG partypool :send -all "tea time"')
    lines = root.received()
    assert ":partypool!partypool@partypool NOTICE #party :tea time" in lines


def test_root_hears_requests_as_notices(root_pool):
    bob = v1_named(root_pool, "bob", "127.0.0.3")
    root = irc_root(root_pool)
    root.received()
    bob.send("REQUEST more tea")
    assert root.received() == [
        ":partypool!partypool@partypool NOTICE root :request 1 from bob: more tea"
    ]


def test_nobody_can_pose_as_the_service(pool):
    peer = irc_connect(pool)
    peer.send(f"PASS :{PASSKEY}", "NICK partypool")
    assert peer.commands() == ["432"]


def test_actions_and_formatting_reach_v1_users_as_plain_text(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice.received()
    alice.send(
        "PRIVMSG #party :\x01ACTION waves\x01", "PRIVMSG #party :\x0304red\x03 alert"
    )
    alice.send("PRIVMSG bob :\x01VERSION\x01")  # a CTCP request: not for the room
    assert bob.received() == ["CHAT alice * waves", "CHAT alice red alert"]
    assert alice.received() == []


def test_sasl_abort_then_a_wrong_pass_is_464(pool):
    peer = irc_connect(pool)
    peer.send("CAP REQ :sasl", "AUTHENTICATE PLAIN", "AUTHENTICATE *")
    peer.send("PASS wrong", "NICK x", "USER x 0 * :x", "CAP END")
    assert peer.commands()[-2:] == ["464", "ERROR"]


def test_the_network_name_is_escaped_in_isupport(clock):
    pool = make_pool(clock)
    pool.server_name = "Tea Room=1"
    peer = irc_connect(pool)
    lines = peer.register("alice")
    assert any("NETWORK=Tea\\x20Room\\x3D1 " in line for line in lines)


# -- keywords in ASCII only ------------------------------------------------------------
# Unicode case mapping makes ``ſ`` (long s) an ``S``, ``ı`` (dotless i) an ``I``
# and ``ﬆ`` an ``ST``: a keyword spelled with them is not the keyword.


@pytest.mark.parametrize(
    "line", ["privmſg #party :hello", "LIﬆ", "quıt :bye", "notıce #party :hi"]
)
def test_a_command_spelled_with_unicode_look_alikes_is_unknown(pool, line):
    irc = irc_named(pool, "alice", "10.0.0.1")
    v1 = v1_named(pool, "bob", "10.0.0.2")
    irc.received()
    irc.send(line)
    assert irc.commands() == ["421"]
    assert v1.received() == []
    assert not irc.transport.disconnecting


@pytest.mark.parametrize("mechanism", ["PLAıN", "ſcram-sha-256"])
def test_a_sasl_mechanism_with_unicode_look_alikes_is_unsupported(pool, mechanism):
    irc = irc_connect(pool, host="10.0.0.9")
    irc.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE " + mechanism)
    assert irc.commands()[-2:] == ["908", "904"]


@pytest.mark.parametrize("sub", ["lſ", "lıst", "enḋ"])
def test_a_cap_subcommand_with_unicode_look_alikes_is_410(pool, sub):
    irc = irc_connect(pool)
    irc.send("CAP " + sub)
    assert irc.commands() == ["410"]


def test_cap_req_splits_at_spaces_only(pool):
    """U+3000 (ideographic space) is not IRC's separator: one unknown cap."""
    irc = irc_connect(pool)
    irc.send("CAP REQ :sasl\u3000server-time")
    assert irc.received() == [":unit CAP * NAK :sasl\u3000server-time"]


@pytest.mark.parametrize("version", ["３０２", "²"])
def test_cap_ls_version_is_ascii_digits(pool, version):
    """Full-width ``３０２`` is not 302; ``²`` is no number (it used to end the
    session with an internal error)."""
    irc = irc_connect(pool)
    irc.send("CAP LS " + version)
    assert irc.received()[0].endswith(
        ":batch echo-message message-tags multi-prefix sasl server-time"
    )
    assert not irc.transport.disconnecting


def test_the_channel_is_matched_in_ascii_only(pool):
    """``#ſK`` (long s, Kelvin sign) case-folds to ``#sk``, but is not it."""
    irc = irc_connect(pool, channel="#sk")
    irc.register("alice")
    v1 = v1_named(pool, "bob", "10.0.0.2")
    irc.received()
    irc.send("PRIVMSG #ſ\u212a :hello", "PRIVMSG #SK :hi")
    assert v1.received() == ["CHAT alice hi"]
    assert irc.commands() == ["403"]


def test_a_ctcp_action_with_a_dotless_i_is_not_an_action(pool):
    alice = irc_named(pool, "alice", "127.0.0.2")
    bob = v1_named(pool, "bob", "127.0.0.3")
    alice.send(
        "PRIVMSG #party :\x01actıon waves\x01", "PRIVMSG #party :\x01action ok\x01"
    )
    assert bob.received() == ["CHAT alice * ok"]


# -- every line within 512 bytes ----------------------------------------------------
# RFC 1459/2812: a message is at most 512 bytes with its CRLF (IRCv3 tags aside).
# `irc_wire.format_message` cuts any longer one; these check that each reply
# splits or cuts its own text first, so nothing is lost that need not be.

# A letter of four UTF-8 bytes (Deseret): the widest a name can be.
WIDE = "\U00010400"


def _longest(lines: list[str]) -> int:
    """The longest message's bytes, its CRLF included and its tags left out."""
    return max(len(_untagged(line).encode()) + 2 for line in lines)


def _untagged(line: str) -> str:
    return line.partition(" ")[2] if line.startswith("@") else line


def test_a_v1_quit_reason_reaches_irc_within_512_bytes(pool):
    irc = irc_named(pool, "alice", "10.0.0.1")
    v1 = v1_named(pool, "carol", "10.0.0.3")
    irc.received()
    v1.send("QUIT " + "\U0001d400" * 200)  # 200 letters of 4 bytes
    (line,) = irc.received()
    assert len(line.encode()) + 2 <= MESSAGE_MAX
    assert line.startswith(":carol!carol@partypool QUIT :Quit: \U0001d400")


def test_userhost_reply_fits_512_bytes_over_several_302_lines(pool):
    irc = irc_named(pool, "alice", "10.0.0.1")
    names = [chr(0x10400 + number) * 24 for number in range(5)]  # Deseret
    for number, name in enumerate(names):
        v1_named(pool, name, f"10.0.1.{number}")
    irc.received()
    irc.send("USERHOST " + " ".join(names))
    lines = irc.received()
    assert _longest(lines) <= MESSAGE_MAX
    assert {line.split(" ")[1] for line in lines} == {"302"}
    assert len(lines) > 1
    replies = " ".join(line.split(" :", 1)[1] for line in lines).split(" ")
    assert replies == [f"{name}=+{name}@partypool" for name in names]


def test_userhost_names_each_member_once(pool):
    irc = irc_named(pool, "alice", "10.0.0.1")
    v1_named(pool, WIDE * 24, "10.0.0.2")
    irc.received()
    irc.send("USERHOST " + " ".join([WIDE * 24] * 5))
    assert irc.received() == [f":unit 302 alice :{WIDE * 24}=+{WIDE * 24}@partypool"]


def test_ison_reply_fits_512_bytes(pool):
    """``㌀`` (3 bytes) is ``アパート`` (12 bytes) after NFKC: a short
    question names a long member many times; it is answered once."""
    irc = irc_named(pool, "alice", "10.0.0.1")
    v1_named(pool, "アパート" * 6, "10.0.0.2")
    irc.received()
    irc.send("ISON " + " ".join(["㌀" * 6] * 26))
    assert irc.received() == [":unit 303 alice :" + "アパート" * 6]


def test_ison_is_one_303_even_when_the_members_found_pass_512_bytes(pool):
    """RFC 2812 lets a server cut the ISON reply; clients count one 303 per
    ISON (irssi's notify list), so the overflow is dropped, not sent apart."""
    irc = irc_named(pool, "alice", "10.0.0.1")
    names = ["アパート" * 5 + str(number) for number in range(10)]  # 61 bytes
    for number, name in enumerate(names):
        v1_named(pool, name, f"10.0.1.{number}")
    irc.received()
    irc.send("ISON " + " ".join(name.replace("アパート", "\u3300") for name in names))
    (line,) = irc.received()
    assert len(line.encode()) + 2 <= MESSAGE_MAX
    found = line.split(" :", 1)[1].split(" ")
    assert 1 < len(found) < len(names)
    assert found == names[: len(found)]


def test_error_closing_link_fits_512_bytes(pool):
    irc = irc_named(pool, "erin", "10.0.0.5")
    irc.received()
    irc.send("QUIT :" + "x" * 490)
    (line,) = irc.received()
    assert len(line.encode()) + 2 <= MESSAGE_MAX
    assert line.startswith("ERROR :Closing Link: 10.0.0.5 (Quit: xxx")
    assert line.endswith("x)")


def test_part_echo_fits_512_bytes(pool):
    irc = irc_named(pool, WIDE * 24, "10.0.0.6")
    irc.received()
    irc.send("PART #party :" + "y" * 400)
    assert _longest(irc.received()) <= MESSAGE_MAX


def test_part_echo_is_scrubbed_as_the_room_sees_it(pool):
    irc = irc_named(pool, "fay", "10.0.0.6")
    v1 = v1_named(pool, "bob", "10.0.0.7")
    irc.received()
    irc.send("PART #party :\x1b[2Jbye\u202e now")
    part, error = irc.received()
    assert part == ":fay!fay@partypool PART #party :[2Jbye now"
    assert v1.received() == ["LEFT fay quit: [2Jbye now"]
    assert error == "ERROR :Closing Link: 10.0.0.6 (Quit: [2Jbye now)"


def test_pong_to_a_long_ping_fits_512_bytes(pool):
    irc = irc_named(pool, "gil", "10.0.0.1")
    irc.received()
    irc.send("PING " + "p" * 500)
    (line,) = irc.received()
    assert line.startswith(":unit PONG unit :ppp")
    assert len(line.encode()) + 2 == MESSAGE_MAX


def test_a_long_scram_server_first_message_comes_in_400_byte_chunks(pool):
    """The server-first-message repeats the client's nonce: a long one makes
    it span AUTHENTICATE lines, as IRCv3 SASL splits them."""
    irc = irc_connect(pool)
    irc.send("CAP REQ :sasl", "AUTHENTICATE SCRAM-SHA-256")
    irc.received()
    nonce = "n" * 1500
    payload = _b64("n,,n=chat,r=" + nonce)
    for start in range(0, len(payload), 400):
        irc.send("AUTHENTICATE " + payload[start : start + 400])
    lines = irc.received()
    assert _longest(lines) <= MESSAGE_MAX
    chunks = [line.removeprefix("AUTHENTICATE ") for line in lines]
    assert [len(chunk) for chunk in chunks[:-1]] == [400] * (len(chunks) - 1)
    assert 0 < len(chunks[-1]) <= 400
    assert _unb64("".join(chunks).removesuffix("+")).startswith("r=" + nonce)


def test_cap_nak_of_a_long_request_fits_512_bytes(pool):
    irc = irc_connect(pool)
    irc.send("NICK " + WIDE * 24)
    asked = [f"x{number:02}" * 8 for number in range(16)]
    irc.send("CAP REQ :" + " ".join(asked + asked[:3]))
    lines = irc.received()
    assert _longest(lines) <= MESSAGE_MAX
    assert [line.split(" ")[3] for line in lines] == ["NAK"] * len(lines)
    naked = " ".join(line.split(" :", 1)[1] for line in lines).split(" ")
    assert naked == asked


def test_a_nick_composed_by_nfkc_is_kept_composed(pool):
    """72 Hangul jamo make 24 syllables: numerics address the client by the
    name the room will show, 72 bytes, not the 216 it sent."""
    irc = irc_connect(pool)
    irc.send("NICK " + "\u1100\u1161\u11a8" * 24, "NICK " + WIDE * 64 + "!")
    (line,) = irc.received()
    assert line.startswith(":unit 432 " + "각" * 24 + " ")
    assert len(line.encode()) + 2 <= MESSAGE_MAX


def test_a_long_server_name_leaves_every_reply_within_512_bytes(clock):
    pool = make_pool(clock, limits=unit_limits(burst=100))
    pool.server_name = "Tea Room " + WIDE * 600
    v1_named(pool, WIDE * 24, "10.0.0.2")
    irc = irc_connect(pool)
    nick = chr(0x10410) * 24
    lines = irc.register(nick)
    irc.send("TOPIC #party", "LIST", "WHO #party", "WHOIS " + WIDE * 24)
    lines += irc.received()
    assert _longest(lines) <= MESSAGE_MAX
    welcome = next(line for line in lines if " 001 " in line)
    assert welcome.startswith(f":Tea-Room 001 {nick} :Welcome to Tea Room {WIDE}")
    assert welcome.endswith(f"{WIDE}, {nick}")
    network = next(line for line in lines if "NETWORK=" in line)
    assert f"NETWORK=Tea\\x20Room\\x20{WIDE * 13} " in network
    topic = next(line for line in lines if " 332 " in line)
    assert len(topic.encode()) + 2 in range(MESSAGE_MAX - 3, MESSAGE_MAX + 1)


def test_irc_slow_reader_dropped_once_per_command(logged):
    """A command answered with several lines (WHO, NAMES, the history replay)
    that passes ``--max-pending`` midway drops the reader once: one log line,
    one LEFT for the room, one abort."""
    pool = make_pool(limits=unit_limits(max_pending=100, rate=1000.0, burst=1000))
    watcher = v1_named(pool, "watcher", "127.0.0.9")
    for i in range(5):
        v1_named(pool, f"member{i}", f"127.0.0.{i + 2}")
    slow = irc_named(pool, "slow", "127.0.0.1")
    watcher.received()
    slow.transport.producer.pauseProducing()  # the kernel buffer is full
    slow.send("WHO #party")  # one 352 per member, then 315
    drops = [formatEvent(e) for e in logged if "dropping slow reader" in formatEvent(e)]
    assert len(drops) == 1, drops
    assert slow.protocol.session.closed
