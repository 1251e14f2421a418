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


def _fresh(code: str) -> str:
    import subprocess
    import sys

    from conftest import subprocess_env

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_row_is_written_without_importing_pandas_and_pandas_still_works(tmp_path):
    """pyarrow_without_pandas: pyarrow's first conversion imports pandas only to ask whether the values are pandas
    objects. After it, a row table and its Parquet file are made without pandas; `import pandas` works, and so does
    a pyarrow call that needs pandas (it imports it then)."""
    out = _fresh(
        "import sys\n"
        "from joulegrid.io import pyarrow_without_pandas, write_table\n"
        "from joulegrid import schema\n"
        "pyarrow_without_pandas()\n"
        "row = {'run_id': 'x', 'status': 'ok', 'energy_j': 1.5}\n"
        f"write_table(schema.to_table([row]), {str(tmp_path / 'r0.parquet')!r})\n"
        "schema.arrow_schema().empty_table()\n"
        "print('after the row:', 'pandas' in sys.modules, [getattr(f, '__name__', '') for f in sys.meta_path])\n"
        "import pandas as pd\n"
        "import pyarrow as pa\n"
        "df = pa.table({'a': [1, 2]}).to_pandas()\n"
        "print('to_pandas:', type(df) is pd.DataFrame, list(df['a']))\n"
    )
    assert "after the row: False" in out and "_NoPandas" not in out and "to_pandas: True [1, 2]" in out, out
    t = pq.read_table(tmp_path / "r0.parquet")
    assert t.schema == S.arrow_schema() and t.column("energy_j")[0].as_py() == 1.5
    # without the call, the same conversion imports pandas (what the call saves; if pyarrow stops doing this, the
    # call can go)
    plain = (
        "import sys\nfrom joulegrid import schema\nschema.to_table([{'status': 'ok'}])\nprint('pandas' in sys.modules)"
    )
    assert _fresh(plain).strip() == "True"


def test_nothing_changes_where_pandas_is_imported_already():
    out = _fresh(
        "import sys, pandas\n"
        "from joulegrid.io import pyarrow_without_pandas\n"
        "pyarrow_without_pandas()\n"
        "import pyarrow as pa\n"
        "print(pa.array(pandas.Series([1, 2])).to_pylist())\n"
    )
    assert out.strip() == "[1, 2]", out
