"""What the Dask task reads back from its run folder on the host: the runner's archive only."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ramp_fleet.host.dask_task import _read_bounded


def read_within(path: Path, max_bytes: int, seconds: float = 5.0) -> tuple[bool, bytes | None]:
    """``(returned in time, what it returned)``: a read that blocks must not hang the test."""
    box: list[bytes | None] = []
    reader = threading.Thread(target=lambda: box.append(_read_bounded(path, max_bytes)),
                              daemon=True)
    reader.start()
    reader.join(seconds)
    return (not reader.is_alive(), box[0] if box else None)


def test_the_archive_is_read_when_it_is_a_regular_file_within_the_limit(tmp_path: Path) -> None:
    archive = tmp_path / "results.tar.gz"
    archive.write_bytes(b"x" * 100)
    assert read_within(archive, 100) == (True, b"x" * 100)
    assert read_within(archive, 99) == (True, None)


def test_a_fifo_in_its_place_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "results.tar.gz"
    os.mkfifo(fifo)
    assert read_within(fifo, 1 << 20) == (True, None)


def test_a_link_in_its_place_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"the host's secret")
    (tmp_path / "results.tar.gz").symlink_to(secret)
    assert read_within(tmp_path / "results.tar.gz", 1 << 20) == (True, None)
