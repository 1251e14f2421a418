"""docs/configuration.md's key table against workflow/schemas/config.schema.yaml: every key the schema
gives a default has a row, with the schema's default."""

from __future__ import annotations

import re

import yaml
from conftest import REPO

from joulegrid.config import SCHEMA_PATH as SCHEMA

DOC = REPO / "docs" / "configuration.md"
# keys documented by a pattern row instead of their own
PATTERN_ROWS = {"workloads": "workloads.<name>"}


def schema_keys(node: dict, prefix: str = "") -> dict[str, object]:
    """{dotted key: default} of every schema property that is not only a container of other keys."""
    out = {}
    for name, prop in node.get("properties", {}).items():
        key = prefix + name
        if "properties" in prop:
            out.update(schema_keys(prop, key + "."))
        elif "default" in prop:
            out[key] = prop["default"]
    return out


def doc_rows() -> dict[str, str]:
    """{key: default cell} of the '## Keys' table."""
    text = DOC.read_text()
    table = text[text.index("## Keys") :]
    table = table[: table.index("\n## ", 1)]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def parsed(cell: str) -> object:
    """A default as the table writes it (`[auto]`, null, 0.05, `config/sites.yaml`) as a YAML value."""
    return yaml.safe_load(cell.replace("`", ""))


def test_every_schema_key_documented_with_its_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    keys, rows = schema_keys(schema), doc_rows()
    missing = sorted(PATTERN_ROWS.get(k, k) for k in keys if PATTERN_ROWS.get(k, k) not in rows)
    assert not missing, f"docs/configuration.md, ## Keys: no row for {missing}"
    wrong = {k: (rows[k], d) for k, d in keys.items() if k not in PATTERN_ROWS and parsed(rows[k]) != d}
    assert not wrong, f"docs/configuration.md defaults differ from the schema's (doc, schema): {wrong}"
    unknown = sorted(set(rows) - {PATTERN_ROWS.get(k, k) for k in keys})
    assert not unknown, f"docs/configuration.md documents keys the schema does not have: {unknown}"


def test_default_grid_workloads_named_as_config_yaml_sets_them():
    """configuration.md gives the schema's grid.workloads default and says what config/config.yaml (the
    default grid, what `make run` measures) sets instead (issue 29)."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    row = doc_rows()["grid.workloads"]
    assert f"sets `[{', '.join(cfg['grid']['workloads'])}]`" in DOC.read_text() and "[baler_ae]" in row
