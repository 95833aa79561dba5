# shellcheck shell=sh
# gpufleet's Slurm hooks share this file: gpufleet-healthcheck.sh, gpufleet-prolog.sh and
# gpufleet-epilog.sh source it from their own directory. It is not run by itself.
#
# Slurm starts hooks with an almost empty environment (no PATH; HealthCheckProgram does not
# even get SLURM_CONF), so settings come from a file in sh syntax, sourced when present:
#   GPUFLEET_SLURM_ENV      that file (default /etc/default/gpufleet-slurm)
# Settings (environment or that file):
#   GPUFLEET_AGENT          the agent executable (default: gpufleet-agent on PATH)
#   GPUFLEET_PYTHON         a python3 to read the check's JSON, stdlib only (default python3)
#   GPUFLEET_DRAIN          1: drain this node in Slurm on CRITICAL; 0: only report (default 1)
#   GPUFLEET_REASON_TAG     prefix of the drain reason (default "gpufleet-agent:")
#   GPUFLEET_CHECK_TIMEOUT  seconds before a check is abandoned as UNKNOWN (default 60)
#   GPUFLEET_EPILOG_WINDOW  seconds the epilog's check watches for XIDs (default 5)
#   GPUFLEET_XID_LOOKBACK   seconds of kernel log the check reads back for XIDs (default 600:
#                           two HealthCheckIntervals, so an XID between checks is never missed,
#                           and a GPU reset without reboot re-drains for at most 10 minutes)
#   GPUFLEET_NODE           this node's Slurm name (default $SLURMD_NODENAME, else hostname -s)
#   SLURM_CONF, GPUFLEET_POLICY, GPUFLEET_SIMULATE are passed through to scontrol / the agent.

: "${GPUFLEET_SLURM_ENV:=/etc/default/gpufleet-slurm}"
if [ -r "$GPUFLEET_SLURM_ENV" ]; then
    # shellcheck disable=SC1090
    . "$GPUFLEET_SLURM_ENV"
fi
PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"
export PATH
: "${GPUFLEET_AGENT:=gpufleet-agent}"
: "${GPUFLEET_PYTHON:=python3}"
: "${GPUFLEET_DRAIN:=1}"
: "${GPUFLEET_REASON_TAG:=gpufleet-agent:}"
: "${GPUFLEET_CHECK_TIMEOUT:=60}"
: "${GPUFLEET_EPILOG_WINDOW:=5}"
: "${GPUFLEET_XID_LOOKBACK:=600}"
export GPUFLEET_XID_LOOKBACK
GPUFLEET_NODE="${GPUFLEET_NODE:-${SLURMD_NODENAME:-$(hostname -s)}}"
export GPUFLEET_NODE
[ -n "${GPUFLEET_SIMULATE:-}" ] && export GPUFLEET_SIMULATE
[ -n "${GPUFLEET_POLICY:-}" ] && export GPUFLEET_POLICY
[ -n "${SLURM_CONF:-}" ] && export SLURM_CONF

: "${GPUFLEET_HOOK:=hook}"

# Nagios codes of `gpufleet-agent check`: 0 OK, 1 WARN, 2 CRITICAL, 3 UNKNOWN.
# shellcheck disable=SC2034  # used by the scripts that source this file
GPUFLEET_CRITICAL=2
GPUFLEET_UNKNOWN=3

gpufleet_log() {
    echo "gpufleet-slurm[$GPUFLEET_HOOK] $GPUFLEET_NODE: $*" >&2
    if command -v logger >/dev/null 2>&1; then
        logger -t gpufleet-slurm -- "[$GPUFLEET_HOOK] $GPUFLEET_NODE: $*" 2>/dev/null || true
    fi
}

# gpufleet_check WINDOW_S: run the agent's one-shot check; its JSON lands in
# $GPUFLEET_REPORT; returns the Nagios code (anything else, a timeout included, is UNKNOWN).
gpufleet_check() {
    GPUFLEET_REPORT=$(mktemp "${TMPDIR:-/tmp}/gpufleet-check.XXXXXX") || return "$GPUFLEET_UNKNOWN"
    rc=0
    timeout "$GPUFLEET_CHECK_TIMEOUT" "$GPUFLEET_AGENT" check --json --window "$1" \
        --node "$GPUFLEET_NODE" >"$GPUFLEET_REPORT" 2>"$GPUFLEET_REPORT.err" || rc=$?
    case "$rc" in
        0|1|2|3) ;;
        124|137) gpufleet_log "check timed out after ${GPUFLEET_CHECK_TIMEOUT}s"; rc=$GPUFLEET_UNKNOWN ;;
        *) gpufleet_log "check could not run (exit $rc): $(head -c 300 "$GPUFLEET_REPORT.err")"
           rc=$GPUFLEET_UNKNOWN ;;
    esac
    return "$rc"
}

gpufleet_cleanup() {
    [ -n "${GPUFLEET_REPORT:-}" ] && rm -f "$GPUFLEET_REPORT" "$GPUFLEET_REPORT.err"
    return 0
}

# gpufleet_check_and_drain WINDOW_S: the check, and on CRITICAL a drain of this node with its
# first critical finding as the reason. Returns the check's Nagios code.
gpufleet_check_and_drain() {
    _gpufleet_rc=0
    gpufleet_check "$1" || _gpufleet_rc=$?
    if [ "$_gpufleet_rc" -eq "$GPUFLEET_CRITICAL" ]; then
        gpufleet_drain "$(gpufleet_finding)" || true
    fi
    return "$_gpufleet_rc"
}

# The first critical finding of $GPUFLEET_REPORT as "<check> gpu<N>" (+ how many more),
# in characters safe for a Slurm reason.
gpufleet_finding() {
    "$GPUFLEET_PYTHON" - "$GPUFLEET_REPORT" <<'PYEOF'
import json
import re
import sys

try:
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    crit = [x for x in doc.get("findings", []) if x.get("severity") == "critical"]
except (OSError, ValueError, AttributeError):
    doc, crit = {}, []
if crit:
    text = str(crit[0].get("check", "unknown_check"))
    if crit[0].get("gpu") is not None:
        text += f" gpu{crit[0]['gpu']}"
    if len(crit) > 1:
        text += f" (+{len(crit) - 1} more)"
else:
    text = "verdict " + str(doc.get("verdict", "unreadable"))
print(" ".join(re.sub(r"[^A-Za-z0-9 _.,:;@#/()+-]", " ", text).split())[:150])
PYEOF
}

# gpufleet_drain FINDING: drain this node with "<tag> FINDING", unless GPUFLEET_DRAIN=0 or
# the node is drained already (someone else's drain and reason are left as they are).
gpufleet_drain() {
    if [ "$GPUFLEET_DRAIN" != 1 ]; then
        gpufleet_log "CRITICAL: $1 (not draining: GPUFLEET_DRAIN=$GPUFLEET_DRAIN)"
        return 0
    fi
    state=$(sinfo -h -N -n "$GPUFLEET_NODE" -O "StateComplete:0" 2>/dev/null | head -n 1)
    case "$state" in
        *drain*) gpufleet_log "CRITICAL: $1 (already drained: $state; reason kept)"; return 0 ;;
    esac
    if scontrol update "NodeName=$GPUFLEET_NODE" State=DRAIN "Reason=$GPUFLEET_REASON_TAG $1"; then
        gpufleet_log "CRITICAL: $1: drained"
    else
        gpufleet_log "CRITICAL: $1: scontrol could not drain the node"
        return 1
    fi
}
