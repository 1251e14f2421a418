"""joulegrid.axes is the one home of the axes: the config schema's enums, the precision and variant
implementations and the plan's and the cell's int8 rule all agree with it."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from joulegrid import axes, config, flops, grid, precision, variants

SCHEMA = yaml.safe_load(open(config.SCHEMA_PATH))


@pytest.mark.parametrize(
    "key,names",
    [("phases", axes.PHASES), ("devices", axes.DEVICES), ("precisions", axes.PRECISIONS), ("variants", axes.VARIANTS)],
)
def test_schema_enums_are_the_axes(key, names):
    assert SCHEMA["properties"]["grid"]["properties"][key]["items"]["enum"] == list(names)


def test_schema_int8_backends_are_the_axes():
    int8 = SCHEMA["properties"]["precision_options"]["properties"]["int8"]["properties"]
    assert int8["backend"]["enum"] == ["auto", *axes.INT8_BACKENDS]


def test_the_cell_axes_are_the_cells_fields_the_rows_identity_and_the_analysis_keys():
    from joulegrid import hotspots, schema
    from joulegrid.analysis import metrics

    assert [f.name for f in dataclasses.fields(grid.Cell) if f.name != "config_hash"] == list(axes.CELL_AXES)
    assert grid.AXES is axes.CELL_AXES
    identity = [c.name for c in schema.COLUMNS if c.group == "identity"]
    assert set(axes.CELL_AXES) <= set(identity)
    assert hotspots.IDENTITY == ("run_id", "cell_id", *axes.CELL_AXES) == schema.HOTSPOT_COLUMN_NAMES[:10]
    assert [schema.BY_NAME[a].type for a in axes.CELL_AXES] == [
        c.type for c in schema.HOTSPOT_COLUMNS if c.name in axes.CELL_AXES
    ]
    assert metrics.CELL_KEYS == (
        "site",
        "workload",
        "phase",
        "device",
        "precision",
        "variant",
        "batch_size",
        "config_hash",
        "code_version",
    )
    assert metrics.BASELINE_KEYS == (
        "site",
        "workload",
        "phase",
        "device",
        "batch_size",
        "code_version",
        "baseline_hash",
    )
    assert metrics.SITE_CELL_KEYS == (
        "workload",
        "phase",
        "device",
        "precision_variant",
        "batch_size",
        "config_hash",
        "code_version",
    )


def test_every_module_reads_the_same_names():
    assert grid.PRECISIONS is axes.PRECISIONS and grid.VARIANTS is axes.VARIANTS and variants.VARIANTS is axes.VARIANTS
    assert set(axes.PRECISION_MATH) == set(axes.PRECISIONS)
    assert flops.PRECISION_MATH is axes.PRECISION_MATH
    assert axes.BASELINE_PRECISION in axes.PRECISIONS and axes.BASELINE_VARIANT in axes.VARIANTS
    # every precision has an implementation and nothing else has one
    with pytest.raises(ValueError, match="; known: " + ", ".join(axes.PRECISIONS) + "$"):
        precision.get("fp8")


@pytest.mark.parametrize(
    "phase,device,backend",
    [
        ("train", "cpu", "auto"),
        ("infer", "cuda", "fbgemm"),
        ("infer", "cuda", "pt2e_x86"),
        ("infer", "cpu", "auto"),
        ("infer", "cuda", "auto"),
    ],
)
def test_the_cell_refuses_what_the_plan_excludes_with_the_same_reason(phase, device, backend):
    pytest.importorskip("torch")
    options = {"backend": backend, "scheme": "auto", "calibration_samples": 512}
    planned = grid.builtin_exclusion(phase, device, "int8", "baseline", precision_options={"int8": options})
    prec = precision.get("int8", phase, options)
    if planned is None:
        prec.ensure_supported(device)  # the int8 rule needs no cuda device to be checked
        return
    with pytest.raises(precision.Unsupported) as e:
        prec.ensure_supported(device)
    assert str(e.value) == planned


def test_axes_and_the_workload_registry_import_without_grid_or_torch():
    code = (
        "import sys; import joulegrid.workloads.registry, joulegrid.axes; "
        "assert 'joulegrid.grid' not in sys.modules, 'registry imports grid'; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
