"""A hostile submission, written as a participant would to get past rampwf's sanitizer.

Its ``fit`` tries each thing a submission must not reach (issue 16,
point 1) and prints what happened as a ``PROBES {json}`` line (once per fold:
rampwf loads the module again for each): its log is
what a run hands back whatever the sandbox lets it write. Then it trains
like any other submission, so it is scored when nothing escaped. rampwf
refuses sources with ``subprocess``, ``Popen``, ``shutil``, ``listdir``,
``scandir``... or " open" / "os.open": the source below avoids them.
"""

from __future__ import annotations

import json
import socket
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rampwf.utils.sanitize import _sanitize_input

#: The secrets planted where runs start (an environment, a credential file).
SECRETS = {"AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-test-secret-0123",
           "RAMP_DB_PASSWORD": "hunter2-ramp-board-db"}
CREDENTIAL = "aws_secret_access_key = wJalrXUtnFEMI-test-credential-4567"
PROBES = ("environment", "credential file", "event config", "other submission (read)",
          "other submission (write)", "data folder (write)", "kit (write)", "/proc/*/environ",
          "loopback service", "link to a secret")


@dataclass
class Targets:
    """Where the things a submission must not reach are, as absolute host paths."""

    credentials: Path
    event_config: Path
    other_submission: Path
    data_dir: Path
    kit_dir: Path
    port: int
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))


SOURCE = '''
import glob, json, os, pathlib, socket
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
T = json.loads({targets!r})


def attempt(probe):
    try:
        detail = probe()
    except Exception as exc:
        return "blocked: " + type(exc).__name__
    return detail if isinstance(detail, str) else "REACHED"


def in_environment():
    found = [n for n, v in os.environ.items() if n in T["secrets"] or v in T["secrets"].values()]
    return "REACHED: " + ",".join(found) if found else "blocked: not there"


def in_proc():
    found = []
    for name in glob.glob("/proc/*/environ"):
        try:
            data = pathlib.Path(name).read_bytes()
        except Exception:
            continue
        if any(value.encode() in data for value in T["secrets"].values()):
            found.append(name)
    return "REACHED: " + ",".join(found) if found else "blocked: not there"


def write(folder):
    return lambda: pathlib.Path(folder, "PWNED").write_text("pwned")


def link_secret():
    out = pathlib.Path(HERE, "training_output")
    out.mkdir(parents=True, exist_ok=True)
    os.link(T["credentials"], str(out / "creds"))


PROBES = {{
    "environment": in_environment,
    "credential file": lambda: pathlib.Path(T["credentials"]).read_text() and None,
    "event config": lambda: pathlib.Path(T["event_config"]).read_text() and None,
    "other submission (read)": lambda: pathlib.Path(T["other"], "estimator.py").read_text() and None,
    "other submission (write)": write(T["other"]),
    "data folder (write)": write(T["data"]),
    "kit (write)": write(T["kit"]),
    "/proc/*/environ": in_proc,
    "loopback service": lambda: socket.create_connection(("127.0.0.1", T["port"]), 5).close(),
    "link to a secret": link_secret,
}}


class Hostile(LogisticRegression):
    def fit(self, X, y):
        print("PROBES " + json.dumps({{k: attempt(p) for k, p in PROBES.items()}}), flush=True)
        return super().fit(X, y)


def get_estimator():
    return Hostile(max_iter=500)
'''


def hostile_estimator(targets: Targets) -> str:
    data = {"secrets": targets.secrets, "credentials": str(targets.credentials),
            "event_config": str(targets.event_config), "other": str(targets.other_submission),
            "data": str(targets.data_dir), "kit": str(targets.kit_dir), "port": targets.port}
    source = textwrap.dedent(SOURCE.format(targets=json.dumps(data)))
    _sanitize_input(source)  # raises if rampwf would refuse it
    return source


def probes_in(log: str) -> list[dict[str, str]]:
    """The probe results the hostile submission printed in its log, once per fit."""
    return [json.loads(line.removeprefix("PROBES ")) for line in log.splitlines()
            if line.startswith("PROBES ")]


def reached(results: dict[str, str]) -> dict[str, str]:
    return {probe: outcome for probe, outcome in results.items()
            if not outcome.startswith("blocked")}


@contextmanager
def loopback_listener() -> Iterator[socket.socket]:
    """A TCP service on 127.0.0.1 that never answers; afterwards, who connected."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.setblocking(False)
        yield server


def connections(server: socket.socket) -> int:
    """How many connections reached ``server`` (queued, never accepted)."""
    count = 0
    while True:
        try:
            connection, _ = server.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def plant_credentials(home: Path) -> Path:
    """A credential file in ``home``/.aws, as the dispatcher's user would have one."""
    credentials = home / ".aws" / "credentials"
    credentials.parent.mkdir(parents=True)
    credentials.write_text(f"[default]\n{CREDENTIAL}\n")
    credentials.chmod(0o600)
    return credentials
