"""AWS worker overhead: instances and SSH connections per submission, makespan.

10 iris submissions, ``n_workers: 3``, dispatched twice — without and with
``reuse_instances`` — against moto EC2 on 127.0.0.1, each instance booted as a
throw-away sshd on 127.0.0.1 with the host key its user-data gave it (an
ssh_config routes moto's fictional instance IPs there; nothing leaves the
machine). Every run is a real ``ramp-test`` over SSH.

    .venv/bin/python benchmarks/aws_moto.py

Targets: ≤ 1 SSH connection per submission without reuse, ≤ 0.3 instances per
submission with reuse.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ramp_fleet.config import load_event_config  # noqa: E402
from ramp_fleet.dispatcher import Dispatcher  # noqa: E402
from ramp_fleet.progress import Reporter  # noqa: E402
from ramp_fleet.store import State, Store  # noqa: E402
from tests.fixtures.instance_hosts import InstanceHosts, instance_hosts_on_moto  # noqa: E402
from tests.fixtures.moto_ec2 import (  # noqa: E402
    MotoServer,
    live_instances,
    register_image,
    running_moto_server,
    use_in_this_process,
)
from tests.fixtures.sshd import keygen  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.WARNING)

EXAMPLE = REPO / "examples" / "iris"
N_SUBMISSIONS = 10
N_WORKERS = 3
ESTIMATORS = ("logreg", "knn", "random_forest", "dummy")


class Quiet(Reporter):
    def line(self, text: str) -> None:
        pass


def build_event(root: Path, ssh: InstanceHosts, reuse: bool) -> Path:
    kit = root / "instance" / "ramp-kit"
    kit.mkdir(parents=True)
    shutil.copy(EXAMPLE / "ramp-kits" / "iris" / "problem.py", kit)
    shutil.copytree(EXAMPLE / "ramp-data" / "iris" / "data", kit / "data")
    for index in range(N_SUBMISSIONS):
        source = EXAMPLE / "submissions" / ESTIMATORS[index % len(ESTIMATORS)]
        shutil.copytree(source, root / "submissions" / f"sub{index:02d}")
    key = root / "key"
    shutil.copy(ssh.client_key, key)
    key.chmod(0o600)
    config = {
        "ramp": {"problem_name": "iris", "event_name": f"bench_{'reuse' if reuse else 'fresh'}",
                 "submissions_dir": "submissions",
                 "kit_dir": str(EXAMPLE / "ramp-kits" / "iris"),
                 "data_dir": str(EXAMPLE / "ramp-data" / "iris")},
        "worker": {
            "worker_type": "aws", "region_name": "us-east-1", "ami_image_name": "ramp-bench",
            "instance_type": "t3.micro", "security_group": "ramp-workers",
            "key_path": str(key), "ssh_config_file": str(ssh.ssh_config),
            "remote_ramp_kit_folder": str(kit),
            "remote_activate": f"export PATH={REPO / '.venv' / 'bin'}:$PATH",
            "reuse_instances": reuse, "timeout": 300,
        },
        "dispatcher": {"hunger_policy": "exit", "n_workers": N_WORKERS, "n_threads": 1,
                       "time_between_collection": 0.2},
    }
    path = root / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(moto: MotoServer, ssh: InstanceHosts, workdir: Path, reuse: bool) -> dict[str, Any]:
    moto.reset()
    ec2 = moto.client()
    register_image(ec2, "ramp-bench 1.0.0")
    ec2.create_security_group(GroupName="ramp-workers", Description="bench")
    event = load_event_config(build_event(workdir / ("reuse" if reuse else "fresh"), ssh, reuse))
    dispatcher = Dispatcher(event, Quiet())
    started = time.monotonic()
    dispatcher.run()
    makespan = time.monotonic() - started
    stats = dispatcher.shared.stats
    store = Store(event.store_path)
    done = sum(1 for s in store.all() if s.state == State.SCORED)
    return {
        "reuse": reuse, "scored": done, "makespan": makespan,
        "instances": stats.instances_launched, "ssh": stats.ssh_connections,
        "leaked": len(live_instances(ec2)),
    }


def main() -> None:
    with running_moto_server() as moto, \
            tempfile.TemporaryDirectory(prefix="ramp-fleet-bench-") as tmp:
        use_in_this_process(moto)
        workdir = Path(tmp)
        client_key = workdir / "client_ed25519"
        keygen(client_key, "bench-client")
        with instance_hosts_on_moto(workdir / "instances", client_key, getpass.getuser()) as ssh:
            results = [run(moto, ssh, workdir, reuse) for reuse in (False, True)]
    print(f"{N_SUBMISSIONS} submissions, n_workers {N_WORKERS}, moto EC2 + loopback sshd")
    print(f"{'reuse_instances':16}{'scored':>8}{'instances/sub':>15}{'ssh conn/sub':>14}"
          f"{'makespan s':>12}{'leaked':>8}")
    for row in results:
        print(f"{row['reuse']!s:16}{row['scored']:>8}{row['instances'] / N_SUBMISSIONS:>15.2f}"
              f"{row['ssh'] / N_SUBMISSIONS:>14.2f}{row['makespan']:>12.1f}{row['leaked']:>8}")


if __name__ == "__main__":
    main()
