"""Time to build each kind of event's whole Pulumi stack under Pulumi's mocks.

    .venv/bin/python benchmarks/infra_preview.py [--repeat 5]

Measures the program itself (config loading, document rendering, every
resource registration and output resolution); no provider, no network.
Target: at most 5 s per stack.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT)]  # the program's modules, and the test mocks

from tests.infra.pulumi_mocks import install, run_program  # noqa: E402

install()

import pulumi  # noqa: E402
from event_stack import StackSettings  # noqa: E402

TARGET_SECONDS = 5.0
EVENTS = {
    "conda": {
        "ramp": {"problem_name": "iris", "event_name": "bench_conda"},
        "worker": {"worker_type": "conda"},
        "infra": {"region": "eu-west-1", "allowed_cidrs": ["198.51.100.0/24"]},
    },
    "aws": {
        "ramp": {"problem_name": "iris", "event_name": "bench_aws"},
        "worker": {"worker_type": "aws", "ami_image_name": "bench-ami", "region_name": "eu-west-1"},
        "infra": {"allowed_cidrs": ["198.51.100.0/24"], "log_bucket": "bench-logs",
                  "data_source": {"kind": "osf", "location": "abc12"}},
    },
    "dask (4 workers)": {
        "ramp": {"problem_name": "iris", "event_name": "bench_dask"},
        "worker": {"worker_type": "dask", "dask_scheduler": "tcp://127.0.0.1:8786"},
        "infra": {"region": "eu-west-1", "allowed_cidrs": ["198.51.100.0/24"],
                  "data_source": {"kind": "s3", "location": "s3://bench/iris"},
                  "dask_cluster": {"n_workers": 4}},
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    worst = 0.0
    print(f"{'event':<18} {'resources':>9} {'first s':>8} {'median s':>9} {'min s':>7}")
    with tempfile.TemporaryDirectory() as folder:
        for kind, config in EVENTS.items():
            path = Path(folder) / f"{kind.split()[0]}.yml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            secrets = {}
            if kind == "aws":
                secrets = {"osf_username": pulumi.Output.secret("user"),
                           "osf_password": pulumi.Output.secret("password")}
            times, count = [], 0
            for _ in range(args.repeat):
                started = time.perf_counter()
                deployment = run_program(StackSettings(event_config=path, **secrets))
                times.append(time.perf_counter() - started)
                count = len(deployment.resources)
            worst = max(worst, max(times))
            print(f"{kind:<18} {count:>9} {times[0]:>8.3f} {statistics.median(times):>9.3f} "
                  f"{min(times):>7.3f}")
    verdict = "within" if worst <= TARGET_SECONDS else "OVER"
    print(f"slowest stack: {worst:.3f} s ({verdict} the {TARGET_SECONDS:g} s target)")
    return 0 if worst <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
