"""The benchmark's ``--quick`` run: it completes, and no message is lost.

Timings depend on the machine, so nothing here asserts one; the numbers are
for people (README, issue 8), the zero loss is for CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import server_env

pytestmark = pytest.mark.slow


def test_quick_bench_runs_every_workload_without_loss(tmp_path: Path) -> None:
    """W1–W5 (TLS) and W2 over plain TCP finish, each delivering everything."""
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "partypool.bench", "--quick", "--json", str(report)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(report.read_text())["results"]
    seen = {(r["name"].split()[0], r["transport"]) for r in results}
    assert seen == {("W1", "TLS"), ("W2", "TLS"), ("W2", "TCP"), ("W3", "TLS"),
                    ("W4", "TLS"), ("W5", "TLS")}  # fmt: skip
    for result in results:
        assert result["loss"] == 0, result
        assert result["received"] == result["expected"], result
    w5 = next(r for r in results if r["name"].startswith("W5"))
    assert w5["extra"]["logins"] > 0
    assert "| W1 seed scale | TLS |" in done.stdout
