"""The page in a real browser: Debian's Chromium driven by Playwright against
the real ``twistd -n partypool``, with terminal-side users played by the
protocol-level script client (tests/wire_client.py).

Playwright never downloads a browser here: it drives /usr/bin/chromium
(``apt-get install chromium``, as .ci/run does).  Set PARTYPOOL_SCREENSHOTS
to a directory (``docs``) to write the README's screenshots there.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from tests.conftest import PASSKEY, start_server
from tests.wire_client import WireClient

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
ROOT_PASSWORD = "root password for the web tests"
# An insecure origin for the browser: a name that is not localhost.
INSECURE_HOST = "party.test"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install)"
    ),
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
            ],
        )
        expect.set_options(timeout=20_000)
        yield chromium
        chromium.close()


@pytest.fixture
def server(tmp_path):
    server = start_server(
        tmp_path / "data",
        "--allow-same-ip",  # every page and script comes from 127.0.0.1
        env={"PARTYPOOL_ROOT_PASSWORD": ROOT_PASSWORD},
    )
    yield server
    if server.process.poll() is None:
        server.stop()


def open_page(browser, url: str, **options):
    """A fresh browser profile on ``url``; ``page.dialogs`` records any alert()."""
    context = browser.new_context(ignore_https_errors=True, **options)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    return page


def page_of(browser, server, **options):
    return open_page(browser, f"https://127.0.0.1:{server.web_port}/", **options)


def join(page, name: str, passkey: str = PASSKEY) -> None:
    page.get_by_label("Passkey").fill(passkey)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#status")).to_have_text(f"Connected as {name}")


def join_as_root(page) -> None:
    page.get_by_label("Log in as the administrator").check()
    expect(page.get_by_label("Your name")).to_be_hidden()
    page.get_by_label("Root password", exact=True).fill(ROOT_PASSWORD)
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#status")).to_have_text("Connected as root")


def say(page, text: str) -> None:
    box = page.get_by_label("Message (or /help)")
    box.fill(text)
    box.press("Enter")


def shows(page, text: str, kind: str = "") -> None:
    expect(page.locator(f"#log li{kind}").filter(has_text=text).last).to_be_visible()


def script(server, name: str) -> WireClient:
    client = WireClient("127.0.0.1", server.chat_port, fingerprint=server.fingerprint)
    client.join(server.passkey, name)
    return client


def test_two_pages_and_a_script_chat_in_all_directions(browser, server):
    ann, ben = page_of(browser, server), page_of(browser, server)
    join(ann, "ann")
    sam = script(server, "sam")
    join(ben, "ben")
    shows(ann, "ben joined")
    expect(ann.locator("#member-list")).to_contain_text("sam")
    say(ann, "hello from ann")
    shows(ben, "hello from ann")
    assert sam.expect("CHAT ann") == "CHAT ann hello from ann"
    say(ben, "hello from ben")
    shows(ann, "hello from ben")
    assert sam.expect("CHAT ben") == "CHAT ben hello from ben"
    sam.send("SAY hello from sam")
    shows(ann, "hello from sam")
    shows(ben, "hello from sam")
    say(ann, "/online")
    shows(ann, "3 online: ann, ben, sam")
    say(ann, "/ip")
    shows(ann, "Your address as the server sees it: 127.0.0.1")
    say(ann, "/request more snacks")
    shows(ann, "Request #1 stored.")
    sam.close()
    shows(ann, "sam left")
    say(ben, "/exit")
    expect(ben.locator("#status")).to_have_text("You left")
    shows(ann, "ben left (quit)")


def test_keyboard_alone_logs_in_and_sends(browser, server):
    page = page_of(browser, server)
    expect(page.get_by_label("Passkey")).to_be_focused()
    page.keyboard.type(PASSKEY)
    page.keyboard.press("Tab")
    page.keyboard.type("Zoë")  # any script's letters, as the server takes them
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Connected as Zoë")
    expect(page.get_by_label("Message (or /help)")).to_be_focused()
    page.keyboard.type("/help")
    page.keyboard.press("Enter")
    shows(page, "/msg <name> <text>")


def test_history_on_joining_is_marked_off(browser, server):
    sam = script(server, "sam")
    sam.send("SAY before you came")
    sam.send("SAY and one more")
    sam.send("PING sync")
    sam.expect("PONG")
    page = page_of(browser, server)
    join(page, "late")
    shows(page, "before you came", ".history")
    shows(page, "and one more", ".history")
    expect(page.locator("#log li.divider")).to_have_text(" 2 earlier messages above")
    sam.send("SAY now live")
    shows(page, "now live", ".chat:not(.history)")


def test_private_messages_both_ways(browser, server):
    page = page_of(browser, server)
    join(page, "ann")
    sam = script(server, "sam")
    other = script(server, "other")
    say(page, "/msg sam just for you")
    assert sam.expect("PRIVATE") == "PRIVATE ann just for you"
    shows(page, "just for you", ".private")
    sam.send("MSG ann psst")
    shows(page, "psst", ".private")
    expect(page.locator("#log li.private").last).to_contain_text("from sam:")
    say(page, "/msg nobody hello")
    shows(page, "(no-such-user)", ".error")
    other.send("PING x")
    assert other.expect("PONG") == "PONG x"  # nothing private reached other


def test_markup_is_only_ever_text(browser, server):
    markup = "<img src=x onerror=alert(1)>"
    ann, ben = page_of(browser, server), page_of(browser, server)
    join(ann, "ann")
    join(ben, "ben")
    sam = script(server, "sam")
    say(ann, markup)
    sam.send(f"SAY {markup}")
    sam.send(f"MSG ben {markup}")
    shows(ben, markup, ".private")
    expect(ben.locator("#log li.chat").filter(has_text=markup)).to_have_count(2)
    assert ben.locator("#log img").count() == 0
    assert ann.dialogs == [] and ben.dialogs == []


def test_wrong_passkey_is_said_plainly(browser, server):
    page = page_of(browser, server)
    page.get_by_label("Passkey").fill("not the passkey")
    page.get_by_label("Your name").fill("guess")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#login-error")).to_have_text("Wrong passkey.")
    expect(page.get_by_role("button", name="Join")).to_be_enabled()
    join(page, "guess")  # and the right one still works


def test_taken_name_asks_again_with_the_servers_reason(browser, server):
    sam = script(server, "sam")
    page = page_of(browser, server)
    page.get_by_label("Passkey").fill(PASSKEY)
    page.get_by_label("Your name").fill("SAM")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#login-error")).to_contain_text("taken")
    page.get_by_label("Your name").fill("sam2")
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#status")).to_have_text("Connected as sam2")
    assert sam.expect("JOINED") == "JOINED sam2"


def websocket_handshake(port: int, origin: str) -> bytes:
    """The status line the door answers a WebSocket handshake from ``origin`` with."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as sock,
    ):
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
            ).encode()
        )
        return sock.recv(4096).split(b"\r\n")[0]


def test_foreign_origin_gets_403(server):
    port = server.web_port
    assert (
        websocket_handshake(port, "https://evil.example") == b"HTTP/1.1 403 Forbidden"
    )
    own = websocket_handshake(port, f"https://127.0.0.1:{port}")
    assert own == b"HTTP/1.1 101 Switching Protocols"


def test_oversized_message_gets_line_too_long_and_the_session_goes_on(browser, server):
    page = page_of(browser, server)
    join(page, "big")
    sam = script(server, "sam")
    say(page, "x" * 5000)
    shows(page, "lines are at most 4096 bytes; discarded (line-too-long)", ".error")
    say(page, "still here")
    assert sam.expect("CHAT") == "CHAT big still here"


def test_server_restart_the_page_reconnects(browser, server, tmp_path):
    page = page_of(browser, server)
    join(page, "stayer")
    server.stop()
    expect(page.locator("#status")).to_contain_text("reconnecting")
    again = start_server(
        tmp_path / "data",
        "--allow-same-ip",
        "--chat",
        f"tcp:{server.chat_port}:interface=127.0.0.1",
        "--web",
        f"tcp:{server.web_port}:interface=127.0.0.1",
    )
    try:
        expect(page.locator("#status")).to_have_text("Connected as stayer")
        sam = WireClient("127.0.0.1", again.chat_port, fingerprint=again.fingerprint)
        sam.join(again.passkey, "sam")
        sam.send("SAY welcome back")
        shows(page, "welcome back")
    finally:
        again.stop()


def test_root_kicks_and_mutes_from_the_members_list(browser, server):
    alice = page_of(browser, server)
    join(alice, "alice")
    bob = script(server, "bob")
    root = page_of(browser, server)
    join_as_root(root)
    say(root, "/help")
    shows(root, "/admin <command>")
    say(alice, "/help")
    shows(alice, "/help — this list")
    expect(alice.locator("#log")).not_to_contain_text("/admin")  # root's only
    say(root, "/admin list-conn")
    shows(root, "alice", ".admin")
    say(root, "/admin no-such-command")
    shows(root, "(failed: exit status", ".error")
    root.get_by_role("button", name="Mute bob").click()
    shows(root, "muted bob", ".admin")
    expect(root.locator("#log")).not_to_contain_text("exit status 0")
    bob.send("SAY can you hear me")
    assert bob.expect("ERR").startswith("ERR muted ")
    bob.send("REQUEST a song")
    shows(root, "Request #1 from bob:")
    root.get_by_role("button", name="Kick alice").click()
    expect(alice.locator("#status")).to_have_text("Disconnected")
    expect(alice.locator("#login-error")).to_contain_text("removed by admin")
    expect(root.locator("#member-list")).not_to_contain_text("alice")
    say(root, '/admin close-server -t 30 -m "party is over"')
    expect(root.locator("#banner")).to_contain_text("The server closes in")
    expect(root.locator("#banner")).to_contain_text("party is over")


def test_plain_http_elsewhere_than_localhost_says_so(browser, tmp_path):
    server = start_server(tmp_path / "data", "--no-tls", "--allow-same-ip")
    try:
        page = open_page(browser, f"http://{INSECURE_HOST}:{server.web_port}/")
        expect(page.locator("#insecure")).to_be_visible()
        expect(page.locator("#login")).to_be_hidden()
        local = open_page(browser, f"http://127.0.0.1:{server.web_port}/")
        join(local, "local")  # loopback is a secure context: plain HTTP works
    finally:
        server.stop()


def test_screenshots_phone_and_desktop(browser, server, tmp_path):
    """The README's pictures: a guest's phone in the dark scheme, the
    administrator's desktop in the light."""
    out = Path(os.environ.get("PARTYPOOL_SCREENSHOTS") or tmp_path)
    sam = script(server, "sam")
    sam.send("SAY the music starts at nine")
    phone = page_of(
        browser,
        server,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        color_scheme="dark",
    )
    join(phone, "mira")
    desk = page_of(
        browser, server, viewport={"width": 1280, "height": 760}, color_scheme="light"
    )
    join_as_root(desk)
    say(phone, "on my way, bringing snacks")
    sam.send("SAY who brought the speakers?")
    say(desk, "they are by the door")
    sam.send("MSG mira could you grab ice too?")
    say(phone, "/msg sam sure")
    sam.send("REQUEST play something by ABBA")
    say(desk, '/admin send -all "cake in the kitchen at ten"')
    shows(phone, "cake in the kitchen", ".notice")
    shows(phone, "sure", ".private")
    shows(desk, "play something by ABBA", ".notice")
    expect(desk.get_by_role("button", name="Kick mira")).to_be_visible()
    for page, name in ((phone, "web-phone.png"), (desk, "web-desktop.png")):
        page.get_by_label("Message (or /help)").blur()
        page.screenshot(path=str(out / name))
        assert (out / name).stat().st_size > 10_000
