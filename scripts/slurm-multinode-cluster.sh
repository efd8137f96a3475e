#!/usr/bin/env bash
# A real multi-node Slurm cluster on this one machine: slurmctld and three slurmd "nodes", each
# node in its own network and UTS namespace on a private bridge. For trying the slurm spawner
# across hosts and for the multi-node tests (tests/integration/test_slurm_multinode.py). The
# sibling of scripts/slurm-dev-cluster.sh (one node on loopback); both may run at once. The
# Slurm guide shows how to use it: docs/guides/slurm.md, "Three nodes on one machine".
#
#   scripts/slurm-multinode-cluster.sh start     create the network, configure, start, smoke-test
#   scripts/slurm-multinode-cluster.sh stop      stop its jobs and daemons, remove its network
#   scripts/slurm-multinode-cluster.sh status    what runs (exit 0: the cluster is up)
#   scripts/slurm-multinode-cluster.sh restart   stop, then start
#   scripts/slurm-multinode-cluster.sh env       print `export SLURM_CONF=...` (for eval)
#
# The network it creates (and `stop` removes, after a partial start too):
#
#   root namespace        bridge csw-br0 10.77.0.1/24   slurmctld, bound to 10.77.0.1 only
#   namespace csw-node1   eth0 10.77.0.11 (veth csw-vnode1 on the bridge)   slurmd -N node1
#   namespace csw-node2   eth0 10.77.0.12 (veth csw-vnode2)                  slurmd -N node2
#   namespace csw-node3   eth0 10.77.0.13 (veth csw-vnode3)                  slurmd -N node3
#
# Each slurmd also runs in its own UTS namespace whose hostname is its NodeName, with its own
# spool folder, pid file and log; every node claims this machine's CPUs and memory (slurmd -C).
# Jobs inherit their node's namespaces: a worker on node2 has hostname node2 and sees only that
# node's network: the bridge (10.77.0.1, the other nodes) and its own loopback (127.0.0.1 there
# is the node, not this machine). Nothing routes beyond the bridge. So whatever a job must
# reach (the clientswarm service, the target) listens on 10.77.0.1; `clientswarm serve --host
# 10.77.0.1` then requires a token (--token-file or CLIENTSWARM_API_TOKEN) and a target there
# needs `--allow-target 10.77.0.0/24`.
#
# munge: one munged of its own (socket <state dir>/munge/munge.socket, a file, so every
# namespace reaches it; named in slurm.conf by AuthInfo), with the key /etc/munge/munge.key
# shared with the dev cluster (created when missing). Partition `multi` (LLN=YES: array tasks
# spread over the least loaded nodes); JobRequeue=0, so the jobs of a node taken down end
# NODE_FAIL instead of running again elsewhere.
#
# Needs root, `ip netns`, `nsenter`, `unshare` and Slurm (when missing, it runs
# `scripts/slurm-dev-cluster.sh install`). Everything else it writes lives under
# $CLIENTSWARM_SLURM_MN_DIR (default /tmp/clientswarm-slurm-multinode).
#
# Environment: CLIENTSWARM_SLURM_MN_DIR, CLIENTSWARM_SLURM_MN_CTLD_PORT (6827),
# CLIENTSWARM_SLURM_MN_SLURMD_PORT (6828, in each node's namespace), CLIENTSWARM_SLURM_MN_SUBNET
# (10.77.0: the bridge is .1, node N is .1N), CLIENTSWARM_NO_APT=1 (never install).
# Exit status of start: 0 ready, 3 it cannot run here (not root, no network namespaces, no
# Slurm), 1 any other failure (the message names the log to read; what it made is removed).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${CLIENTSWARM_SLURM_MN_DIR:-/tmp/clientswarm-slurm-multinode}
CTLD_PORT=${CLIENTSWARM_SLURM_MN_CTLD_PORT:-6827}
SLURMD_PORT=${CLIENTSWARM_SLURM_MN_SLURMD_PORT:-6828}
SUBNET=${CLIENTSWARM_SLURM_MN_SUBNET:-10.77.0}
PARTITION=multi
NODES=(node1 node2 node3)
BRIDGE=csw-br0
BRIDGE_ADDR=$SUBNET.1
CTLD_NAME=csw-ctld

CONF=$STATE/slurm.conf
RUN=$STATE/run
LOG=$STATE/log
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
MUNGE_KEY=/etc/munge/munge.key

export SLURM_CONF=$CONF

say() { echo "slurm-multinode-cluster: $*" >&2; }
# What `die` undoes first (set while a start builds the cluster).
ON_FAILURE=""
die() {
    say "$*"
    if [ -n "$ON_FAILURE" ]; then
        say "removing what this start made (logs stay in $LOG)"
        $ON_FAILURE >/dev/null 2>&1 || true
    fi
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

now() { date +%s.%N; }
before() { awk -v d="$1" -v n="$(now)" 'BEGIN { exit !(n < d) }'; }
deadline() { awk -v s="$1" -v n="$(now)" 'BEGIN { printf "%.3f", n + s }'; }

# A node's namespace, its veth (the bridge side) and its address: node2 → csw-node2, csw-vnode2,
# 10.77.0.12.
netns_of() { echo "csw-$1"; }
veth_of() { echo "csw-v$1"; }
addr_of() { echo "$SUBNET.1${1#node}"; }

# pid_alive FILE NAME: the pid in FILE is a running NAME, not a stale pid reused since.
pid_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

any_alive() {
    local pid
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && return 0; done
    return 1
}

# kill_wait PID...: SIGTERM, then SIGKILL to those still alive after 10 s.
kill_wait() {
    local pid until
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    until=$(deadline 10)
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ! before "$until"; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.05
        done
    done
}

# ---------------------------------------------------------------------------------------------
# Can it run here?

why_not() {
    [ "$(id -u)" = 0 ] || {
        echo "must run as root (network namespaces, slurmd, slurmctld, munged)"
        return
    }
    have ip && ip netns list >/dev/null 2>&1 || {
        echo "no network namespaces here (\`ip netns\` from iproute2 is missing or fails)"
        return
    }
    have unshare && have nsenter || {
        echo "no \`unshare\` or \`nsenter\` (util-linux) for the nodes' namespaces"
        return
    }
    # Creating one is the real test (a container may forbid it).
    if ! ip netns add csw-probe 2>/dev/null; then
        echo "cannot create a network namespace here (\`ip netns add\` fails)"
        return
    fi
    ip netns del csw-probe 2>/dev/null || true
    if ! unshare --uts true 2>/dev/null; then
        echo "cannot create a UTS namespace here (\`unshare --uts\` fails)"
        return
    fi
}

ensure_slurm() {
    local bin
    for bin in munged slurmctld slurmd sbatch scontrol sinfo; do
        if ! have "$bin"; then
            # The dev cluster's script knows how to install Slurm (and exits 3 when it cannot).
            bash "$HERE/slurm-dev-cluster.sh" install
            return
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# The network

net_up() {
    local node ns veth
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for node in "${NODES[@]}"; do
        ns=$(netns_of "$node")
        veth=$(veth_of "$node")
        ip netns add "$ns"
        ip link add "$veth" type veth peer name "csw-p$node" netns "$ns"
        ip -n "$ns" link set "csw-p$node" name eth0
        ip -n "$ns" addr add "$(addr_of "$node")/24" dev eth0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
        ip link set "$veth" master "$BRIDGE" up
    done
}

# Every process left in the nodes' namespaces (slurmstepd, jobs: killed, as when a node loses
# power), then the namespaces, veths and bridge. Deleting a namespace that still holds a
# process would leave it (and its veth) alive, hence the processes first.
net_down() {
    local node ns until pids=()
    for node in "${NODES[@]}"; do
        ns=$(netns_of "$node")
        if [ -e "/run/netns/$ns" ]; then
            # shellcheck disable=SC2207  # pids are words
            pids+=($(ip netns pids "$ns" 2>/dev/null))
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        kill -KILL "${pids[@]}" 2>/dev/null || true
        until=$(deadline 5)
        while any_alive "${pids[@]}" && before "$until"; do sleep 0.05; done
    fi
    for node in "${NODES[@]}"; do
        ns=$(netns_of "$node")
        [ -e "/run/netns/$ns" ] && ip netns del "$ns"
        ip link show "$(veth_of "$node")" >/dev/null 2>&1 && ip link del "$(veth_of "$node")"
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
    return 0
}

net_ok() {
    local node
    ip link show "$BRIDGE" >/dev/null 2>&1 || return 1
    for node in "${NODES[@]}"; do
        [ -e "/run/netns/$(netns_of "$node")" ] || return 1
    done
}

# ---------------------------------------------------------------------------------------------
# Configuration

write_conf() {
    local hw node tmp
    # `slurmd -C` prints this machine's node line: NodeName=h CPUs=2 Boards=1 ... RealMemory=N.
    # Every node claims the same hardware (they share it).
    hw=$(slurmd -C | awk '/^NodeName=/ { $1 = ""; print; exit }')
    [ -n "$hw" ] || die "slurmd -C printed no node line"
    mkdir -p "$STATE" "$RUN" "$LOG" "$STATE/spool/ctld" "$STATE/jobs"
    for node in "${NODES[@]}"; do mkdir -p "$STATE/spool/$node"; done
    chmod 755 "$STATE"
    chmod 1777 "$STATE/jobs"
    tmp=$CONF.tmp.$$
    {
        cat <<EOF
# Written by scripts/slurm-multinode-cluster.sh: three nodes in network namespaces on $BRIDGE.
ClusterName=clientswarm-multinode
SlurmctldHost=$CTLD_NAME($BRIDGE_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
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
JobRequeue=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
EOF
        for node in "${NODES[@]}"; do
            echo "NodeName=$node NodeHostname=$node NodeAddr=$(addr_of "$node") $hw State=UNKNOWN"
        done
        echo "PartitionName=$PARTITION Nodes=$(
            IFS=,
            echo "${NODES[*]}"
        ) Default=YES MaxTime=INFINITE State=UP LLN=YES OverSubscribe=FORCE:8"
    } >"$tmp"
    mv -f "$tmp" "$CONF"
}

# ---------------------------------------------------------------------------------------------
# Daemons

munge_ok() { munge -S "$MUNGE_SOCKET" -n 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munge() {
    local until
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
    # munged wants its folders its own and closed to others.
    mkdir -p "$MUNGE_DIR"
    chown munge:munge "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_DIR/munged.pid"
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
        --seed-file="$MUNGE_DIR/munged.seed" 9>&- ||
        die "munged failed to start; see $MUNGE_DIR/munged.log"
    until=$(deadline 10)
    until munge_ok; do
        before "$until" || die "munged does not answer; see $MUNGE_DIR/munged.log"
        sleep 0.1
    done
}

ctld_up() {
    pid_alive "$RUN/slurmctld.pid" slurmctld && scontrol ping 2>/dev/null | grep -q 'is UP'
}

slurmd_up() { pid_alive "$RUN/slurmd-$1.pid" slurmd; }

all_up() {
    local node
    munge_ok && ctld_up && net_ok || return 1
    for node in "${NODES[@]}"; do slurmd_up "$node" || return 1; done
}

# slurmctld binds (NoCtldInAddrAny) to what its hostname resolves to: in a UTS and mount
# namespace of its own it is named $CTLD_NAME and its /etc/hosts says that is the bridge
# address. So it listens there only, and no other process sees either change.
start_slurmctld() {
    rm -f "$RUN/slurmctld.pid"
    printf '127.0.0.1 localhost\n%s %s\n' "$BRIDGE_ADDR" "$CTLD_NAME" >"$STATE/ctld-hosts"
    # -c: forget the jobs and node states of a previous run; this cluster starts clean.
    unshare --uts --mount --propagation slave -- sh -c \
        'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmctld -c -f "$3"' \
        sh "$CTLD_NAME" "$STATE/ctld-hosts" "$CONF" 9>&- ||
        die "slurmctld failed to start; see $LOG/slurmctld.log"
}

# The node's slurmd in its network namespace and a new UTS namespace named after it; it
# daemonizes there, and every job it starts stays in both. nsenter, not `ip netns exec`: that
# one remounts /sys, hiding /sys/fs/cgroup, without which slurmd refuses to start.
start_slurmd() {
    local node=$1
    rm -f "$RUN/slurmd-$node.pid"
    nsenter --net="/run/netns/$(netns_of "$node")" unshare --uts -- \
        sh -c 'hostname "$1" && exec slurmd -f "$2" -N "$1"' sh "$node" "$CONF" 9>&- ||
        die "slurmd of $node failed to start; see $LOG/slurmd-$node.log"
}

node_states() { sinfo -h -N -p "$PARTITION" -o '%N %T' 2>/dev/null; }

wait_ready() {
    local until node state ready
    until=$(deadline 60)
    until ctld_up; do
        before "$until" || die "slurmctld does not answer; see $LOG/slurmctld.log"
        sleep 0.2
    done
    while :; do
        ready=0
        while read -r node state; do
            case $state in
                idle | mixed | allocated | completing) ready=$((ready + 1)) ;;
                *drain* | down* | *fail*)
                    scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
                    ;;
            esac
        done < <(node_states)
        [ "$ready" = "${#NODES[@]}" ] && return 0
        before "$until" || die "nodes not idle: $(node_states | tr '\n' ' '); see $LOG/slurmd-*.log"
        sleep 0.2
    done
}

# An array of one task per node: each must run on its own node, named after it, with its
# node's address.
smoke_job() {
    local id until state node out want=""
    rm -f "$STATE/jobs/smoke-"*.out
    id=$(sbatch --parsable -p "$PARTITION" -J clientswarm-smoke -D "$STATE/jobs" \
        --array="0-$((${#NODES[@]} - 1))" -o "$STATE/jobs/smoke-%a.out" \
        --wrap 'echo "$(hostname) $(ip -4 -o addr show dev eth0 | awk "{ print \$4 }")"') ||
        die "sbatch of the smoke job failed"
    id=${id%%;*}
    until=$(deadline 60)
    while :; do
        state=$(squeue -h -j "$id" -t pending,running,completing -o %T 2>/dev/null | head -n 1)
        [ -z "$state" ] && break
        before "$until" || die "smoke job $id still '$state' after 60 s; see $LOG/slurmctld.log"
        sleep 0.1
    done
    out=$(cat "$STATE/jobs/smoke-"*.out 2>/dev/null | sort)
    for node in "${NODES[@]}"; do want+="$node $(addr_of "$node")/24"$'\n'; done
    [ "$out" = "${want%$'\n'}" ] ||
        die "the smoke job's tasks ran as '$(echo "$out" | tr '\n' ';')', not one on each node" \
            "with its address; see $LOG/slurmctld.log"
}

stop_all() {
    local pids=() node
    # Jobs first, so that their workers stop gracefully; what is left is killed with the nodes.
    if ctld_up; then
        scancel --partition "$PARTITION" >/dev/null 2>&1 || true
        local until
        until=$(deadline 5)
        while [ -n "$(squeue -h -p "$PARTITION" -t running,completing -o %i 2>/dev/null)" ] &&
            before "$until"; do
            sleep 0.2
        done
    fi
    # The Slurm daemons at once (each takes a second or two to shut down).
    for node in "${NODES[@]}"; do
        slurmd_up "$node" && pids+=("$(tr -dc 0-9 <"$RUN/slurmd-$node.pid")")
    done
    pid_alive "$RUN/slurmctld.pid" slurmctld && pids+=("$(tr -dc 0-9 <"$RUN/slurmctld.pid")")
    kill_wait ${pids[@]+"${pids[@]}"}
    net_down # whatever still runs in the namespaces (slurmstepd, jobs), then the network
    # munged last: the Slurm daemons use it until they are gone.
    pids=()
    pid_alive "$MUNGE_DIR/munged.pid" munged && pids+=("$(tr -dc 0-9 <"$MUNGE_DIR/munged.pid")")
    kill_wait ${pids[@]+"${pids[@]}"}
    rm -f "$RUN"/*.pid "$MUNGE_SOCKET" "$STATE/started-by-tests"
}

# ---------------------------------------------------------------------------------------------
# Commands

cmd_start() {
    local t0 fresh=0 reason node
    reason=$(why_not)
    if [ -n "$reason" ]; then
        say "$reason"
        exit 3
    fi
    t0=$(now)
    ensure_slurm
    mkdir -p "$STATE" "$RUN" "$LOG"
    # The daemons started below must not inherit fd 9, or they would hold this lock forever.
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another start/stop holds $STATE/.lock"
    if ! all_up; then
        fresh=1
        stop_all # what a partial or killed start left behind
        ON_FAILURE=stop_all
        write_conf
        net_up || die "could not create the network ($BRIDGE, namespaces csw-node*)"
        start_munge
        start_slurmctld
        for node in "${NODES[@]}"; do start_slurmd "$node"; done
    fi
    wait_ready
    [ "$fresh" = 1 ] && smoke_job
    ON_FAILURE=""
    # The tests stop the cluster at the end of their session only when they started it.
    if [ "${CLIENTSWARM_SLURM_BY_TESTS:-0}" = 1 ]; then
        [ "$fresh" = 1 ] && touch "$STATE/started-by-tests"
    else
        rm -f "$STATE/started-by-tests"
    fi
    say "ready in $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s" \
        "($([ "$fresh" = 1 ] && echo started || echo already running))"
    echo "slurm multi-node cluster ready (SLURM_CONF=$CONF)"
    echo "  export SLURM_CONF=$CONF"
    echo "  partition: $PARTITION; nodes: ${NODES[*]}"
    echo "  bridge: $BRIDGE $BRIDGE_ADDR/24 (serve and the target listen here)"
}

cmd_stop() {
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "another start/stop holds $STATE/.lock"
    stop_all
    echo "slurm multi-node cluster stopped"
}

cmd_status() {
    local node
    if munge_ok; then echo "munged: running"; else echo "munged: stopped"; fi
    if ctld_up; then
        echo "slurmctld: running (pid $(tr -dc 0-9 <"$RUN/slurmctld.pid"))"
    else
        echo "slurmctld: stopped"
    fi
    for node in "${NODES[@]}"; do
        if slurmd_up "$node"; then
            echo "slurmd $node: running in $(netns_of "$node") at $(addr_of "$node")"
        else
            echo "slurmd $node: stopped"
        fi
    done
    if net_ok; then echo "network: $BRIDGE $BRIDGE_ADDR/24"; else echo "network: absent"; fi
    all_up || return 1
    node_states | sed 's/^/node: /'
    echo "SLURM_CONF=$CONF"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart)
        cmd_stop
        cmd_start
        ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *)
        echo "usage: $0 start | stop | status | restart | env" >&2
        exit 2
        ;;
esac
