"""Session rules against the real ``twistd -n partypool`` (issue 12, items 2
and 11): descriptors held by silent connections, and nothing after ``BYE``.

Figures are printed as ``FIGURE <name> <value>`` lines and recorded; the
assertions are the issue's targets, loosely (no timing assertions).
"""

# ruff: noqa: F811 (the battery's fixtures, imported, are test parameters here)
from __future__ import annotations

import contextlib
import socket
import time

import pytest

from tests.test_hardening import (  # noqa: F401 (figure, servers: fixtures)
    Client,
    fd_count,
    figure,
    joined,
    launch,
    raw_connect,
    rss_kib,
    servers,
    stop,
    wait_until,
)
from tests.wire_client import WireClient

pytestmark = pytest.mark.slow

SILENT = 600


def _settled_fds(pid: int) -> int:
    """The server's descriptor count once it stops changing (accepts done)."""
    last, same = fd_count(pid), 0
    deadline = time.monotonic() + 10
    while same < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = fd_count(pid)
        same = same + 1 if now == last else 0
        last = now
    return last


def _login_seconds(server, source: str, name: str) -> float:
    started = time.monotonic()
    client = joined(server, source, name)
    elapsed = time.monotonic() - started
    client.send("QUIT")
    assert client.closed()
    client.close()
    return elapsed


def _ping_ms(client) -> float:
    """One PING/PONG round trip of a logged-in user, in milliseconds."""
    started = time.monotonic()
    client.send("PING during")
    assert client.expect("PONG") == "PONG during"
    return round((time.monotonic() - started) * 1000, 2)


def _open_silent(server, sources: list[str]) -> list[socket.socket]:
    """Plain TCP connections that never start TLS nor send a byte, spread
    over ``sources``; ones the server already closed are fine."""
    sockets = []
    for i in range(SILENT):
        with contextlib.suppress(OSError):  # refused at once, reset: the point
            sockets.append(raw_connect(server, sources[i % len(sources)]))
    return sockets


def test_600_silent_sockets_from_one_address_hold_a_few_descriptors(
    tmp_path, servers, figure
):
    """Past the per-address cap (10) a connection that never finishes TLS is
    closed at once (one more may wait to be told why): 600 from one address
    cost a dozen descriptors, and another address logs in at once."""
    server = launch(servers, tmp_path / "data")
    pid = server.process.pid
    chatter = joined(server, "127.0.3.9", "chatter")
    baseline, rss_before = _settled_fds(pid), rss_kib(pid)
    silent = _open_silent(server, ["127.0.3.1"])
    held = _settled_fds(pid) - baseline
    timings = [_login_seconds(server, "127.0.3.2", f"other{i}") for i in range(3)]
    figure("silent_600_one_address_fds_baseline_held", (baseline, held))
    figure("silent_600_one_address_login_seconds", [round(t, 4) for t in timings])
    figure("silent_600_one_address_ping_ms", [_ping_ms(chatter) for _ in range(3)])
    figure("silent_600_one_address_rss_kib_before_after", (rss_before, rss_kib(pid)))
    for sock in silent:
        sock.close()
    assert held <= 12, held
    assert stop(server) == 0


def test_600_silent_sockets_from_60_addresses_stay_under_the_server_cap(
    tmp_path, servers, figure
):
    """Ten silent connections from each of 60 addresses: the server holds at
    most --max-unauthenticated (100 by default), closing the oldest of the
    biggest group for each newcomer, so a real login still gets through."""
    server = launch(servers, tmp_path / "data")
    pid = server.process.pid
    chatter = joined(server, "127.0.4.250", "chatter")
    baseline, rss_before = _settled_fds(pid), rss_kib(pid)
    silent = _open_silent(server, [f"127.0.4.{i}" for i in range(1, 61)])
    held = _settled_fds(pid) - baseline
    timings = [_login_seconds(server, "127.0.4.200", f"other{i}") for i in range(3)]
    figure("silent_600_sixty_addresses_fds_baseline_held", (baseline, held))
    figure("silent_600_sixty_addresses_login_seconds", [round(t, 4) for t in timings])
    figure("silent_600_sixty_addresses_ping_ms", [_ping_ms(chatter) for _ in range(3)])
    figure(
        "silent_600_sixty_addresses_rss_kib_before_after", (rss_before, rss_kib(pid))
    )
    for sock in silent:
        sock.close()
    assert held <= 100 + 2, held
    assert stop(server) == 0


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "tcp"])
def test_bye_is_the_last_line_when_login_and_keepalive_time_out_together(
    tmp_path, servers, tls
):
    """--login-timeout 2 --idle-ping 2: a silent connection gets ``ERR
    timeout``, ``BYE timeout`` and then the connection ends (no PING after)."""
    args = ["--login-timeout", "2", "--idle-ping", "2"]
    server = launch(servers, tmp_path / "data", *args, *([] if tls else ["--no-tls"]))
    if tls:
        silent = Client(server, "127.0.3.3")
    else:
        silent = WireClient(
            server.host, server.chat_port, tls=False, source="127.0.3.3"
        )
    lines = []
    try:
        while True:
            lines.append(silent.read_line(timeout=8))
    except EOFError:
        pass
    silent.close()
    assert lines[0].startswith("ERR timeout ")
    assert lines[1:] == ["BYE timeout"]
    assert stop(server) == 0
