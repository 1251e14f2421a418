"""Atomic writes: the target is complete or absent, never half-written."""

import os

import pyarrow.parquet as pq
import pytest

from joulegrid import schema as S
from joulegrid.io import atomic_path, write_table


def test_write_table_roundtrip_and_no_temp_left(tmp_path):
    target = tmp_path / "a" / "r0.parquet"
    write_table(S.to_table([{"run_id": "x", "status": "ok"}]), target)
    assert pq.read_table(target).column("run_id")[0].as_py() == "x"
    assert [p.name for p in target.parent.iterdir()] == ["r0.parquet"]


def test_failed_write_leaves_old_file_untouched(tmp_path):
    target = tmp_path / "r0.parquet"
    target.write_bytes(b"previous measurement")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous measurement"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r0.parquet"]


def test_temp_name_is_hidden_and_not_a_result_name(tmp_path):
    with atomic_path(tmp_path / "r0.parquet") as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".") and name.endswith(".tmp")
        open(tmp, "wb").close()


def test_written_file_is_group_readable(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "r0.parquet"
        write_table(S.to_table([{"status": "ok"}]), target)
        assert target.stat().st_mode & 0o044 == 0o044
    finally:
        os.umask(old)
