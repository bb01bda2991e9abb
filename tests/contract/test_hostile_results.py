"""What a run hands back cannot hurt the dispatcher, on every backend, through the real paths.

One event per backend: a submission per trap of :mod:`tests.contract.hostile_outputs`
(a hard link, a FIFO, 10 GB of zeros, 20 000 files), one that writes a 1 GB
log, and an honest one. The dispatcher runs as its own process, so its peak
resident memory (the kernel's ``VmHWM``) is its own: receiving must not
grow with what is sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ramp_fleet.config import EventConfig
from ramp_fleet.store import State, Store
from tests.conftest import write_submission
from tests.contract.conftest import Backend, submissions_dir
from tests.contract.hostile_outputs import CHATTY, CHATTY_BYTES, TRAPS, source

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
#: The dispatcher's peak memory while it receives all of the above; reading the
#: log or an archive whole would be over 1 GB.
PEAK_MEMORY_MB = 300


def dispatch_measured(event: EventConfig) -> int:
    """Run ``ramp-fleet dispatch`` as a process; its peak resident memory, in MB."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-m", "ramp_fleet", "dispatch", str(event.path)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    peak_kb = 0
    while process.poll() is None:
        peak_kb = max(peak_kb, _high_water_mark_kb(process.pid))
        time.sleep(0.05)
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert process.returncode == 0, stderr
    return peak_kb // 1024


def _high_water_mark_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has just ended
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def test_hostile_results_are_refused_the_log_bounded_and_the_honest_one_scored(
    backend: Backend, contract_event  # type: ignore[no-untyped-def]
) -> None:
    event = contract_event(("logreg",))
    for name, (body, _) in TRAPS.items():
        write_submission(submissions_dir(event), name, source(body))
    write_submission(submissions_dir(event), "chatty", source(CHATTY))

    peak_mb = dispatch_measured(event)

    print(f"{backend.name}: dispatcher peak resident memory {peak_mb} MB")
    rows = {row.name: row for row in Store(event.store_path).all()}
    assert (rows["logreg"].state, rows["chatty"].state) == (State.SCORED, State.SCORED)
    for name, (_, reason) in TRAPS.items():
        assert rows[name].state == State.CHECKING_ERROR, (name, rows[name].error)
        assert reason in (rows[name].error or ""), (name, rows[name].error)
        assert not (event.dirs.predictions.path / name).exists()
    log = (event.dirs.logs.path / "chatty" / "log").read_bytes()
    assert len(log) <= 4 << 20 and b"[\xe2\x80\xa6 truncated: " in log
    assert int(log.split(b"truncated: ")[1].split()[0]) > CHATTY_BYTES - (4 << 20)
    for folder in (event.dirs.predictions.path, event.dirs.logs.path):
        assert [p for p in folder.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())
                ] == []
    left = [p for p in event.dirs.predictions.path.rglob("*") if p.name.startswith(".")]
    assert left == []  # no half-received result
    assert peak_mb < PEAK_MEMORY_MB
