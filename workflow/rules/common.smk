# The config, the grid and every check, in one call to the joulegrid package (joulegrid.snakefile:
# validation, stamps, grid snapshot, budget, submit environment, wildcard constraints, resource
# scopes); the rules read its answers. Pure Python: no torch import here.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the checkout's package, even if not installed

from joulegrid import snakefile as joulegrid_snakefile

JOULEGRID = joulegrid_snakefile.setup(workflow, config)
RESULTS = JOULEGRID.results
RESOURCES = JOULEGRID.resources_dir
CELL_PATHS = JOULEGRID.cell_paths
REPORT_INDEX = JOULEGRID.report_index
# The joulegrid command: given to shell commands as params (rule measure: in its command, see there).
JG = JOULEGRID.jg
JG_CONDA_ENV = joulegrid_snakefile.CONDA_ENV


onstart:
    # the checks that need the executor (site, threads, groups, transfers), the rerun guard, JOULEGRID_RETRIES
    JOULEGRID.on_start()


onsuccess:
    # one line naming the next command if Snakemake left jobs unchecked this run (snakemake/snakemake#4166)
    JOULEGRID.on_success()


onerror:
    # the jobs' own messages about their worker's environment (job-wrapper.sh), which Snakemake does not show
    JOULEGRID.on_error()
