#!/bin/sh
# Slurm Prolog (with PrologFlags=Alloc: once per node when a job is allocated): refuse to start
# a job on a node the agent finds CRITICAL. The node is drained with the reason
# "gpufleet-agent: <check> gpu<N>" (GPUFLEET_DRAIN=1) before the prolog fails; Slurm then
# drains it anyway (reason "Prolog error" if not drained already) and requeues the job, or
# fails it when it was submitted with --no-requeue.
#
# Exit status: 0 the job may start (OK, WARN, and UNKNOWN: a broken checker does not stop the
# cluster); 1 CRITICAL: the job must not start here.
# Settings: see gpufleet-slurm-lib.sh.
GPUFLEET_HOOK=prolog
. "$(dirname "$0")/gpufleet-slurm-lib.sh"
trap gpufleet_cleanup EXIT

rc=0
gpufleet_check_and_drain 0 || rc=$?
if [ "$rc" -eq "$GPUFLEET_CRITICAL" ]; then
    gpufleet_log "job ${SLURM_JOB_ID:-?} refused"
    exit 1
fi
[ "$rc" -eq "$GPUFLEET_UNKNOWN" ] && gpufleet_log "UNKNOWN before job ${SLURM_JOB_ID:-?}; letting it start"
exit 0
