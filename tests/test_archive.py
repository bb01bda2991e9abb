"""The one archive module: what goes out is regular files only, what comes back is refused
unless it is regular files and folders within the limits — nothing written outside."""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from ramp_fleet.archive import (
    Limits,
    UnsafeResult,
    copy_submission,
    pack_results,
    pack_submission,
    receive_archive,
    receive_folder,
)
from tests.hostile_archives import (
    dot_dot,
    link_chain,
    million_empty_files,
    path_max_chain,
    regular,
    special,
    tgz,
)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def make_submission(root: Path) -> Path:
    source = root / "sub"
    (source / "pkg" / "__pycache__").mkdir(parents=True)
    (source / "estimator.py").write_text("def get_estimator(): ...\n")
    (source / "pkg" / "data.bin").write_bytes(bytes(range(256)))
    (source / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (source / "pkg" / "training_output").mkdir()
    (source / "training_output").mkdir()
    (source / "training_output" / "old.csv").write_text("stale")
    return source


# -- outbound: a participant's folder ----------------------------------------------------


def test_a_submission_travels_without_its_outputs_or_caches_at_any_depth(tmp_path: Path) -> None:
    source = make_submission(tmp_path)
    expected = ["estimator.py", "pkg", "pkg/data.bin"]
    copy_submission(source, tmp_path / "copy")
    assert tree(tmp_path / "copy") == expected
    receive_archive(pack_submission(source), tmp_path / "unpacked", Limits())
    assert tree(tmp_path / "unpacked") == expected
    assert (tmp_path / "unpacked" / "pkg" / "data.bin").read_bytes() == bytes(range(256))


def test_links_in_a_submission_are_never_followed_nor_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key=hunter2")
    source = make_submission(tmp_path)
    os.symlink(secret, source / "x")
    os.symlink("pkg", source / "looped")
    os.link(secret, source / "hard")
    with caplog.at_level(logging.WARNING):
        packed = pack_submission(source)
        copy_submission(source, tmp_path / "copy")
    assert tree(tmp_path / "copy") == ["estimator.py", "pkg", "pkg/data.bin"]
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        assert sorted(tar.getnames()) == ["estimator.py", "pkg", "pkg/data.bin"]
        assert all(member.isreg() or member.isdir() for member in tar.getmembers())
    assert "skipped 'x'" in caplog.text and "a symbolic link" in caplog.text
    assert "skipped 'hard'" in caplog.text and "a hard link" in caplog.text


# -- inbound: what a run hands back --------------------------------------------------------


@pytest.mark.parametrize(("archive", "reason"), [
    (link_chain("SECRET"), "'s' is a symbolic link (to '.')"),
    (dot_dot(), "entry '../escape.txt': has an empty, '.' or '..' component"),
    (path_max_chain(), "is a symbolic link (to 'bbbb"),
])
def test_crafted_archives_are_refused_and_write_nothing_outside(
    tmp_path: Path, archive: bytes, reason: str
) -> None:
    destination = tmp_path / "inbox" / "out"
    destination.parent.mkdir()
    with pytest.raises(UnsafeResult, match=re.escape(reason)):
        receive_archive(archive, destination, Limits())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]


@pytest.mark.parametrize(("members", "reason"), [
    ([special("creds", tarfile.SYMTYPE, "/root/.aws/credentials")], "'creds' is a symbolic link"),
    ([regular("a"), special("b", tarfile.LNKTYPE, "a")], "'b' is a hard link (to 'a')"),
    ([special("fifo", tarfile.FIFOTYPE)], "'fifo' is a FIFO"),
    ([special("dev", tarfile.CHRTYPE)], "'dev' is a device"),
    ([regular("fold/../../escape.txt")], "has an empty, '.' or '..' component"),
    ([regular("/tmp/escape.txt")], "entry '/tmp/escape.txt': absolute"),
    ([regular("a"), regular("a")], "'a' appears twice"),
    ([regular("a"), regular("a/b")], "'a' is both a file and a folder"),
    ([regular("/".join(["d"] * 40))], "too deep or too long a name"),
])
def test_hostile_archives_are_refused_and_write_nothing_outside(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], reason: str
) -> None:
    destination = tmp_path / "inbox" / "out"
    destination.parent.mkdir()
    with pytest.raises(UnsafeResult, match=re.escape(reason)):
        receive_archive(tgz(*members), destination, Limits())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]
    assert not [p for p in destination.rglob("*") if p.is_symlink()]


def test_a_million_tiny_files_are_refused_at_the_cap_in_bounded_memory(tmp_path: Path) -> None:
    archive = million_empty_files(tmp_path / "million.tar.gz")
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeResult, match=r"more than 10000 files \(at '0010000'"):
            receive_archive(archive, tmp_path / "out", Limits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_a_local_folder_is_read_as_it_is_listed_and_refused_at_the_cap(tmp_path: Path) -> None:
    output = tmp_path / "training_output"
    output.mkdir()
    for index in range(20_000):
        (output / str(index)).touch()
    with pytest.raises(UnsafeResult, match="more than 10000 files"):
        receive_folder(output, tmp_path / "out", Limits())
    with pytest.raises(UnsafeResult, match="more than 10000 files"):
        pack_results(output, Limits())


def test_a_folder_nested_past_the_depth_limit_is_refused_coming_back_and_skipped_going_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = tmp_path / "sub"
    (deep / "/".join(["d"] * 40)).mkdir(parents=True)
    (deep / "estimator.py").write_text("x = 1\n")
    with pytest.raises(UnsafeResult, match="more than 32 levels deep"):
        receive_folder(deep, tmp_path / "out", Limits())
    with caplog.at_level(logging.WARNING):
        copy_submission(deep, tmp_path / "copy")
    assert (tmp_path / "copy" / "estimator.py").is_file()
    assert "more than 32 levels deep" in caplog.text


@pytest.mark.parametrize(("limits", "members", "reason"), [
    (Limits(max_file_bytes=100), [regular("big", b"x" * 101)], "'big' is larger than 100 bytes"),
    (Limits(max_bytes=150), [regular("a", b"x" * 100), regular("b", b"x" * 100)],
     "the result is larger than 150 bytes"),
    (Limits(max_files=3), [regular(f"f{i}") for i in range(4)], "more than 3 files"),
])
def test_every_cap_is_enforced(tmp_path: Path, limits: Limits,
                               members: list[tuple[tarfile.TarInfo, bytes]], reason: str) -> None:
    with pytest.raises(UnsafeResult, match=reason):
        receive_archive(tgz(*members), tmp_path / "out", limits)


def test_a_file_claiming_ten_gigabytes_is_refused_before_any_byte_is_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("zeros")
    info.size = 10 << 30
    header = info.tobuf(tarfile.GNU_FORMAT)
    import gzip

    bomb = gzip.compress(header + b"\0" * (1 << 20))  # the rest would be zeros too
    with pytest.raises(UnsafeResult, match="'zeros' is larger than"):
        receive_archive(bomb, tmp_path / "out", Limits())


def test_a_header_too_large_to_hold_in_memory_is_refused(tmp_path: Path) -> None:
    info, data = regular("a")
    info.pax_headers = {"comment": "x" * (50 << 20)}
    bomb = tgz((info, data), fmt=tarfile.PAX_FORMAT)
    assert len(bomb) < 1 << 20  # it compresses to almost nothing
    with pytest.raises(UnsafeResult, match="too large to read"):
        receive_archive(bomb, tmp_path / "out", Limits())


def test_garbage_is_refused_not_crashed_on(tmp_path: Path) -> None:
    with pytest.raises(UnsafeResult, match=r"not a readable \.tar\.gz"):
        receive_archive(b"not an archive", tmp_path / "out", Limits())


def test_a_local_output_with_links_or_special_files_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "SECRET"
    secret.write_text("DB_PASSWORD=x")
    for name, make in [
        ("link", lambda out: os.symlink(secret, out / "fold_0" / "scores.csv")),
        ("chain", lambda out: (os.symlink(".", out / "s"),
                               os.symlink("../s/s/../SECRET", out / "fold_0" / "e.txt"))),
        ("hard", lambda out: os.link(out / "bagged_scores.csv", out / "fold_0" / "h.csv")),
        ("fifo", lambda out: os.mkfifo(out / "fold_0" / "pipe")),
    ]:
        output = tmp_path / name / "training_output"
        (output / "fold_0").mkdir(parents=True)
        (output / "bagged_scores.csv").write_text("step,n_bag,acc\n")
        make(output)
        with pytest.raises(UnsafeResult, match="regular files and folders only"):
            receive_folder(output, tmp_path / name / "received", Limits())
        received = tmp_path / name / "received"
        assert not [p for p in received.rglob("*") if p.is_symlink()]
        assert all("DB_PASSWORD" not in p.read_text() for p in received.rglob("*") if p.is_file())


def test_results_are_packed_on_the_host_with_the_same_rules(tmp_path: Path) -> None:
    output = tmp_path / "training_output"
    (output / "fold_0").mkdir(parents=True)
    (output / "fold_0" / "scores.csv").write_text("step,acc\ntrain,1\n")
    receive_archive(pack_results(output, Limits()), tmp_path / "back", Limits())
    assert tree(tmp_path / "back") == ["fold_0", "fold_0/scores.csv"]
    os.symlink("/etc/passwd", output / "fold_0" / "passwd")
    with pytest.raises(UnsafeResult, match="'fold_0/passwd' is a symbolic link"):
        pack_results(output, Limits())
