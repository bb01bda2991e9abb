"""The runner as a zip application, for machines where ramp-fleet is not installed.

The AWS worker uploads it into each run's folder (``runner.pyz``) and the
instance runs it with its system Python (``python3 -I -S runner.pyz .``):
the same code that runs a submission here runs it there. The package is
standard library only, so the archive holds just its modules.
"""

from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MAIN = (
    "import sys\n"
    "from ramp_fleet.sandbox.runner import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
#: A fixed date keeps the archive the same bytes from run to run.
_DATE = (2020, 1, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def runner_pyz() -> bytes:
    """The zip application's bytes (built once per process)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        _add(archive, "__main__.py", MAIN)
        _add(archive, "ramp_fleet/__init__.py", '"""ramp-fleet\'s sandbox, shipped alone."""\n')
        for module in sorted(PACKAGE.glob("*.py")):
            _add(archive, f"ramp_fleet/sandbox/{module.name}", module.read_text(encoding="utf-8"))
    return buffer.getvalue()


def _add(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name, date_time=_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, text)
