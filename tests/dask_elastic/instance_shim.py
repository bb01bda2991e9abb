"""TEST ONLY: what an EC2 host of the elastic cluster does, for one moto "instance".

    python -m tests.dask_elastic.instance_shim PLAN.json

Does what the host's user-data does (write the CA and the host certificate,
read the host key from SSM, start the Dask process with the settings of the
plan) and what EC2 does around it: when moto says the instance is shutting
down or terminated (or moto is gone), the process tree is stopped; when the
process ends, the instance "powers off" and is terminated, as a host with
``InstanceInitiatedShutdownBehavior: terminate`` is. It runs in a session of
its own, so it outlives the process that launched the instance, as an EC2
instance outlives a dispatcher killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

POLL_SECONDS = 1.0
#: moto unreachable this long: the "cloud" is gone, and the instance with it.
MOTO_GONE_SECONDS = 10.0
GONE_STATES = {"shutting-down", "terminated", "stopping", "stopped"}


def main(plan_path: str) -> int:
    plan: dict[str, Any] = json.loads(Path(plan_path).read_text())
    ec2 = boto3.client("ec2", region_name=plan["region"])
    instance_id = plan["instance_id"]
    try:
        write_tls_files(plan)
    except Exception as exc:  # the user-data's `trap 'shutdown -h now' ERR`
        print(f"boot failed: {exc}", file=sys.stderr, flush=True)
        ec2.terminate_instances(InstanceIds=[instance_id])
        return 1
    with open(plan["log"], "ab") as log:
        child = subprocess.Popen(plan["argv"], env=plan["env"], cwd=plan["home"], stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    unreachable_since: float | None = None
    while not stop["now"]:
        if child.poll() is not None:  # the process ended: the host powers off
            terminate_quietly(ec2, instance_id)
            return 0
        state, unreachable_since = instance_state(ec2, instance_id, unreachable_since)
        if state in GONE_STATES:
            break
        time.sleep(POLL_SECONDS)
    stop_tree(child)
    return 0


def write_tls_files(plan: dict[str, Any]) -> None:
    tls_dir = Path(plan["tls_dir"])
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in plan["files"].items():
        (tls_dir / name).write_text(text)
    ssm = boto3.client("ssm", region_name=plan["region"])
    key = ssm.get_parameter(Name=plan["key_parameter"], WithDecryption=True)["Parameter"]["Value"]
    descriptor = os.open(tls_dir / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key)


def instance_state(ec2: Any, instance_id: str,
                   unreachable_since: float | None) -> tuple[str, float | None]:
    try:
        reply = ec2.describe_instances(InstanceIds=[instance_id])
    except botocore.exceptions.ClientError:
        return "terminated", None  # moto no longer knows it (reset)
    except botocore.exceptions.BotoCoreError:
        now = time.monotonic()
        since = unreachable_since or now
        return ("terminated" if now - since > MOTO_GONE_SECONDS else "unknown"), since
    for reservation in reply["Reservations"]:
        for instance in reservation["Instances"]:
            return str(instance["State"]["Name"]), None
    return "terminated", None


def terminate_quietly(ec2: Any, instance_id: str) -> None:
    with contextlib.suppress(botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
        ec2.terminate_instances(InstanceIds=[instance_id])


def stop_tree(child: subprocess.Popen[bytes]) -> None:
    for signum, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            break
        try:
            child.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # the rest of the group goes with the host
        os.killpg(child.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
