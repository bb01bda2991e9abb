"""Submission folders travel as bytes; unsafe archives are refused before anything is written."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ramp_fleet.dask import archive
from ramp_fleet.dask.task import RunSpec, run_submission


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x = 1\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def test_round_trip_keeps_files_folders_and_inner_links(tmp_path: Path) -> None:
    source = tmp_path / "sub"
    (source / "pkg").mkdir(parents=True)
    (source / "estimator.py").write_text("def get_estimator(): ...\n")
    (source / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    os.symlink("pkg/data.bin", source / "alias.bin")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "x.pyc").write_bytes(b"junk")

    archive.extract(archive.pack(source), tmp_path / "out")

    out = tmp_path / "out"
    assert (out / "estimator.py").read_text() == "def get_estimator(): ...\n"
    assert (out / "pkg" / "data.bin").read_bytes() == bytes(range(256))
    assert (out / "alias.bin").read_bytes() == bytes(range(256))
    assert not (out / "__pycache__").exists()


@pytest.mark.parametrize("members, why", [
    ([_file("../evil.py")], "'..'"),
    ([_file("sub/../../evil.py")], "'..'"),
    ([_file("/tmp/evil.py")], "absolute"),
    ([_link("escape", "../../etc/passwd")], "outside"),
    ([_link("escape", "/etc/passwd")], "outside"),
    ([_link("hard", "/etc/passwd", tarfile.LNKTYPE)], "hard link"),
])
def test_unsafe_members_are_refused(tmp_path: Path, members: list, why: str) -> None:  # type: ignore[type-arg]
    data = _tar(_file("estimator.py"), *members)
    with pytest.raises(archive.UnsafeArchive, match=why):
        archive.extract(data, tmp_path / "out")
    assert not (tmp_path / "out" / "estimator.py").exists()  # checked before writing anything
    assert not (tmp_path / "evil.py").exists()


def test_packing_refuses_a_link_out_of_the_folder(tmp_path: Path) -> None:
    source = tmp_path / "sub"
    source.mkdir()
    os.symlink("/etc/passwd", source / "passwd")
    with pytest.raises(archive.UnsafeArchive, match="outside"):
        archive.pack(source)


def test_the_task_refuses_an_unsafe_archive(tmp_path: Path) -> None:
    spec = RunSpec(submission="evil", run_id="ramp-fleet-test-evil", kit_dir=str(tmp_path),
                   data_dir=str(tmp_path), conda_env=None, timeout=10)
    with pytest.raises(archive.UnsafeArchive):
        run_submission(spec, _tar(_file("../../evil.py")))
    assert not (tmp_path / "evil.py").exists()


def test_a_size_limit_stops_archive_bombs(tmp_path: Path) -> None:
    data = _tar(_file("big.bin", b"\0" * 10_000))
    with pytest.raises(archive.UnsafeArchive, match="more than"):
        archive.extract(data, tmp_path / "out", max_bytes=1000)
