#!/bin/sh
# Slurm Epilog: after every job, watch the node for GPUFLEET_EPILOG_WINDOW seconds (XIDs the
# job may have provoked count) and drain it on CRITICAL with the reason
# "gpufleet-agent: <check> gpu<N>" (GPUFLEET_DRAIN=1), so the next job does not land on it.
#
# Exit status: 0 the node is fit for the next job (OK, WARN, UNKNOWN); 1 CRITICAL (Slurm
# drains a node whose epilog fails, so the node is out even with GPUFLEET_DRAIN=0).
# Settings: see gpufleet-slurm-lib.sh.
GPUFLEET_HOOK=epilog
. "$(dirname "$0")/gpufleet-slurm-lib.sh"
trap gpufleet_cleanup EXIT

rc=0
gpufleet_check_and_drain "$GPUFLEET_EPILOG_WINDOW" || rc=$?
[ "$rc" -eq "$GPUFLEET_CRITICAL" ] && exit 1
exit 0
