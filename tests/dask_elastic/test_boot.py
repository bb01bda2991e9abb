"""The hosts' user-data as rendered from templates/dask-elastic-host.sh.j2, and their commands."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from ramp_fleet.dask.elastic.plan import HostBoot, conda_python
from ramp_fleet.dask.elastic.tls import ClusterCertificates

CERTS = ClusterCertificates.generate("ramp-fleet iris c0ffee00")
BOOT = HostBoot(event_name="iris", cluster_id="c0ffee00", region="eu-west-1",
                python=conda_python("ramp-iris"), ca_pem=CERTS.ca_pem.decode(),
                host_cert_pem=CERTS.host_cert_pem.decode(),
                key_parameter="/ramp-fleet/iris/dask-elastic/c0ffee00/host-key")
WORKER_ARGV = BOOT.worker_argv("tls://10.0.0.5:8786", "dask-c0ffee00-worker-3")


def test_the_scheduler_runs_from_the_event_env_with_tls_and_no_docker() -> None:
    script = BOOT.user_data("scheduler", BOOT.scheduler_argv())
    assert ("ExecStart=/opt/conda/envs/ramp-iris/bin/python -m distributed.cli.dask_scheduler "
            "--protocol tls --port 8786 --dashboard-address 127.0.0.1:8787 "
            "--tls-ca-file /etc/ramp-fleet/dask/ca.pem --tls-cert /etc/ramp-fleet/dask/cert.pem "
            "--tls-key /etc/ramp-fleet/dask/key.pem\n") in script
    assert "docker run" not in script and "apt-get" not in script
    assert CERTS.ca_pem.decode().strip() in script
    assert CERTS.host_cert_pem.decode().strip() in script


def test_the_host_key_comes_from_ssm_never_from_the_user_data() -> None:
    script = BOOT.user_data("worker", WORKER_ARGV)
    assert "PRIVATE KEY" not in script
    assert CERTS.host_key_pem.decode().strip().splitlines()[1] not in script
    assert ("/opt/conda/bin/aws ssm get-parameter --region eu-west-1 \\\n"
            "    --name /ramp-fleet/iris/dask-elastic/c0ffee00/host-key --with-decryption") in script


def test_a_host_powers_off_when_its_process_ends_or_its_boot_fails() -> None:
    script = BOOT.user_data("worker", WORKER_ARGV)
    assert "trap 'shutdown -h now' ERR" in script
    assert "Restart=no\nExecStopPost=+/usr/bin/systemctl --no-block poweroff" in script


def test_the_hosts_run_with_the_quiet_settings_and_the_scheduler_expects_long_tasks() -> None:
    scheduler = BOOT.user_data("scheduler", BOOT.scheduler_argv())
    worker = BOOT.user_data("worker", WORKER_ARGV)
    for script in (scheduler, worker):
        assert 'Environment="DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"' in script
    assert 'Environment="DASK_DISTRIBUTED__SCHEDULER__UNKNOWN_TASK_DURATION=1s"' in scheduler
    assert "UNKNOWN_TASK_DURATION" not in worker
    # The scheduler never runs a client's code (run_on_scheduler, client.run...).
    assert 'BLOCKED_HANDLERS=[\\"run_function\\"' in scheduler and "BLOCKED" not in worker


def test_a_worker_is_named_by_its_spec_name_and_leaves_when_its_scheduler_is_gone() -> None:
    argv = WORKER_ARGV
    assert argv[:4] == ["/opt/conda/envs/ramp-iris/bin/python", "-m", "distributed.cli.dask_worker",
                        "tls://10.0.0.5:8786"]
    options = {flag: argv[argv.index(flag) + 1] for flag in
               ("--name", "--nthreads", "--nworkers", "--worker-port", "--nanny-port",
                "--death-timeout")}
    assert options["--name"] == "dask-c0ffee00-worker-3"
    assert (options["--nthreads"], options["--nworkers"]) == ("1", "1")
    assert (options["--worker-port"], options["--nanny-port"]) == ("9000", "9001")
    assert options["--death-timeout"] == "120"


def test_values_in_shell_lines_are_quoted() -> None:
    odd = HostBoot(event_name="it's", cluster_id="c1", region="eu-west-1",
                   python="/opt/conda/envs/a b/bin/python", ca_pem="", host_cert_pem="",
                   key_parameter="/ramp-fleet/x y/host-key", user="ubuntu")
    script = odd.user_data("scheduler", odd.scheduler_argv())
    assert "--name '/ramp-fleet/x y/host-key'" in script
    assert "ExecStart='/opt/conda/envs/a b/bin/python' -m" in script
    assert shlex.split("'/opt/conda/envs/a b/bin/python' -m")[0] == "/opt/conda/envs/a b/bin/python"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_user_data_is_valid_bash() -> None:
    script = BOOT.user_data("worker", WORKER_ARGV)
    done = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
