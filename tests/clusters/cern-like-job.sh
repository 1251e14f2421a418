#!/bin/sh
# USER_JOB_WRAPPER of the test pool's CERN-like execute node (start-condor.sh, STARTD_CERN).
#
# CERN's batch jobs start in their worker's scratch directory, with file transfer, not in the AFS
# directory they were submitted from (CERN batch docs, "Data flow": the pool directory is the
# job's working directory; writing to AFS/EOS from jobs is not recommended). The test pool runs on
# one machine, where every job could still reach its submit directory by its path. On this node
# it cannot: the job runs in a private mount namespace (an unprivileged user namespace, nothing
# changes outside the job) in which an empty read-only directory hides its submit directory. A
# job that reads or writes its submit directory fails here, as it would lose its files at CERN;
# one that works only through HTCondor's file transfer succeeds. Software elsewhere (the venv,
# the joulegrid checkout: AFS and CVMFS at CERN) stays visible.
# the submit directory: OrigIwd once HTCondor transfers files (Iwd is then the scratch directory)
ad=${_CONDOR_JOB_AD:-/dev/null}
iwd=$(sed -n 's/^OrigIwd = "\(.*\)"$/\1/p' "$ad")
[ -n "$iwd" ] || iwd=$(sed -n 's/^Iwd = "\(.*\)"$/\1/p' "$ad")
case $iwd in "" | /) exec "$@" ;; esac
case $PWD/ in "$iwd"/*) exec "$@" ;; esac  # the scratch directory inside the submit directory: nothing to hide
exec unshare --user --map-root-user --mount \
    sh -c 'mount -t tmpfs -o ro,size=4k joulegrid-submit-dir-hidden "$0" && exec "$@"' "$iwd" "$@"
