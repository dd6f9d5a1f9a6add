"""What the user types and sees: input parsing, the /online box, name
colours, and the --script line format."""

from __future__ import annotations

import io

import pytest
from prompt_toolkit.utils import get_cwidth
from twisted.trial.unittest import SynchronousTestCase

from partypool.client.commands import (
    Admin,
    Mistake,
    Msg,
    Nothing,
    Request,
    Say,
    Simple,
    parse_input,
)
from partypool.client.script import ScriptView
from partypool.client.tui import name_style, online_box


def test_parse_input() -> None:
    """Plain text is SAY (kept exactly), commands are case-insensitive,
    mistakes become hints, ``//`` escapes a leading slash."""
    assert parse_input("  hi there ") == [Say("  hi there ")]
    assert parse_input("/ONLINE") == [Simple("online")]
    assert parse_input("/request  more snacks ") == [Request("more snacks")]
    assert parse_input("//shrug") == [Say("/shrug")]
    assert parse_input("   ") == [Nothing()]
    assert parse_input("/msg bob hi  there") == [Msg("bob", "hi  there")]
    [mistake] = parse_input("/request")
    assert isinstance(mistake, Mistake)
    assert isinstance(parse_input("/ip now")[0], Mistake)
    assert isinstance(parse_input("/msg bob")[0], Mistake)
    assert "/help" in parse_input("/dance")[0].hint
    assert isinstance(parse_input("/ſtop")[0], Mistake)  # ASCII-only commands


@pytest.mark.parametrize("brk", ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"])
def test_pasted_line_breaks_never_make_protocol_lines(brk: str) -> None:
    """Issue 13.8: a paste with a line break is several messages, never a
    raw protocol line; later lines are text, not commands."""
    assert parse_input(f"first line{brk}quit second line") == [
        Say("first line"),
        Say("quit second line"),
    ]
    assert parse_input(f"hi{brk}/exit") == [Say("hi"), Say("/exit")]
    assert parse_input(f"/msg bob one{brk}two") == [
        Msg("bob", "one"),
        Msg("bob", "two"),
    ]
    assert parse_input(f"/request more{brk}QUIT snacks") == [
        Request("more QUIT snacks")
    ]
    [refused] = parse_input(f"/online{brk}QUIT x")
    assert isinstance(refused, Mistake)


def test_admin_shortcuts() -> None:
    """/kick and /mute spell out admin commands; a name that could smuggle
    more into the command line is refused."""
    assert parse_input("/kick bob") == [Admin("remove -u bob")]
    assert parse_input("/mute bob 60") == [Admin("mute -u bob -t 60")]
    assert parse_input("/mute bob") == [Admin("mute -u bob")]
    assert parse_input("/unmute bob") == [Admin("unmute -u bob")]
    assert parse_input("/admin list-conn -u") == [Admin("list-conn -u")]
    for bad in ('/kick bob"; close-server', "/kick", "/mute bob soon", "/mute a b c"):
        assert isinstance(parse_input(bad)[0], Mistake), bad


def test_online_box() -> None:
    """Every line of the box has the same display width, wide names too."""
    box = online_box(["alice", "ＢＯＢ", "x" * 60])
    lines = box.splitlines()
    assert lines[0].startswith("╔") and lines[-1].startswith("╚")
    assert "ONLINE USERS (3)" in lines[1]
    assert len({get_cwidth(line) for line in lines}) == 1


def test_name_colour_is_stable() -> None:
    """The same name (in any case) always gets the same colour."""
    assert name_style("Alice") == name_style("alice")
    assert len({name_style(f"user{i}") for i in range(50)}) > 1


class ScriptViewTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.view = ScriptView(self.out, io.StringIO())
        self.handled: list[str] = []
        self.quits = 0
        self.view.session = self  # type: ignore[assignment]

    def handle_input(self, line: str) -> None:
        self.handled.append(line)

    def quit(self) -> None:
        self.quits += 1

    def test_event_lines(self) -> None:
        """Events print as the server's own lines, one per line."""
        self.view.chat("bob", "hi  <b>x</b>")
        self.view.left("bob", "quit: bye")
        self.view.shutdown(30, "maintenance")
        self.view.online(["alice", "bob"])
        self.view.request_stored(4)
        self.assertEqual(
            self.out.getvalue().splitlines(),
            [
                "CHAT bob hi  <b>x</b>",
                "LEFT bob quit: bye",
                "SHUTDOWN 30 maintenance",
                "ONLINE 2 alice bob",
                "OK REQUEST 4",
            ],
        )

    def test_name_from_stdin(self) -> None:
        """Without --name the first line is the name; lines read before the
        name is accepted are sent after it; end of input then quits."""
        self.view.input_line("alice")
        self.view.input_line("hello")
        name = self.view.ask_name(None)
        self.assertEqual(self.successResultOf(name), "alice")
        self.view.input_ended()
        self.assertEqual(self.quits, 0)
        self.view.named("alice", rejoined=False)
        self.assertEqual(self.handled, ["hello"])
        self.assertEqual(self.quits, 1)
        self.assertIn("NAMED alice", self.out.getvalue())

    def test_refused_name_given_by_flag_ends_the_run(self) -> None:
        """Newcomer 2, finding 18: with --name, a refused name ends the run
        (the session then exits 1); the next input line, meant as a
        message, is not taken for a name."""
        view = ScriptView(self.out, io.StringIO(), names_from_input=False)
        view.input_line("hello everyone")
        name = view.ask_name("the name bob is banned")
        self.assertIsNone(self.successResultOf(name))
        self.assertEqual(self.out.getvalue(), "NAME-REFUSED the name bob is banned\n")

    def test_end_of_input_while_asking_name(self) -> None:
        name = self.view.ask_name("the name root is reserved")
        self.view.input_ended()
        self.assertIsNone(self.successResultOf(name))
        self.assertIn("NAME-REFUSED the name root is reserved", self.out.getvalue())


def test_script_output_has_no_control_characters() -> None:
    """Control characters in a server's CHAT or ERR never reach the output."""
    import re

    from tests.client_fakes import PASSKEY, ScriptedServer, make_client

    out = io.StringIO()
    view = ScriptView(out, io.StringIO())
    server = ScriptedServer(make_client(PASSKEY, view))
    server.log_in()
    server.send(
        "CHAT ev\x1bil \x1b[2Jhi\x9b1m\x08\x08\rthere\u202e",
        "ERR odd \x1b]0;title\x07text\x85",
        "LEFT ev\x1bil \x1b[31mgone",
    )
    printed = out.getvalue()
    assert printed.splitlines() == [
        "CHAT evil [2Jhi1mthere",
        "ERR odd ]0;titletext",
        "LEFT evil [31mgone",
    ]
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", printed)


def test_host_and_port_flags_win_over_the_invite(tmp_path, monkeypatch, capsys) -> None:
    """Issue 13.10: --host/--port with an invite are used (the invite's pin
    still applies), and a line says so; without them the invite decides."""
    from partypool.client.main import parse_args, server_address
    from partypool.invite import Invite, seal_invite

    invite = Invite(
        host="chat.example.org",
        chat_port=12345,
        admin_port=None,
        tls=True,
        tls_fingerprint="AB:CD",
        ssh_fingerprint=None,
        server_name="Pool",
    )
    path = tmp_path / "invite.json"
    path.write_bytes(seal_invite(invite, "pk for tests", iterations=1000))
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "pk for tests")
    known = ["--known-servers", str(tmp_path / "known")]
    options = parse_args(
        ["--invite", str(path), "--host", "10.0.0.7", "--port", "999", *known]
    )
    address, passkey = server_address(options)
    assert (address.host, address.port, address.pin) == ("10.0.0.7", 999, "AB:CD")
    assert passkey == "pk for tests"
    err = capsys.readouterr().err
    assert "10.0.0.7 port 999" in err and "chat.example.org port 12345" in err
    address, _ = server_address(
        parse_args(["--invite", str(path), "--port", "4000", *known])
    )
    assert (address.host, address.port) == ("chat.example.org", 4000)
    assert "port 4000 as --host/--port say" in capsys.readouterr().err
    address, _ = server_address(parse_args(["--invite", str(path), *known]))
    assert (address.host, address.port) == ("chat.example.org", 12345)
    assert capsys.readouterr().err == ""


def test_root_reads_the_root_password(monkeypatch) -> None:
    """--root logs in with the root password and needs no passkey without
    an invite."""
    from partypool.client.main import parse_args, server_address

    monkeypatch.delenv("PARTYPOOL_PASSKEY", raising=False)
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", "the root password")
    options = parse_args(["--root", "--host", "h", "--insecure-plain"])
    _, secret = server_address(options)
    assert secret == "the root password"


def test_terminal_view_lines(monkeypatch) -> None:
    """The terminal shows the local time on each line (not with
    --no-timestamps), private lines both ways with a lock and a direction,
    and the history dimmed with its own time between two rules."""
    import datetime
    import re

    from prompt_toolkit.formatted_text import to_plain_text

    from partypool.client import tui
    from partypool.client.protocol import HistoryEntry

    shown: list[str] = []
    monkeypatch.setattr(
        tui,
        "print_formatted_text",
        lambda text, style=None: shown.append(to_plain_text(text)),
    )
    view = tui.TerminalView()
    view.private("bob", "psst")
    view.private_sent("bob", "hi")
    when = datetime.datetime(2020, 1, 2, 3, 4, tzinfo=datetime.UTC)
    view.history([HistoryEntry(1, when, "CHAT", "ann", "old news")])
    view.requested(5, "bob", "more snacks")
    assert re.fullmatch(r"\d\d:\d\d 🔒 bob → you: psst", shown[0])
    assert shown[1].endswith("🔒 you → bob: hi")
    assert shown[2].endswith("──── the last message ────")
    local = when.astimezone().strftime("%Y-%m-%d %H:%M")
    assert shown[3] == f"{local} $ann: old news"
    assert shown[4].endswith("──── live ────")
    assert shown[5].endswith("📨 request #5 from bob: more snacks")
    shown.clear()
    tui.TerminalView(timestamps=False).chat("bob", "hi")
    assert shown == ["$bob: hi"]
    shown.clear()
    view.history([HistoryEntry(1, when, "CHAT", "ann", "old news")] * 2)
    assert shown[0].endswith("──── the last 2 messages ────")


def test_terminal_marks_refused_messages(monkeypatch) -> None:
    """Newcomer 2, finding 11: a refused room or private message is shown
    as not delivered, quoting it (cut when long), with the server's reason;
    a rate-limit refusal (the server does not say which line) says a line
    did not get through."""
    from prompt_toolkit.formatted_text import to_plain_text

    from partypool.client import tui

    shown: list[str] = []
    monkeypatch.setattr(
        tui,
        "print_formatted_text",
        lambda text, style=None: shown.append(to_plain_text(text)),
    )
    view = tui.TerminalView(timestamps=False)
    view.refused("alice speaking", "muted", "you are muted for another 52 s")
    view.refused("y" * 100, "text-too-long", "text is longer than 40 characters")
    view.private_refused("bob", "psst", "muted", "you are muted")
    view.error("rate-limited", "at most 5 lines per second; line dropped")
    assert shown == [
        "✗ not delivered: “alice speaking” — you are muted for another 52 s (muted)",
        "✗ not delivered: “" + "y" * 59 + "…” — text is longer than 40 characters"
        " (text-too-long)",
        "✗ not delivered to bob: “psst” — you are muted (muted)",
        "✗ at most 5 lines per second; line dropped: one of your last lines did"
        " not get through (rate-limited)",
    ]
