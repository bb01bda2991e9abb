"""Pulumi unit-test mocks for this program: record every resource and invoke.

Used by tests/infra and benchmarks/infra_preview.py. Install them before the
program's modules are imported, then run the program for a stack::

    mocks = install()
    from event_stack import StackSettings
    deployment = run_program(StackSettings(event_config=path))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

if TYPE_CHECKING:
    from event_stack import StackSettings

MOCK_AMI_ID = "ami-0123456789abcdef0"


def _pem(kind: str, name: str) -> str:
    return f"-----BEGIN {kind}-----\nMOCK{name}\n-----END {kind}-----\n"


def fake_outputs(typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs a provider would compute (wire names, as the engine sends them)."""
    if typ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": _pem("PRIVATE KEY", name),
                "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", name),
                "publicKeyOpenssh": f"ssh-ed25519 AAAAMOCK{name}"}
    if typ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": _pem("CERTIFICATE REQUEST", name)}
    if typ.startswith("tls:index/") and typ.endswith("Cert"):
        return {"certPem": _pem("CERTIFICATE", name)}
    if typ == "aws:ec2/instance:Instance":
        return {"publicIp": "203.0.113.10", "privateIp": "10.0.0.10"}
    if typ == "aws:s3/bucket:Bucket":
        return {"arn": f"arn:aws:s3:::{inputs.get('bucket', name)}"}
    if typ.startswith("aws:"):
        return {"arn": f"arn:aws:mock:eu-west-1:123456789012:{name}"}
    return {}


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.calls: list[pulumi.runtime.MockCallArgs] = []

    def reset(self) -> None:
        self.resources.clear()
        self.calls.clear()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self.resources.append(args)
        return f"{args.name}-id", {**args.inputs, **fake_outputs(args.typ, args.name, args.inputs)}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list[tuple[str, str]]]:
        self.calls.append(args)
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": MOCK_AMI_ID, "imageId": MOCK_AMI_ID, "name": "mock 2025-01-01"}, []
        return {}, []


_MOCKS: RecordingMocks | None = None


def install() -> RecordingMocks:
    """Point the Pulumi runtime at the mocks (once per process); returns the recorder."""
    global _MOCKS  # the Pulumi runtime's settings are process-wide too
    if _MOCKS is None:
        _MOCKS = RecordingMocks()
        pulumi.runtime.set_mocks(_MOCKS, project="ramp-fleet", stack="test", preview=False)
    return _MOCKS


@dataclass
class Deployment:
    """What one run of the program created: resource registrations and outputs."""

    resources: list[pulumi.runtime.MockResourceArgs]
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, token: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == token]

    def one(self, token: str) -> pulumi.runtime.MockResourceArgs:
        found = self.of_type(token)
        assert len(found) == 1, f"expected one {token}, got {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> pulumi.runtime.MockResourceArgs:
        return next(r for r in self.resources if r.name == name)


def run_program(settings: StackSettings) -> Deployment:
    """Run the whole program for ``settings`` under the mocks and wait for every output."""
    from event_stack import provision  # only once the mocks are installed

    mocks = install()
    mocks.reset()
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        return pulumi.Output.all(**provision(settings)).apply(outputs.update)

    program()
    return Deployment(list(mocks.resources), outputs)
