"""The one result schema: types, versioning, docs in sync."""

from pathlib import Path

import pyarrow as pa
import pytest

from joulegrid import schema as S

REPO = Path(__file__).resolve().parents[2]


def test_column_names_unique_and_units_in_names():
    names = [c.name for c in S.COLUMNS]
    assert len(names) == len(set(names))
    for c in S.COLUMNS:
        if c.unit == "J":
            assert c.name.endswith("_j"), c.name
        if c.unit == "s":
            assert c.name.endswith("_s"), c.name
        if c.unit == "bytes":
            assert c.name.endswith("_bytes"), c.name


def test_arrow_schema_carries_version():
    sch = S.arrow_schema()
    assert sch.metadata[b"joulegrid.schema_version"] == str(S.SCHEMA_VERSION).encode()
    assert sch.names == list(S.COLUMN_NAMES)


def test_to_table_fills_missing_and_keeps_types():
    t = S.to_table(
        [
            {
                "run_id": "a",
                "status": "ok",
                "energy_j": 1.5,
                "energy_readings": [
                    {
                        "meter": "estimate",
                        "component": "cpu",
                        "method": "estimate-tdp",
                        "energy_j": 1.5,
                        "interval_s": 0.0,
                        "samples": 2,
                        "estimated": True,
                    }
                ],
            }
        ]
    )
    assert t.num_rows == 1
    assert t.schema.field("energy_j").type == pa.float64()
    assert t.column("wall_s")[0].as_py() is None
    assert t.column("energy_readings")[0].as_py()[0]["method"] == "estimate-tdp"


def test_unknown_column_and_bad_status_rejected():
    with pytest.raises(S.SchemaError, match="unknown result column"):
        S.to_table([{"status": "ok", "not_a_column": 1}])
    with pytest.raises(S.SchemaError, match="status must be one of"):
        S.to_table([{"status": "fine"}])


def test_docs_results_schema_in_sync():
    doc = (REPO / "docs" / "results-schema.md").read_text()
    assert S.markdown() in doc, "docs/results-schema.md is stale: regenerate with `joulegrid schema --markdown`"
