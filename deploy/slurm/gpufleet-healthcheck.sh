#!/bin/sh
# Slurm HealthCheckProgram: judge this node with `gpufleet-agent check` and, on CRITICAL,
# drain it in Slurm with the reason "gpufleet-agent: <check> gpu<N>" (GPUFLEET_DRAIN=1).
# WARN never drains. A node that is drained already keeps its drain and its reason.
#
# Exit status (the check's Nagios code; slurmd only logs it):
#   0 OK, 1 WARN, 2 CRITICAL (drained when configured), 3 UNKNOWN (could not judge: no drain)
# Settings: see gpufleet-slurm-lib.sh.
GPUFLEET_HOOK=healthcheck
. "$(dirname "$0")/gpufleet-slurm-lib.sh"
trap gpufleet_cleanup EXIT

rc=0
gpufleet_check_and_drain 0 || rc=$?
if [ "$rc" -eq "$GPUFLEET_UNKNOWN" ]; then
    gpufleet_log "UNKNOWN: the check could not judge this node; nothing drained"
fi
exit "$rc"
