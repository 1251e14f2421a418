#!/bin/sh
# joulegrid's wrapper of cluster jobs (docs/sites.md, "What a job needs on the worker").
#
# HTCondor runs it as every joulegrid job's executable (job_wrapper, set by executors.py) and
# transfers it with the job, so it runs even on a worker that sees nothing of the submit host.
# It checks that this worker can run the submit host's Python environment and workflow, and
# otherwise fails at once (exit 78) saying which path is missing where and how to fix it -- not a
# job held for hours, nor a traceback from deep inside Snakemake. Then it runs the job's Snakemake:
#   shared filesystem (profiles/htcondor): in the submit directory, also where the pool starts
#     jobs in their scratch directory with file transfer (CERN's does);
#   no shared filesystem (shared-fs-usage: none; profiles/lxplus, profiles/blackett): in the
#     scratch directory, where HTCondor put the job's inputs and the workflow (Snakefile,
#     workflow/, src/, config/ of the checkout snakemake runs in). Afterwards only the files the job
#     created or changed under the results directory stay there, and HTCondor transfers that
#     directory back (logs, hotspots, attempts besides the declared outputs). If the job failed,
#     declared outputs that are missing are left as empty files: HTCondor would hold a job whose
#     outputs are missing, and Snakemake deletes the outputs of a failed job anyway.
#   With a venv packed by `joulegrid pack-env` among the job's inputs ($JOULEGRID_ENV_TARBALL;
#     profiles/blackett), the job unpacks it and runs its Python.
#
#   job-wrapper.sh [PYTHON -m snakemake] SNAKEMAKE-ARGS...   as an HTCondor job
#   job-wrapper.sh --check PYTHON                            only the check (Slurm: executors.py)
#
# What the submit host was, from its environment (joulegrid.snakefile exports it; Slurm
# passes the environment on, HTCondor jobs get it with getenv): JOULEGRID_PYTHON, JOULEGRID_HOME,
# JOULEGRID_SUBMIT_HOST, JOULEGRID_SUBMIT_OS, JOULEGRID_PYTHON_VERSION, JOULEGRID_RESULTS,
# JOULEGRID_ENV_TARBALL.
EX_CONFIG=78
DOCS='docs/sites.md, "What a job needs on the worker"'
submit=${JOULEGRID_SUBMIT_HOST:-the submit host}

os_name() {
    if [ -r /etc/os-release ]; then
        (. /etc/os-release && echo "${PRETTY_NAME:-$ID $VERSION_ID}")
    else
        uname -sr
    fi
}

fail() {  # fail LINE...: the problem, where, and the fix; exit 78
    {
        echo "joulegrid: this job cannot run on worker $(uname -n) ($(os_name)); submitted from $submit (${JOULEGRID_SUBMIT_OS:-OS unknown}):"
        for line in "$@"; do echo "  $line"; done
        echo "  See $DOCS."
    } >&2
    exit $EX_CONFIG
}

FIX_ENV='Fix: put the environment that runs snakemake (a venv or conda environment; every job'"'"'s Snakemake runs with it, also with --sdm conda) and the joulegrid checkout on a filesystem every worker mounts at the same path; or build the venv on a Python that every worker has, e.g. an LCG view on CVMFS (lxplus); or ship it with the jobs (no shared filesystem: joulegrid pack-env, profiles/blackett).'

check_env() {  # check_env PYTHON HOME
    py=$1 home=$2
    if [ -L "$py" ] && [ ! -e "$py" ]; then
        fail "the Python environment $py is here, but the interpreter it links to ($(readlink "$py")) is not: the venv's base Python on $submit is not on this worker." \
            "Fix: build the venv on a Python every worker has at the same path, e.g. an LCG view on CVMFS, or ship it with the jobs (joulegrid pack-env, profiles/blackett)."
    fi
    if [ ! -e "$py" ]; then
        fail "the Python environment $py does not exist on this worker (it runs snakemake on $submit)." \
            "Jobs run the submit host's interpreter, so it must be visible at the same path here." "$FIX_ENV"
    fi
    # one interpreter start: its version, then the modules it cannot find (find_spec imports nothing)
    if ! probe=$("$py" -c 'import sys, importlib.util as u; print("%d.%d" % sys.version_info[:2]); print(" ".join(m for m in ("snakemake", "joulegrid") if u.find_spec(m) is None))' 2>&1); then
        version=$probe
        fail "$py exists on this worker but does not run here: $(printf '%s\n' "$version" | tail -n 1)" \
            "A different OS or C library on the worker than on $submit breaks an environment built there." \
            "Fix: build the environment on the OS of the workers (lxplus: the jobs ask for el9 with MY.WantOS; build the venv on lxplus9), or on a Python from an LCG view on CVMFS."
    fi
    version=$(printf '%s\n' "$probe" | sed -n 1p)
    missing=$(printf '%s\n' "$probe" | sed -n 2p)
    if [ -n "${JOULEGRID_PYTHON_VERSION:-}" ] && [ "$version" != "$JOULEGRID_PYTHON_VERSION" ]; then
        fail "$py is Python $version on this worker but Python $JOULEGRID_PYTHON_VERSION on $submit: the venv's interpreter link resolves to another Python here." \
            "$FIX_ENV"
    fi
    if [ -n "$home" ] && [ ! -r "$home/workflow/rules/common.smk" ]; then
        fail "the joulegrid checkout $home (its workflow and package) is not on this worker." "$FIX_ENV"
    fi
    if [ -n "$missing" ]; then
        fail "$py runs on this worker but does not find the module(s) $missing here." "$FIX_ENV"
    fi
}

if [ "${1:-}" = "--check" ]; then
    check_env "$2" "${JOULEGRID_HOME:-}"
    exit 0
fi

# ----------------------------------------------------------------- the interpreter
# With a shared filesystem the executor passes "PYTHON -m snakemake ARGS" (the submit host's
# interpreter); without one only the ARGS ("python -m snakemake" removed): then JOULEGRID_PYTHON.
if [ "${2:-}" = "-m" ] && [ "${3:-}" = "snakemake" ]; then
    py=$1
    shift 3
else
    py=${JOULEGRID_PYTHON:-}
    [ -n "$py" ] || fail "JOULEGRID_PYTHON is not set: the job did not get the submit host's environment." \
        "Fix: keep getenv: True in the profile's default-resources (profiles/htcondor)."
fi
home=${JOULEGRID_HOME:-}

job_ad=${_CONDOR_JOB_AD:-}
ad_value() { [ -n "$job_ad" ] && sed -n "s/^$1 = \"\(.*\)\"\$/\1/p" "$job_ad"; }
shared=1
case " $* " in *" --shared-fs-usage none "*) shared=0 ;; esac

# ----------------------------------------------------------------- with a shared filesystem
# The job runs in the directory it was submitted from, also where the pool started it elsewhere.
if [ $shared = 1 ]; then
    iwd=$(ad_value OrigIwd)  # the submit directory when HTCondor transfers files (Iwd: the scratch directory)
    [ -n "$iwd" ] || iwd=$(ad_value Iwd)
    if [ -n "$iwd" ] && [ "$iwd" != "$PWD" ]; then
        # the submit directory as the submit host sees it holds Snakemake's .snakemake/
        [ -d "$iwd/.snakemake" ] || fail "the working directory $iwd of $submit is not visible on this worker, and this profile assumes a shared filesystem." \
            "Fix: run snakemake from a directory every worker mounts at the same path, or use a profile without a shared filesystem (shared-fs-usage: none: profiles/lxplus, profiles/blackett)."
        cd "$iwd" || fail "cannot enter the working directory $iwd."
    fi
fi

# ----------------------------------------------------------------- without a shared filesystem
# HTCondor transferred the workflow (Snakefile, workflow/, src/, config/: executors.py) into the
# scratch directory: the job runs that copy, not the submit host's checkout.
if [ $shared = 0 ]; then
    [ -r workflow/rules/common.smk ] && [ -d src/joulegrid ] \
        || fail "the workflow (Snakefile, workflow/, src/, config/ of the joulegrid checkout) did not arrive with the job." \
            "Fix: run snakemake in the joulegrid checkout on $submit (without a shared filesystem the jobs take the workflow from the working directory)."
    home=$PWD
    export JOULEGRID_HOME="$home" PYTHONPATH="$home/src${PYTHONPATH:+:$PYTHONPATH}"
fi

# ----------------------------------------------------------------- an environment shipped with the job
tarball=${JOULEGRID_ENV_TARBALL:-}
if [ $shared = 0 ] && [ -n "$tarball" ]; then
    tarball=$(basename "$tarball")
    [ -f "$tarball" ] || fail "the packed environment $tarball did not arrive with the job (it should be one of its input files)." \
        "Fix: joulegrid pack-env in the working directory on $submit, then run snakemake there again."
    env_dir=$PWD/.joulegrid-env
    mkdir -p "$env_dir" && tar -xzf "$tarball" -C "$env_dir" \
        || fail "could not unpack $tarball into $env_dir (disk full?)." "Fix: request more disk (request_disk) or a smaller environment."
    rm -f "$tarball"
    py=$env_dir/bin/python
    base=$(sed -n 's/^home *= *//p' "$env_dir/pyvenv.cfg" 2>/dev/null)
    if [ -n "$base" ] && [ ! -d "$base" ]; then
        fail "the packed venv needs its base Python in $base, which this worker does not have." \
            "Fix: build the venv (before joulegrid pack-env) on a Python every worker has at the same path, e.g. an LCG view on CVMFS (/cvmfs/sft.cern.ch/lcg/views/...)."
    fi
fi

check_env "$py" "$home"

# ----------------------------------------------------------------- run
if [ $shared = 1 ]; then
    exec "$py" -m snakemake "$@"
fi

results=${JOULEGRID_RESULTS:-results}
listing() { [ -d "$results" ] && find "$results" -type f -printf '%s %T@ %p\n' | sort; }
inputs=$PWD/.joulegrid-inputs
listing > "$inputs"  # what HTCondor transferred in: size, mtime, path
"$py" -m snakemake "$@"
rc=$?
# Only what this job created or changed goes back: inputs with the same size and mtime are removed.
if [ -d "$results" ]; then
    listing | comm -12 - "$inputs" | cut -d' ' -f3- | while IFS= read -r f; do rm -f "$f"; done
    find "$results" -mindepth 1 -depth -type d -empty -exec rmdir {} \; 2>/dev/null
fi
mkdir -p "$results"
if [ $rc != 0 ]; then
    ad_value TransferOutput | tr ',' '\n' | while IFS= read -r out; do
        out=$(printf '%s' "$out" | sed 's/^ *//; s/ *$//')
        [ -n "$out" ] && [ ! -e "$out" ] || continue
        echo "joulegrid: job failed (exit $rc): $out left empty for the output transfer (Snakemake deletes the outputs of a failed job)" >&2
        mkdir -p "$(dirname "$out")" && : > "$out"
    done
fi
exit $rc
