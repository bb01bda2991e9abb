"""The optional parts of ramp-fleet (pip extras) and the one check that names the missing one.

``pip install ramp-fleet`` runs a conda event; each other backend, the report,
ramp-board's store and the Pulumi program need an extra. A command checks its
extra where it starts (:func:`require`), so a missing library is one line and
exit status 2, naming the ``pip install`` to run, never an ImportError traceback.

:data:`EXTRAS` and pyproject.toml's ``[project.optional-dependencies]`` list the
same distributions (tests/test_extras.py keeps them from drifting apart).
"""

from __future__ import annotations

import importlib

from ramp_fleet.errors import UsageError

#: extra -> {module imported by its code: the distribution that provides it}.
EXTRAS: dict[str, dict[str, str]] = {
    "aws": {
        "boto3": "boto3", "botocore": "botocore", "fabric": "fabric", "paramiko": "paramiko",
        "invoke": "invoke", "cryptography": "cryptography",
    },
    "dask": {"dask": "dask", "distributed": "distributed", "cryptography": "cryptography"},
    # The elastic cluster launches its hosts with boto3 (not dask-cloudprovider's
    # EC2Cluster, so no aiobotocore) and needs the Dask client above.
    "elastic": {
        "dask": "dask", "distributed": "distributed", "cryptography": "cryptography",
        "dask_cloudprovider": "dask-cloudprovider", "boto3": "boto3", "botocore": "botocore",
    },
    "report": {"bokeh": "bokeh", "markupsafe": "markupsafe"},
    # ramp-board's own packages (ramp-database, SQLAlchemy<2, numpy<2) live in its
    # environment, where the helper runs: ramp-fleet's side needs nothing more today.
    "ramp-board": {},
    "infra": {"pulumi": "pulumi", "pulumi_aws": "pulumi-aws", "pulumi_tls": "pulumi-tls"},
}


class MissingExtra(UsageError):
    """A command needs an extra that is not installed here (exit status 2)."""

    def __init__(self, extra: str, needed_by: str, missing: list[str]):
        self.extra = extra
        self.missing = missing
        super().__init__(f"{needed_by} needs ramp-fleet's {extra} extra (not installed here: "
                         f"{', '.join(missing)}); run: {install_command(extra)}")


def install_command(extra: str) -> str:
    return f"pip install 'ramp-fleet[{extra}]'"


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` whose modules do not import here, sorted."""
    gone: set[str] = set()
    for module, distribution in EXTRAS[extra].items():
        try:
            importlib.import_module(module)
        except ImportError:
            gone.add(distribution)
    return sorted(gone)


def require(extra: str, needed_by: str) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` imports.

    ``needed_by`` says what needs it, e.g. ``"worker_type: aws"`` or ``"report"``.
    """
    gone = missing(extra)
    if gone:
        raise MissingExtra(extra, needed_by, gone)
