"""The AWSTOE component document that builds an event's AMI.

The steps are data (``pipelines/<flavour>.yml``); each step's script is a
jinja2 snippet rendered with the event's values, and
``templates/component.yml.j2`` lays the steps out as an AWSTOE document.
Secrets never reach the document: private data credentials are read from
SSM Parameter Store by the build step, at build time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ramp_fleet.config import EventConfig
from ramp_fleet.config.sections import AWSWorkerSection
from ramp_fleet.errors import UsageError
from ramp_fleet.names import CONDA_PREFIX, EventNames, conda_env_name
from ramp_fleet.resources import PIPELINES_DIR
from ramp_fleet.templating import environment, render, render_string, shquote

PHASES = ("build", "validate", "test")
#: Image Builder refuses component documents longer than this.
MAX_DOCUMENT_CHARS = 16_000


class PipelineStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,127}$")
    phase: Literal["build", "validate", "test"]
    action: Literal["ExecuteBash", "Reboot"] = "ExecuteBash"
    run: str = ""
    as_user: bool = False
    when: str | None = None
    timeout: int = Field(default=600, ge=1, le=43_200)
    max_attempts: int = Field(default=1, ge=1, le=10)


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    vars: dict[str, str] = Field(default_factory=dict)
    steps: list[PipelineStep]


@dataclass(frozen=True)
class RenderedStep:
    name: str
    phase: str
    action: str
    timeout: int
    max_attempts: int
    script: str


def flavour_of(event: EventConfig) -> str:
    return "gpu" if event.infra.gpu else "cpu"


@cache
def load_pipeline(flavour: str) -> PipelineSpec:
    """``pipelines/<flavour>.yml``, with ``extends`` and ``insert_after`` applied."""
    path = PIPELINES_DIR / f"{flavour}.yml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PIPELINES_DIR.glob("*.yml")))
        raise UsageError(f"no pipeline flavour {flavour!r} in {PIPELINES_DIR} (known: {known})")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base_name = raw.pop("extends", None)
    inserts = raw.pop("insert_after", {})
    try:
        if base_name is None:
            return PipelineSpec.model_validate(raw)
        base = load_pipeline(base_name)
        steps = list(base.steps)
        for anchor, extra in inserts.items():
            at = next((i for i, step in enumerate(steps) if step.name == anchor), None)
            if at is None:
                raise UsageError(f"{path}: insert_after: no step {anchor!r} in {base_name}")
            steps[at + 1:at + 1] = [PipelineStep.model_validate(step) for step in extra]
        return PipelineSpec(
            description=raw.get("description", base.description),
            vars={**base.vars, **raw.get("vars", {})},
            steps=steps,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"{path}: {where}: {first['msg']}") from None


def _aws_keys(event: EventConfig) -> AWSWorkerSection:
    """The AWS worker's keys of the event, or their defaults (the AMI serves every worker)."""
    worker = event.worker
    return worker if isinstance(worker, AWSWorkerSection) else AWSWorkerSection()


def remote_kit_dir(event: EventConfig) -> str:
    """Where the kit lives on the AMI (the AWS worker's ``remote_ramp_kit_folder``)."""
    user = ami_user(event)
    folder = _aws_keys(event).remote_ramp_kit_folder
    if folder == "~" or folder.startswith("~/"):
        folder = f"/home/{user}" + folder[1:]
    return str(PurePosixPath(folder))


def kit_repository(event: EventConfig) -> str:
    """The kit to clone: ``infra.kit_repository``, else RAMP's ramp-kits/<problem>."""
    return event.infra.kit_repository or f"https://github.com/ramp-kits/{event.ramp.problem_name}.git"


def ami_user(event: EventConfig) -> str:
    """The user of the AMI (the AWS worker's ``ami_user_name``)."""
    return _aws_keys(event).ami_user_name


def build_context(event: EventConfig, region: str, *, private_data: bool) -> dict[str, Any]:
    """The values a pipeline step may use (see the header of pipelines/cpu.yml)."""
    names = EventNames.of(event)
    user = ami_user(event)
    kit_dir = remote_kit_dir(event)
    source = event.infra.data_source
    with_credentials = private_data and source.kind == "osf"
    return {
        "event_name": event.event_name,
        "problem_name": event.ramp.problem_name,
        "user": user,
        "home": f"/home/{user}",
        "conda_prefix": CONDA_PREFIX,
        "env_name": conda_env_name(event),
        "kit_repository": kit_repository(event),
        "kit_dir": kit_dir,
        "data_dir": f"{kit_dir}/data",
        "data": {"kind": source.kind, "location": source.location},
        "ssm": {
            "username_parameter": names.osf_username_parameter if with_credentials else None,
            "password_parameter": names.osf_password_parameter if with_credentials else None,
        },
        "region": region,
        "sandbox": event.ramp.sandbox_dir,
        "dask": event.worker_type == "dask",
        "gpu": event.infra.gpu,
    }


def render_steps(spec: PipelineSpec, context: dict[str, Any]) -> list[RenderedStep]:
    steps = []
    context = {**context, "vars": spec.vars}
    for step in spec.steps:
        if step.when is not None and not environment().compile_expression(step.when)(**context):
            continue
        script = ""
        if step.action == "ExecuteBash":
            body = "set -euo pipefail\n" + render_string(step.run, **context).strip() + "\n"
            script = _as_user(body, context["user"]) if step.as_user else body
        steps.append(
            RenderedStep(step.name, step.phase, step.action, step.timeout, step.max_attempts, script)
        )
    return steps


def _as_user(body: str, user: str) -> str:
    """Run ``body`` as ``user`` in a login shell (conda on its PATH), never as root."""
    return f"sudo -u {shquote(user)} -H -- bash -l -c {shquote(body)}\n"


def render_document(event: EventConfig, region: str, *, private_data: bool = False) -> str:
    """The component document for ``event``; ``private_data``: OSF credentials are in SSM."""
    spec = load_pipeline(flavour_of(event))
    steps = render_steps(spec, build_context(event, region, private_data=private_data))
    phases = [
        {"name": phase, "steps": [step for step in steps if step.phase == phase]}
        for phase in PHASES
    ]
    document = render(
        "component.yml.j2",
        name=EventNames.of(event).component,
        description=f"{spec.description}: {event.event_name}",
        phases=[phase for phase in phases if phase["steps"]],
    )
    yaml.safe_load(document)  # a template mistake fails here, not in Image Builder
    if len(document) > MAX_DOCUMENT_CHARS:
        raise UsageError(
            f"the component document is {len(document)} characters; Image Builder accepts "
            f"{MAX_DOCUMENT_CHARS} at most"
        )
    return document
