"""``python -m dist_tools.smoke``: built packages against a real server, on the
system that built them.

The ``dist`` workflow runs this on Windows, macOS and Linux after building
the executables, and tests/test_dist_live.py runs it here: it starts
``partypool serve`` on loopback ports chosen by the system, waits for the
address it records, then

- runs the chat client (``--client``) in ``--script`` mode: it logs in,
  takes a name, says one line and leaves (exit status 0);
- runs the root client (``--root``) with ``-c list-conn`` (exit status 0).

The programs are told where the server is with flags and pinned to its
certificate and host key, so it works whatever invite they carry.  Exit
status 0 when every program did its part; otherwise each one's output is
printed.  Nothing but loopback is ever contacted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSKEY = "smoke test passkey, loopback only"
ROOT_PASSWORD = "smoke test root password, loopback only"
NAME = "smoke"
MESSAGE = "hello from the smoke test"
#: Bounds every wait: a start, a login, a command.
TIMEOUT = 120.0


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``partypool serve`` on loopback; its process and recorded ports."""
    from partypool.datadir import read_server_record

    env = dict(
        os.environ, PARTYPOOL_PASSKEY=PASSKEY, PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD
    )
    loopback = "tcp:0:interface=127.0.0.1"
    process = subprocess.Popen(
        [sys.executable, "-m", "partypool", "serve", "--data-dir", str(data_dir)]
        + ["--chat", loopback, "--admin", loopback, "--web", loopback],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        record = read_server_record(data_dir)
        if record is not None:
            return process, record.ports
        time.sleep(0.2)
    process.kill()
    output = process.communicate()[0]
    raise SystemExit(f"the server did not start:\n{output}")


def run(command: list[str], stdin: str, env: dict[str, str]) -> tuple[bool, str]:
    """Run one packaged program; whether it exited 0, and what it printed."""
    try:
        done = subprocess.run(
            command,
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{command[0]}: {e}"
    output = f"$ {' '.join(command)}\n{done.stdout}{done.stderr}"
    return done.returncode == 0, f"{output}(exit status {done.returncode})"


def smoke(client: Path | None, root: Path | None, work: Path) -> bool:
    """Start a server in ``work``, run the programs against it, stop it."""
    from partypool.identity import host_key_fingerprint
    from partypool.tls import certificate_fingerprint

    data_dir = work / "data"
    server, ports = start_server(data_dir)
    env = dict(
        os.environ,
        HOME=str(work),
        APPDATA=str(work),
        XDG_CONFIG_HOME=str(work / "config"),
        PARTYPOOL_PASSKEY=PASSKEY,
        PARTYPOOL_ROOT_PASSWORD=ROOT_PASSWORD,
    )
    results = []
    try:
        if client is not None:
            fingerprint = certificate_fingerprint(
                (data_dir / "tls" / "cert.pem").read_bytes()
            )
            command = [str(client), "--host", "127.0.0.1", "--port", str(ports["chat"])]
            command += ["--fingerprint", fingerprint, "--script", "--name", NAME]
            ok, output = run(command, MESSAGE + "\n", env)
            results.append((ok and f"NAMED {NAME}" in output, output))
        if root is not None:
            key = host_key_fingerprint(data_dir / "ssh" / "host_key")
            command = [str(root), "--host", "127.0.0.1", "--port", str(ports["admin"])]
            command += ["--host-key-fingerprint", key, "-c", "list-conn"]
            results.append(run(command, "", env))
    finally:
        server.terminate()
        try:
            log = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            log = server.communicate()[0]
    for ok, output in results:
        print(("ok: " if ok else "FAILED: ") + output, flush=True)
    if not all(ok for ok, _ in results):
        print(f"server log:\n{log}", flush=True)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dist_tools.smoke",
        description="Run built Party Pool programs against a local server.",
    )
    parser.add_argument("--client", type=Path, help="the built chat client")
    parser.add_argument("--root", type=Path, help="the built root client")
    args = parser.parse_args(argv)
    if args.client is None and args.root is None:
        parser.error("give --client and/or --root")
    with tempfile.TemporaryDirectory(prefix="partypool-smoke-") as work:
        return 0 if smoke(args.client, args.root, Path(work)) else 1


if __name__ == "__main__":
    sys.exit(main())
