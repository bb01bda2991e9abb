"""The README's copy-paste snippets stay true to the code."""

from __future__ import annotations

from pathlib import Path

from ramp_fleet.dask.host_settings import environment

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_every_dask_host_setting() -> None:
    text = README.read_text()
    for name, value in environment().items():
        assert f"{name}={value}" in text


def test_the_readme_lists_every_metric() -> None:
    from ramp_fleet.metrics import DispatcherMetrics

    text = README.read_text()
    names = {family.name for family in DispatcherMetrics().registry.collect()
             if family.name.startswith("ramp_fleet_")}
    assert len(names) == 6
    for name in names:
        assert f"| `{name}" in text, f"{name} is not in the README's metrics table"


def test_the_readme_documents_every_isolation_key() -> None:
    from ramp_fleet.config.sections import IsolationSection

    text = README.read_text()
    for key, field in IsolationSection.model_fields.items():
        default = "unset" if field.default is None else str(field.default).lower()
        if key == "read_only_paths":
            default = "[]"
        assert f"| `{key}` | {default} |" in text or f"| `{key}` | `{default}` |" in text, key
