"""``python -m partypool.bench``: load the real server and measure it (issue 8).

Each workload starts its own ``twistd -n partypool`` (TLS unless ``--no-tls``,
a temporary data directory, loopback only) and drives it from several load
processes (`partypool.bench.worker`), so the server never shares a process,
and rarely an idle core, with its clients.  The limits that protect a real
server (rate, burst, clients, pending logins, timeouts) are lifted on the
command line so they do not shape the numbers; `server_args` lists them and
the report repeats them.

What is measured comes from outside the server: latency from the sender's
timestamp (in the message text; every process reads one monotonic clock) to
the receiver's read, server CPU from ``/proc/<pid>/stat`` (utime + stime),
server memory from ``/proc/<pid>/status`` (VmRSS).  Loss is deliveries
expected minus deliveries received; it must be zero.

Issue 8 states its W2 and W3 targets relative to a plain Twisted server, so
those workloads also run, with the same load, against that reference
(`partypool.bench.baseline`) on this machine, and the report gives our number
as a ratio of the reference's next to the issue's ratio (``--no-reference``
skips them).
"""

from __future__ import annotations

import argparse
import array
import functools
import json
import os
import resource
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import attrs

from partypool.tls import ensure_self_signed

REPO = Path(__file__).resolve().parents[2]  # the source tree the servers run
TWISTD = str(Path(sys.executable).with_name("twistd"))
HOST = "127.0.0.1"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 600.0  # the longest any one worker command may take
LOGIN_IN_FLIGHT = 200
OURS = "Party Pool"
OURS_IRC = "Party Pool, IRC gateway"  # the same server, the load through --irc
REFERENCE = "plain Twisted"  # partypool.bench.baseline


@attrs.define
class Result:
    """One workload's numbers, as printed and as written to ``--json``."""

    name: str
    transport: str
    clients: int
    server: str = OURS
    messages: int = 0
    expected: int = 0
    received: int = 0
    latency_ms: dict[str, float] = attrs.Factory(dict)
    cpu_us_per_delivery: float | None = None
    server_cpu_s: float = 0.0
    rss_mb: float = 0.0
    rss_kb_per_client: float | None = None
    logins_per_s: float | None = None
    login_s: float = 0.0
    driver: dict[str, float] = attrs.Factory(dict)
    extra: dict[str, object] = attrs.Factory(dict)
    server_args: list[str] = attrs.Factory(list)

    @property
    def loss(self) -> int:
        return self.expected - self.received


@attrs.define
class Sizes:
    """How big each workload is; `--quick` shrinks them to fit in a minute."""

    w1_clients: int = 20
    w1_seconds: float = 10.0
    w2_clients: int = 1000
    w2_senders: int = 50
    w2_seconds: float = 10.0
    w3_clients: int = 5000
    w4_clients: int = 10_000
    w4_hold: float = 60.0
    w4_idle_ping: float = 20.0
    w5_logins: int = 3000


QUICK = Sizes(
    w1_seconds=2.0,
    w2_clients=200,
    w2_senders=10,
    w2_seconds=2.0,
    w3_clients=500,
    w4_clients=1000,
    w4_hold=4.0,
    w4_idle_ping=2.0,
    w5_logins=300,
)


def raise_open_files(wanted: int) -> str:
    """Raise RLIMIT_NOFILE toward ``wanted`` (children inherit it); say what we got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    note = f"open files: soft limit {soft} (hard {hard})"
    if soft < wanted:
        note += f"; wanted {wanted}, so the largest workloads may fail to connect"
    return note


def server_args(clients: int, idle_ping: float = 60.0) -> list[str]:
    """The limits lifted for a run: nothing here may shape what is measured."""
    return [
        "--no-admin",
        "--allow-same-ip",  # every client comes from 127.0.0.1
        f"--max-clients={clients + 10}",
        "--rate=1000",
        "--burst=1000",
        "--max-pending-logins=100000",
        "--max-unauthenticated=100000",
        "--kdf-iterations=4096",  # the minimum: cheap PBKDF2 at start-up
        "--login-timeout=600",
        f"--idle-ping={idle_ping:g}",
    ]


class ServerProcess:
    """A chat server in its own process on a loopback port, measured from
    outside: what ours and the reference share."""

    label: str
    reference: bool  # True: the load logs in with HELLO → NICK, no SCRAM
    irc: bool = False  # True: the load speaks IRC to the gateway
    passkey: str
    log: Path

    def __init__(
        self,
        command: list[str],
        workdir: Path,
        cpus: set[int] | None,
        output: IO[bytes] | None = None,
    ) -> None:
        """Start the process and wait until it listens."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        if cpus:
            os.sched_setaffinity(self.process.pid, cpus)
        self.port = self._wait_for_port()

    def _listening_port(self) -> int | None:
        """The port, once the server says it listens; None until then."""
        raise NotImplementedError

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_tail()}")
            port = self._listening_port()
            if port is not None:
                return port
            time.sleep(0.05)
        raise RuntimeError(f"the server did not start:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text().splitlines()[-lines:])

    def cpu_times(self) -> tuple[float, float]:
        """(utime, stime) of the server process in seconds, from the kernel."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) / CLOCK_TICK, int(fields[12]) / CLOCK_TICK

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a few seconds: with thousands of clients
        the server's farewell (BYE to each, LEFT to the rest) is quadratic, and
        it is not what the benchmark measures."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Server(ServerProcess):
    """``twistd -n partypool`` in its own process, on a loopback port."""

    label = OURS
    reference = False

    def __init__(
        self,
        workdir: Path,
        tls: bool,
        extra: list[str],
        cpus: set[int] | None,
        irc: bool = False,
    ) -> None:
        self.irc = irc
        if irc:
            self.label = OURS_IRC
            extra = [*extra, f"--irc=tcp:0:interface={HOST}:backlog=1024"]
        self.passkey = secrets.token_urlsafe(16)
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(mode=0o700)
        passkey_file = workdir / "passkey"
        passkey_file.write_text(self.passkey)
        passkey_file.chmod(0o600)
        self.log = workdir / "twistd.log"
        command = [
            TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={self.log}",
            "partypool",
            f"--passkey-file={passkey_file}",
            f"--data-dir={self.data_dir}",
            # A deep accept queue: 200 connects in flight must not overflow it.
            f"--chat=tcp:0:interface={HOST}:backlog=1024",
            f"--web=tcp:0:interface={HOST}:backlog=1024",
            *([] if tls else ["--no-tls"]),
            *extra,
        ]
        super().__init__(command, workdir, cpus)
        self.web_port = self._logged_port("web door listening on ")

    def _listening_port(self) -> int | None:
        return self._logged_port(
            ("IRC gateway" if self.irc else "chat port") + " listening on "
        )

    def _logged_port(self, marker: str) -> int | None:
        text = self.log.read_text() if self.log.exists() else ""
        if marker not in text:
            return None
        return int(text.split(marker, 1)[1].split()[0].rsplit(":", 1)[1])


class ReferenceServer(ServerProcess):
    """The plain Twisted broadcast loop (`partypool.bench.baseline`) that the
    issue's W2 and W3 targets are relative to, measured the same way as ours."""

    label = REFERENCE
    reference = True
    passkey = ""

    def __init__(self, workdir: Path, tls: bool, cpus: set[int] | None) -> None:
        self.log = workdir / "baseline.log"
        self.port_file = workdir / "port"
        command = [
            sys.executable,
            "-m",
            "partypool.bench.baseline",
            f"--port-file={self.port_file}",
        ]
        if tls:  # the same kind of self-signed certificate as ours makes
            command += ["--tls", *map(str, ensure_self_signed(workdir / "tls"))]
        with self.log.open("wb") as output:
            super().__init__(command, workdir, cpus, output)

    def _listening_port(self) -> int | None:
        return int(self.port_file.read_text()) if self.port_file.exists() else None


class Workers:
    """The load processes and the line-of-JSON conversation with each."""

    def __init__(
        self,
        count: int,
        server: ServerProcess,
        tls: bool,
        workdir: Path,
        cpus: set[int] | None,
        web: bool = False,
    ) -> None:
        """Start ``count`` load processes aimed at ``server``, or with ``web``
        at its web door's WebSocket."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "partypool.bench.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(count)
        ]
        for process in self.processes:
            if cpus:
                os.sched_setaffinity(process.pid, cpus)
        self.ask_all(
            [
                {
                    "cmd": "setup",
                    "host": HOST,
                    "port": server.web_port if web else server.port,
                    "tls": tls,
                    "passkey": server.passkey,
                    "baseline": server.reference,
                    "irc": server.irc,
                    "websocket": web,
                    "out_dir": str(workdir),
                    "ident": f"w{i}",
                }
                for i in range(count)
            ]
        )

    def ask_all(self, commands: list[dict], timeout: float = COMMAND_TIMEOUT) -> list:
        """Send each worker its command, then wait for every reply."""
        for process, command in zip(self.processes, commands, strict=True):
            process.stdin.write(json.dumps(command).encode() + b"\n")
            process.stdin.flush()
        replies = []
        deadline = time.monotonic() + timeout
        for process in self.processes:
            ready, _, _ = select.select(
                [process.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            line = process.stdout.readline() if ready else b""
            if not line:
                raise RuntimeError("a load worker died or did not answer in time")
            replies.append(json.loads(line))
        return replies

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    process.stdin.write(b'{"cmd": "exit"}\n')
                    process.stdin.close()
                except OSError:
                    pass
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def percentiles(latencies: array.array) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)
    last = len(ordered) - 1
    return {
        name: ordered[round(q * last)] / 1e6
        for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
    }


class Bench:
    """Runs the workloads, each against a fresh server."""

    def __init__(
        self,
        sizes: Sizes,
        workers: int,
        keep: bool = False,
        pin: bool = False,
        lockstep: bool = False,
    ) -> None:
        self.sizes = sizes
        self.workers = workers
        self.keep = keep
        self.lockstep = lockstep
        # With --pin the server has CPU 0 to itself and the load the others,
        # so a woken load process never preempts the server mid-broadcast.
        self.server_cpus = self.worker_cpus = None
        if pin and len(os.sched_getaffinity(0)) >= 2:
            cpus = sorted(os.sched_getaffinity(0))
            self.server_cpus, self.worker_cpus = {cpus[0]}, set(cpus[1:])

    @contextmanager
    def running(
        self,
        result: Result,
        tls: bool,
        clients: int,
        idle_ping: float = 60.0,
        reference: bool = False,
        irc: bool = False,
        web: bool = False,
    ) -> Iterator[tuple[ServerProcess, Workers]]:
        """A server (ours, or the plain Twisted reference, which has no limits
        to lift) and its load workers, cleaned up whatever happens."""
        workdir = Path(tempfile.mkdtemp(prefix="partypool-bench-"))
        server = workers = None
        try:
            if reference:
                server = ReferenceServer(workdir, tls, self.server_cpus)
            else:
                result.server_args = server_args(clients, idle_ping)
                server = Server(
                    workdir, tls, result.server_args, self.server_cpus, irc=irc
                )
            result.server = server.label
            workers = Workers(
                self.workers, server, tls, workdir, self.worker_cpus, web=web
            )
            yield server, workers
        finally:
            if workers is not None:
                workers.stop()
            if server is not None:
                server.stop()
            if not self.keep:
                for path in sorted(workdir.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink()
                workdir.rmdir()

    def login(
        self, workers: Workers, clients: int, quit_after: bool = False
    ) -> tuple[int, float]:
        """Log ``clients`` in, 200 in flight in all; return (count, seconds)."""
        n = len(workers.processes)
        replies = workers.ask_all(
            [
                {
                    "cmd": "login",
                    "count": count,
                    "in_flight": flight,
                    "quit_after": quit_after,
                }
                for count, flight in zip(
                    split(clients, n), split(LOGIN_IN_FLIGHT, n), strict=True
                )
            ]
        )
        failed = sum(r["failed"] for r in replies)
        if failed:
            errors = [e for r in replies for e in r["errors"]]
            raise RuntimeError(f"{failed} logins failed, e.g. {errors[:3]}")
        return sum(r["logged_in"] for r in replies), max(r["seconds"] for r in replies)

    def chat(
        self,
        result: Result,
        server: ServerProcess,
        workers: Workers,
        senders: int,
        per_sender: int,
        rate: float,
        drain_timeout: float = 60.0,
    ) -> None:
        """Senders send, everyone receives; fill in loss, latency and CPU."""
        n = len(workers.processes)
        members = split(result.clients, n)
        user0, system0 = server.cpu_times()
        wall0 = time.monotonic()
        start_ns = time.monotonic_ns() + 200_000_000  # let every worker get it
        counts = split(senders, n)
        sent = workers.ask_all(
            [
                {
                    "cmd": "send",
                    "senders": count,
                    "per_sender": per_sender,
                    "rate": rate,
                    "start_ns": start_ns,
                    "first": sum(counts[:i]),
                    "of": senders,
                    "lockstep": self.lockstep,
                }
                for i, count in enumerate(counts)
            ]
        )
        total = sum(r["sent"] for r in sent)
        expect = [total * m - r["sent"] for m, r in zip(members, sent, strict=True)]
        drained = workers.ask_all(
            [{"cmd": "drain", "expect": e, "timeout": drain_timeout} for e in expect]
        )
        user, system = server.cpu_times()
        user, system = user - user0, system - system0
        cpu = user + system
        wall = time.monotonic() - wall0
        latencies = array.array("q")
        for reply in drained:
            latencies.frombytes(Path(reply["latency_file"]).read_bytes())
        result.messages = total
        result.expected = sum(expect)
        result.received = sum(r["received"] for r in drained)
        result.latency_ms = percentiles(latencies)
        result.server_cpu_s = cpu
        if result.received and total > 1:  # one message is below the tick
            result.cpu_us_per_delivery = cpu / result.received * 1e6
            result.extra["user_us_per_delivery"] = user / result.received * 1e6
            result.extra["system_us_per_delivery"] = system / result.received * 1e6
        result.driver = {
            "workers": n,
            "driver_cpu_s": sum(r["cpu"] for r in drained),
            "server_cpu_s": cpu,
            "wall_s": wall,
            "max_send_lag_ms": max(r["max_lag_ms"] for r in sent),
        }
        result.extra["pings_answered"] = sum(r["pings_answered"] for r in drained)
        result.extra["connected_at_end"] = sum(r["connected"] for r in drained)
        result.rss_mb = server.rss_bytes() / 2**20

    # -- the workloads ---------------------------------------------------------

    def w1(self, tls: bool, web: bool = False) -> Result:
        """Seed scale: 20 clients, each sends 5 msg/s."""
        s = self.sizes
        result = Result("W1 seed scale", _transport(tls, web), s.w1_clients)
        with self.running(result, tls, s.w1_clients, web=web) as (server, workers):
            self.login(workers, s.w1_clients)
            per_sender = round(5 * s.w1_seconds)
            self.chat(result, server, workers, s.w1_clients, per_sender, 5.0)
        return result

    def w2(
        self, tls: bool, reference: bool = False, irc: bool = False, web: bool = False
    ) -> Result:
        """A big room: 1,000 clients, 50 of them send 2 msg/s (with ``irc``,
        every client through the IRC gateway; with ``web``, through the web
        door's WebSocket)."""
        s = self.sizes
        result = Result("W2 big room", _transport(tls, web), s.w2_clients)
        running = self.running(
            result, tls, s.w2_clients, reference=reference, irc=irc, web=web
        )
        with running as (server, workers):
            _, result.login_s = self.login(workers, s.w2_clients)
            time.sleep(1.0)  # let the JOINED announcements drain first
            per_sender = round(2 * s.w2_seconds)
            self.chat(result, server, workers, s.w2_senders, per_sender, 2.0)
        return result

    def w3(self, tls: bool, reference: bool = False) -> Result:
        """Memory: idle logged-in clients; RSS before and after they log in."""
        s = self.sizes
        result = Result("W3 idle memory", _transport(tls), s.w3_clients)
        running = self.running(result, tls, s.w3_clients, reference=reference)
        with running as (server, workers):
            before = server.rss_bytes()
            _, result.login_s = self.login(workers, s.w3_clients)
            time.sleep(2.0)  # let the JOINED announcements drain first
            after = server.rss_bytes()
            result.rss_kb_per_client = (after - before) / s.w3_clients / 1024
            result.extra["rss_before_mb"] = before / 2**20
            # One message proves every client is still there and reading.
            self.chat(result, server, workers, 1, 1, 1.0)
            result.rss_mb = after / 2**20
        return result

    def w4(self, tls: bool) -> Result:
        """Hold: many clients for a while with keepalive, then one message to all."""
        s = self.sizes
        result = Result("W4 hold", _transport(tls), s.w4_clients)
        running = self.running(result, tls, s.w4_clients, s.w4_idle_ping)
        with running as (server, workers):
            _, result.login_s = self.login(workers, s.w4_clients)
            with Probe(server.port, tls) as probe:
                time.sleep(s.w4_hold)
            result.extra["hold_s"] = s.w4_hold
            result.extra["idle_ping_s"] = s.w4_idle_ping
            result.extra["probe_ms"] = probe.summary()
            self.chat(result, server, workers, 1, 1, 1.0)
        return result

    def w5(self, tls: bool) -> Result:
        """Logins per second (TLS + SCRAM + NICK, then QUIT), 200 in flight."""
        s = self.sizes
        result = Result("W5 logins", _transport(tls), LOGIN_IN_FLIGHT)
        with self.running(result, tls, LOGIN_IN_FLIGHT) as (server, workers):
            cpu0 = server.cpu_seconds()
            count, seconds = self.login(workers, s.w5_logins, quit_after=True)
            result.server_cpu_s = server.cpu_seconds() - cpu0
            result.login_s = seconds
            result.logins_per_s = count / seconds
            result.extra["logins"] = count
            result.extra["server_cpu_ms_per_login"] = result.server_cpu_s / count * 1e3
            result.rss_mb = server.rss_bytes() / 2**20
        return result


class Probe:
    """While a workload holds, time a fresh connection's HELLO and PING/PONG."""

    def __init__(self, port: int, tls: bool, interval: float = 1.0) -> None:
        self.port, self.tls, self.interval = port, tls, interval
        self.samples: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self._once(context))
            except (OSError, ValueError) as e:
                self.failures.append(str(e))

    def _once(self, context: ssl.SSLContext) -> float:
        """Connect, read HELLO, PING; milliseconds from connect to PONG."""
        start = time.monotonic()
        with socket.create_connection((HOST, self.port), timeout=10) as raw:
            sock = context.wrap_socket(raw) if self.tls else raw
            reader = sock.makefile("rb")
            if not reader.readline().startswith(b"HELLO "):
                raise ValueError("no HELLO")
            sock.sendall(b"PING probe\r\n")
            if reader.readline() != b"PONG probe\r\n":
                raise ValueError("no PONG")
            sock.sendall(b"QUIT\r\n")
        return (time.monotonic() - start) * 1e3

    def summary(self) -> dict[str, object]:
        ordered = sorted(self.samples)
        return {
            "probes": len(ordered),
            "failed": len(self.failures),
            "p50": ordered[len(ordered) // 2] if ordered else None,
            "max": ordered[-1] if ordered else None,
        }


def _transport(tls: bool, web: bool = False) -> str:
    """TLS or TCP for the chat port; WSS or WS for the web door's WebSocket."""
    if web:
        return "WSS" if tls else "WS"
    return "TLS" if tls else "TCP"


# -- the report ---------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(results: list[Result]) -> str:
    """The results as a Markdown table (also what the README shows)."""
    header = (
        "| workload | transport | server | clients | messages | deliveries expected"
        " | received | loss | p50 ms | p99 ms | max ms | server CPU µs/delivery"
        " | server RSS MB | RSS KB/client | logins/s |"
    )
    rows = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        latency = [_num(r.latency_ms.get(k)) for k in ("p50", "p99", "max")]
        rows.append(
            f"| {r.name} | {r.transport} | {r.server} | {r.clients:,} | {r.messages:,}"
            f" | {r.expected:,} | {r.received:,} | {r.loss:,} | "
            + " | ".join(latency)
            + f" | {_num(r.cpu_us_per_delivery)} | {_num(r.rss_mb, 1)}"
            f" | {_num(r.rss_kb_per_client, 1)} | {_num(r.logins_per_s, 0)} |"
        )
    return "\n".join(rows)


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def details(results: list[Result]) -> str:
    """What the table leaves out: login times, driver load, probes."""
    lines = []
    for r in results:
        driver = ", ".join(f"{k} {_num(v)}" for k, v in r.driver.items())
        lines.append(
            f"- {r.name} ({r.transport}, {r.server}): logins took {r.login_s:.1f} s; "
            f"server CPU {r.server_cpu_s:.2f} s"
            + (f"; driver: {driver}" if driver else "")
            + (f"; {json.dumps(_rounded(r.extra))}" if r.extra else "")
        )
    return "\n".join(lines)


@attrs.frozen
class Target:
    """One of issue 8's targets for our server.  ``reference`` is the issue's
    figure for a plain Twisted server on its author's machine: when given, the
    target is also the ratio ``target / reference`` to that server measured in
    the same run, which does not depend on the machine."""

    label: str
    name: str
    transport: str
    measure: Callable[[Result], float | None]
    target: float
    lower: bool = True  # lower is better
    reference: float | None = None

    def met(self, value: float, bound: float) -> str:
        ok = value <= bound if self.lower else value >= bound
        return "met" if ok else "missed"


TARGETS = (
    Target("W1 p99 latency ≤ 3 ms", "W1 seed scale", "TLS",
           lambda r: r.latency_ms.get("p99"), 3.0),
    Target("W2 server CPU ≤ 1.2 µs/delivery", "W2 big room", "TLS",
           lambda r: r.cpu_us_per_delivery, 1.2, reference=2.0),
    Target("W2 server CPU ≤ 0.8 µs/delivery", "W2 big room", "TCP",
           lambda r: r.cpu_us_per_delivery, 0.8, reference=1.5),
    Target("W3 ≤ 12 KB RSS per idle client", "W3 idle memory", "TLS",
           lambda r: r.rss_kb_per_client, 12.0, reference=25.0),
    Target("W5 ≥ 500 logins/s", "W5 logins", "TLS",
           lambda r: r.logins_per_s, 500.0, lower=False),
)  # fmt: skip


def targets(results: list[Result]) -> str:
    """Each target met or missed, with measured/target as a ratio, and where
    the issue compares with a plain Twisted server, our number as a ratio of
    that server's measured in this run against the issue's ratio."""
    found = {(r.name, r.transport, r.server): r for r in results}

    def measured(target: Target, server: str) -> float | None:
        r = found.get((target.name, target.transport, server))
        return None if r is None else target.measure(r)

    lines = []
    for t in TARGETS:
        value = measured(t, OURS)
        if value is None:
            continue
        line = (
            f"- {t.label} ({t.transport}): measured {value:,.2f}, "
            f"measured/target {value / t.target:.2f} ({t.met(value, t.target)})"
        )
        base = measured(t, REFERENCE) if t.reference else None
        if base:
            goal = t.target / t.reference
            line += (
                f"; {REFERENCE} measured {base:,.2f} (issue: {t.reference:.1f}),"
                f" ours/{REFERENCE} {value / base:.2f}, target {goal:.3g}"
                f" ({t.met(value / base, goal)})"
            )
        lines.append(line)
    for transport in ("TLS", "TCP"):
        chat = found.get(("W2 big room", transport, OURS))
        irc = found.get(("W2 big room", transport, OURS_IRC))
        if chat and irc and chat.cpu_us_per_delivery and irc.cpu_us_per_delivery:
            ratio = irc.cpu_us_per_delivery / chat.cpu_us_per_delivery
            lines.append(
                f"- W2 through the IRC gateway ≤ 1.5× the chat port's CPU per "
                f"delivery ({transport}): {irc.cpu_us_per_delivery:,.2f} vs "
                f"{chat.cpu_us_per_delivery:,.2f} µs, {ratio:.2f}×"
                f" ({'met' if ratio <= 1.5 else 'missed'})"
            )
    for name in ("W1 seed scale", "W2 big room"):
        for chat, web in (("TLS", "WSS"), ("TCP", "WS")):
            ports = found.get((name, chat, OURS)), found.get((name, web, OURS))
            if None in ports or None in [r.cpu_us_per_delivery for r in ports]:
                continue
            ratio = ports[1].cpu_us_per_delivery / ports[0].cpu_us_per_delivery
            lines.append(
                f"- {name.split()[0]} web door CPU ≤ 1.5 × the chat port's ({web} vs"
                f" {chat}): {ports[1].cpu_us_per_delivery:.2f} vs"
                f" {ports[0].cpu_us_per_delivery:.2f} µs/delivery, ratio {ratio:.2f}"
                f" ({'met' if ratio <= 1.5 else 'missed'}); p99"
                f" {_num(ports[1].latency_ms.get('p99'))} vs"
                f" {_num(ports[0].latency_ms.get('p99'))} ms"
            )
    w4 = found.get(("W4 hold", "TLS", OURS)) or found.get(("W4 hold", "TCP", OURS))
    if w4 is not None:
        probe = w4.extra.get("probe_ms", {})
        lines.append(
            f"- W4 every client gets the message: {w4.received:,} of {w4.expected:,}"
            f" ({'met' if w4.loss == 0 and w4.expected else 'missed'}); during the"
            f" hold a new connection's HELLO + PING/PONG took p50 "
            f"{_num(probe.get('p50'))} ms, max {_num(probe.get('max'))} ms"
            f" ({probe.get('failed', 0)} of {probe.get('probes', 0)} probes failed)"
        )
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m partypool.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="reduced run, < 1 min")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--no-tls",
        action="store_true",
        help="plain TCP only (default: TLS, plus W2 over TCP)",
    )
    parser.add_argument(
        "--tls-only", action="store_true", help="skip the plain TCP run of W2"
    )
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help=f"skip the {REFERENCE} reference runs of W2 and W3",
    )
    parser.add_argument(
        "--no-web",
        action="store_true",
        help="skip the runs of W1 and W2 through the web door's WebSocket",
    )
    parser.add_argument(
        "--no-irc",
        action="store_true",
        help="skip the run of W2 through the IRC gateway",
    )
    parser.add_argument(
        "--only", default="W1,W2,W3,W4,W5", help="workloads to run, e.g. W2,W4"
    )
    parser.add_argument(
        "--workers", type=int, default=4, help="load processes (default 4)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="run the server on the first CPU and the load on the others",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="senders send at the same instants (default: spread evenly)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary server directories"
    )
    args = parser.parse_args(argv)
    # Clean up (servers, workers, temporary directories) on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupted)
    sizes = QUICK if args.quick else Sizes()
    note = raise_open_files(sizes.w4_clients + 2000)
    print(note, flush=True)
    bench = Bench(sizes, args.workers, args.keep, args.pin, args.lockstep)
    chosen = {name.strip().upper() for name in args.only.split(",")}
    plan: list[tuple[str, Callable[[], Result]]] = []
    for name in ("W1", "W2", "W3", "W4", "W5"):
        if name not in chosen:
            continue
        run = getattr(bench, name.lower())
        both = name == "W2" and not (args.no_tls or args.tls_only)
        for tls in (True, False) if both else (not args.no_tls,):
            label = f"{name} over {_transport(tls)}"
            plan.append((label, functools.partial(run, tls)))
            # The workloads whose targets the issue gives relative to a plain
            # Twisted server: run it right after ours, under the same load.
            if name in ("W2", "W3") and not args.no_reference:
                reference = functools.partial(run, tls, reference=True)
                plan.append((f"{label} against {REFERENCE}", reference))
            # The IRC gateway's cost, compared with the chat port's.
            if name == "W2" and not args.no_irc:
                irc = functools.partial(run, tls, irc=True)
                plan.append((f"{label} through the IRC gateway", irc))
            # The same load through the web door, to compare with the chat port.
            if name in ("W1", "W2") and not args.no_web:
                web = functools.partial(run, tls, web=True)
                plan.append((f"{name} over {_transport(tls, web=True)}", web))
    results = []
    for label, run in plan:
        print(f"running {label} …", flush=True)
        results.append(run())
    print()
    print(table(results))
    print()
    print(details(results))
    print()
    print(targets(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "open_files": note,
                    "workers": args.workers,
                    "results": [attrs.asdict(r) | {"loss": r.loss} for r in results],
                },
                indent=2,
            )
        )
    return 1 if any(r.loss for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
