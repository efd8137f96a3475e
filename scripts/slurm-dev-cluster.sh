#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for trying the slurm spawner and for the tests.
#
#   scripts/slurm-dev-cluster.sh start [--rest]   install when missing, configure, start, smoke-test
#   scripts/slurm-dev-cluster.sh stop             stop the daemons it started (packages stay)
#   scripts/slurm-dev-cluster.sh status           which daemons run (exit 0: the cluster is up)
#   scripts/slurm-dev-cluster.sh restart [--rest] stop, then start
#   scripts/slurm-dev-cluster.sh env              print `export SLURM_CONF=...` (for eval)
#   scripts/slurm-dev-cluster.sh install          install the packages when missing (no daemons)
#
# Needs root (it runs slurmd/slurmctld, and apt-get when Slurm is missing). Debian's Slurm 22.05:
# munge, slurmctld, slurmd, slurm-client, slurmrestd. No systemd: the daemons are started directly
# and their pid files live in the state dir. No slurmdbd, so `sacct` does not work: use
# `squeue --json -t all` or `scontrol show job` (finished jobs stay visible for an hour).
#
# Everything it writes lives under $CLIENTSWARM_SLURM_DIR (default /tmp/clientswarm-slurm), except
# the munge key (/etc/munge/munge.key, created when missing) and /run/munge. The client commands
# (sbatch, squeue, ...) find the cluster through SLURM_CONF=<state dir>/slurm.conf.
#
# `start --rest` also runs slurmrestd (openapi/v0.0.38, rest_auth/local) on the unix socket
# <state dir>/rest/slurmrestd.sock, as the unprivileged user $CLIENTSWARM_SLURM_REST_USER (default
# clientswarm-rest, created when missing). rest_auth/local only accepts clients of that same uid
# (or root), and jobs submitted through it run as that user.
#
# Environment: CLIENTSWARM_SLURM_DIR, CLIENTSWARM_SLURM_CTLD_PORT (6817),
# CLIENTSWARM_SLURMD_PORT (6818), CLIENTSWARM_SLURM_REST_USER, CLIENTSWARM_NO_APT=1 (never install).
# Exit status of start: 0 ready, 3 Slurm cannot be had here (not root, not installed and no apt),
# 1 any other failure (the message names the log to read).
set -euo pipefail

STATE=${CLIENTSWARM_SLURM_DIR:-/tmp/clientswarm-slurm}
CTLD_PORT=${CLIENTSWARM_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${CLIENTSWARM_SLURMD_PORT:-6818}
REST_USER=${CLIENTSWARM_SLURM_REST_USER:-clientswarm-rest}
PARTITION=debug
PACKAGES="munge slurmctld slurmd slurm-client slurmrestd"

CONF=$STATE/slurm.conf
RUN=$STATE/run
LOG=$STATE/log
REST_DIR=$STATE/rest
REST_SOCKET=$REST_DIR/slurmrestd.sock
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid

export SLURM_CONF=$CONF

say() { echo "slurm-dev-cluster: $*" >&2; }
die() {
    say "$*"
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# Seconds since the epoch with a fraction, for the deadlines below.
now() { date +%s.%N; }
before() { awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n < d) }'; }
deadline() { awk -v s="$1" -v n="$(now)" 'BEGIN { printf "%.3f", n + s }'; }

# pid_alive FILE: the pid in FILE (named NAME.pid) is a running NAME, not a stale pid that some
# other program has reused since.
pid_alive() {
    local pid name
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    name=$(basename "$1" .pid)
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

# ---------------------------------------------------------------------------------------------
# Installation

install_packages() {
    local missing="" bin
    for bin in munged slurmctld slurmd sbatch slurmrestd; do
        have "$bin" || missing=yes
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ] || ! have apt-get || [ "${CLIENTSWARM_NO_APT:-0}" = 1 ]; then
        say "Slurm is not installed; as root: apt-get install -y --no-install-recommends $PACKAGES"
        exit 3
    fi
    say "installing $PACKAGES"
    # The packages must not start their daemons: this script starts its own.
    # policy-rc.d exit 101 = "action forbidden".
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT INT TERM
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    if ! apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null 2>&1; then
        # The package lists may be missing or stale: update them once, then try again.
        if ! apt-get update -qq ||
            ! apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null; then
            say "apt-get could not install $PACKAGES"
            exit 3
        fi
    fi
    if [ "$made_policy" = 1 ]; then
        rm -f "$policy"
        trap - EXIT INT TERM
    fi
}

# ---------------------------------------------------------------------------------------------
# Configuration

write_conf() {
    local host node_line tmp
    host=$(hostname -s)
    # `slurmd -C` prints this machine's node line: NodeName=h CPUs=2 Boards=1 ... RealMemory=N.
    node_line=$(slurmd -C | awk '/^NodeName=/ { $1 = ""; print; exit }')
    [ -n "$node_line" ] || die "slurmd -C printed no node line"
    mkdir -p "$STATE" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/jobs"
    chmod 755 "$STATE"
    chmod 1777 "$STATE/jobs"
    tmp=$CONF.tmp.$$
    cat >"$tmp" <<EOF
# Written by scripts/slurm-dev-cluster.sh: a single-node Slurm for development and tests.
ClusterName=clientswarm
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.txt
MinJobAge=3600
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host NodeAddr=127.0.0.1 $node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
EOF
    if cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
    else
        mv -f "$tmp" "$CONF"
    fi
}

# ---------------------------------------------------------------------------------------------
# Daemons

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return 0
    if [ ! -s "$MUNGE_KEY" ]; then
        say "creating $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if have mungekey; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
        chown munge:munge "$MUNGE_KEY"
        chmod 400 "$MUNGE_KEY"
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    # A stale pid file or socket from a killed munged makes the new one refuse to start.
    if ! pid_alive "$MUNGE_PID"; then
        rm -f "$MUNGE_PID" /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    fi
    runuser -u munge -- munged 9>&-
    local until
    until=$(deadline 10)
    until munge_ok; do
        before "$until" || die "munged did not start (see /var/log/munge/munged.log)"
        sleep 0.1
    done
    # Remember that this script started it, so that `stop` stops it (and only then).
    cp "$MUNGE_PID" "$RUN/munged.pid"
}

ctld_up() { pid_alive "$RUN/slurmctld.pid" && scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() {
    sinfo -h -N -n "$(hostname -s)" -o '%T' 2>/dev/null | head -n 1
}

start_slurmctld() {
    pid_alive "$RUN/slurmctld.pid" && return 0
    rm -f "$RUN/slurmctld.pid"
    slurmctld -f "$CONF" 9>&- || die "slurmctld failed to start; see $LOG/slurmctld.log"
}

start_slurmd() {
    pid_alive "$RUN/slurmd.pid" && return 0
    rm -f "$RUN/slurmd.pid"
    slurmd -f "$CONF" 9>&- || die "slurmd failed to start; see $LOG/slurmd.log"
}

wait_ready() {
    local until state
    until=$(deadline 60)
    until ctld_up; do
        before "$until" || die "slurmctld does not answer; see $LOG/slurmctld.log"
        sleep 0.2
    done
    # sinfo can say "idle" before slurmd registered: ask slurmd itself first.
    until scontrol show slurmd >/dev/null 2>&1; do
        before "$until" || die "slurmd does not answer; see $LOG/slurmd.log"
        sleep 0.2
    done
    while :; do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing) break ;;
            *drain* | down* | *fail*)
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
                ;;
        esac
        before "$until" || die "node is '$state', not idle; see $LOG/slurmd.log"
        sleep 0.2
    done
}

smoke_job() {
    local id until state
    id=$(sbatch --parsable -p "$PARTITION" -J clientswarm-smoke -o /dev/null \
        -D "$STATE/jobs" --wrap true) || die "sbatch of the smoke job failed"
    id=${id%%;*}
    [ -n "$id" ] || die "sbatch printed no job id for the smoke job"
    until=$(deadline 60)
    while :; do
        state=$(scontrol show job -o "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
        case $state in
            COMPLETED) return 0 ;;
            FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
                die "smoke job $id ended $state; see $LOG/slurmd.log"
                ;;
        esac
        before "$until" || die "smoke job $id still '$state' after 60 s; see $LOG/slurmctld.log"
        sleep 0.1
    done
}

rest_user() {
    if ! id -u "$REST_USER" >/dev/null 2>&1; then
        if have useradd && useradd --system --no-create-home --shell /usr/sbin/nologin \
            "$REST_USER" 2>/dev/null; then
            say "created user $REST_USER"
        else
            REST_USER=nobody
        fi
    fi
    echo "$REST_USER"
}

rest_ok() {
    have curl || return 0
    curl -fsS --max-time 5 --unix-socket "$REST_SOCKET" \
        http://localhost/slurm/v0.0.38/ping >/dev/null 2>&1
}

start_rest() {
    local user until pid
    user=$(rest_user)
    if pid_alive "$RUN/slurmrestd.pid"; then
        rest_ok && return 0
        stop_pids slurmrestd
    fi
    # slurmrestd binds the socket after dropping to the user: the folder must be theirs.
    mkdir -p "$REST_DIR"
    chown "$user" "$REST_DIR"
    chmod 755 "$REST_DIR"
    rm -f "$REST_SOCKET"
    # slurmrestd refuses to run as SlurmUser (root here): -u drops to an unprivileged user.
    # Jobs submitted without current_working_directory would run in slurmrestd's own folder:
    # start it in the world-writable jobs folder, never in the caller's.
    (cd "$STATE/jobs" && exec setsid slurmrestd -f "$CONF" -u "$user" -s openapi/v0.0.38 \
        -a rest_auth/local "unix:$REST_SOCKET" >"$LOG/slurmrestd.log" 2>&1 </dev/null 9>&-) &
    pid=$!
    echo "$pid" >"$RUN/slurmrestd.pid"
    until=$(deadline 15)
    until [ -S "$REST_SOCKET" ] && rest_ok; do
        # (kill -0, not pid_alive: until the exec the process is still called bash or setsid.)
        kill -0 "$pid" 2>/dev/null || die "slurmrestd exited: $(tail -n 5 "$LOG/slurmrestd.log")"
        before "$until" || die "slurmrestd does not answer; see $LOG/slurmrestd.log"
        sleep 0.1
    done
    chmod 666 "$REST_SOCKET" 2>/dev/null || true
}

# stop_pids NAME...: stop the daemons whose pids are in $RUN/NAME.pid, all at once (each takes
# ~2 s to shut down), waiting up to 10 s before killing them.
stop_pids() {
    local name pid until pids=() names=()
    for name in "$@"; do
        if pid_alive "$RUN/$name.pid"; then
            pid=$(tr -dc 0-9 <"$RUN/$name.pid")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$name ($pid)")
        fi
    done
    until=$(deadline 10)
    for pid in ${pids[@]+"${pids[@]}"}; do
        while kill -0 "$pid" 2>/dev/null; do
            if ! before "$until"; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.05
        done
    done
    for name in "$@"; do rm -f "$RUN/$name.pid"; done
    [ ${#names[@]} = 0 ] || say "stopped ${names[*]}"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_start() {
    local rest=0 t0 fresh=0
    for arg in "$@"; do
        case $arg in
            --rest) rest=1 ;;
            *) die "unknown option to start: $arg" ;;
        esac
    done
    if [ "$(id -u)" != 0 ]; then
        say "must run as root (slurmd, slurmctld and munged run as root)"
        exit 3
    fi
    t0=$(now)
    install_packages
    mkdir -p "$STATE" "$RUN" "$LOG"
    # The daemons started below must not inherit fd 9, or they would hold this lock forever.
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another start/stop holds $STATE/.lock"
    if ctld_up && pid_alive "$RUN/slurmd.pid"; then
        : # Running: only check it is healthy below.
    else
        fresh=1
        write_conf
        start_munge
        start_slurmctld
        start_slurmd
    fi
    wait_ready
    [ "$fresh" = 1 ] && smoke_job
    [ "$rest" = 1 ] && start_rest
    # The tests stop the cluster at the end of their session only when they started it.
    if [ "${CLIENTSWARM_SLURM_BY_TESTS:-0}" = 1 ]; then
        [ "$fresh" = 1 ] && touch "$STATE/started-by-tests"
    else
        rm -f "$STATE/started-by-tests"
    fi
    say "ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s" \
        "($([ "$fresh" = 1 ] && echo started || echo already running))"
    echo "slurm dev cluster ready (SLURM_CONF=$CONF)"
    echo "  export SLURM_CONF=$CONF"
    echo "  partition: $PARTITION"
    if pid_alive "$RUN/slurmrestd.pid"; then
        echo "  slurmrestd: unix socket $REST_SOCKET (openapi/v0.0.38, rest_auth/local)"
    fi
}

cmd_stop() {
    mkdir -p "$RUN"
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another start/stop holds $STATE/.lock"
    # Jobs' slurmstepd outlive slurmd: cancel them first and give them a moment to go.
    if ctld_up; then
        scancel --partition "$PARTITION" >/dev/null 2>&1 || true
        local until
        until=$(deadline 10)
        while [ -n "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && before "$until"; do
            sleep 0.2
        done
    fi
    stop_pids slurmrestd slurmd slurmctld
    # munged last: the Slurm daemons use it until they are gone.
    stop_pids munged
    rm -f "$REST_SOCKET" "$STATE/started-by-tests"
    echo "slurm dev cluster stopped"
}

cmd_status() {
    local name up=0
    for name in munged slurmctld slurmd slurmrestd; do
        if pid_alive "$RUN/$name.pid"; then
            echo "$name: running (pid $(tr -dc 0-9 <"$RUN/$name.pid"))"
        elif [ "$name" = munged ] && munge_ok; then
            echo "munged: running (not started by this script)"
        else
            echo "$name: stopped"
        fi
    done
    if pid_alive "$RUN/slurmctld.pid" && pid_alive "$RUN/slurmd.pid"; then
        up=1
        echo "node: $(node_state)"
        echo "SLURM_CONF=$CONF"
        pid_alive "$RUN/slurmrestd.pid" && echo "rest socket: $REST_SOCKET"
    fi
    [ "$up" = 1 ]
}

case ${1:-} in
    start)
        shift
        cmd_start "$@"
        ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart)
        shift
        cmd_stop
        cmd_start "$@"
        ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    install) install_packages ;;
    *)
        echo "usage: $0 start [--rest] | stop | status | restart [--rest] | env | install" >&2
        exit 2
        ;;
esac
