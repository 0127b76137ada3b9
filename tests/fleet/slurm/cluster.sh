#!/usr/bin/env bash
# Throwaway single-node Slurm cluster (munged + slurmctld + slurmd) living
# entirely in one directory, for sigma's fleet tests. See README.md.
#
#   cluster.sh start DIR   write DIR/slurm.conf, a munge key, start the three
#                          daemons in the foreground (-F / -D) as background
#                          children, wait until the node is idle
#   cluster.sh stop  DIR   kill them by the pids in DIR/*.pid (TERM, then KILL);
#                          safe to call twice or on a half-started DIR
#
# Client commands need:  export SLURM_CONF=DIR/slurm.conf
#
# Optional environment:
#   SLURM_PORT_CTLD, SLURM_PORT_D  use these ports instead of picking free ones
#   SLURM_CLUSTER_NAME             ClusterName (default sigmatest)
#   SLURM_CONF_EXTRA               lines appended to DIR/slurm.conf
#   START_TIMEOUT                  seconds to wait for slurmctld + the idle node
#                                  (default 30; munged gets 10 more)
#   START_WAIT_STATES              sinfo %t states that count as "up" (default
#                                  "idle"; e.g. "idle drain" when a health check
#                                  in SLURM_CONF_EXTRA drains the node at once)
#   STOP_TIMEOUT                   seconds between TERM and KILL (default 5)
set -euo pipefail

# The daemons live in /usr/sbin, which is not on PATH in every environment.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH

case ${BASH_SOURCE[0]} in
*/*) HERE=$(cd "${BASH_SOURCE[0]%/*}" && pwd -P) ;;
*) HERE=$(pwd -P) ;;
esac
TEMPLATE="$HERE/slurm.conf.in"
START_TIMEOUT=${START_TIMEOUT:-30}
STOP_TIMEOUT=${STOP_TIMEOUT:-5}
WAIT_STATES=${START_WAIT_STATES:-idle}
# Order matters for stop: slurmd first, munged last.
DAEMONS=(slurmd slurmctld munged)

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
log() { echo "cluster.sh: $*" >&2; }

need() {
    local b
    for b in "$@"; do
        command -v "$b" >/dev/null 2>&1 || die "required binary '$b' not found in PATH ($PATH)"
    done
}

# alive PID [NAME]: the process exists, is not a zombie, and (if NAME is
# given) its comm is NAME, so a recycled pid is never killed.
alive() {
    local pid=$1 name=${2:-} stat state comm
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    state=${stat##*) }
    state=${state%% *}
    [[ $state != Z && $state != X ]] || return 1
    if [[ -n $name ]]; then
        { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
        [[ $comm == "$name" ]] || return 1
    fi
    return 0
}

# port_busy PORT: some TCP socket (any state) uses PORT locally.
port_busy() {
    local hex
    hex=$(printf '%04X' "$1")
    grep -Eq "^ *[0-9]+: [0-9A-F]+:$hex " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# pick_port VAR: store a free port (not yet handed out) in VAR.
PICKED=" "
pick_port() {
    local var=$1 p i
    for i in $(seq 1 500); do
        p=$((20000 + RANDOM % 30000))
        [[ $PICKED == *" $p "* ]] && continue
        port_busy "$p" && continue
        PICKED+="$p "
        printf -v "$var" '%s' "$p"
        return 0
    done
    die "no free TCP port found"
}

abs_dir() {
    [[ -n ${1:-} ]] || die "missing DIR argument (usage: $0 start|stop DIR)"
    mkdir -p "$1" || die "cannot create $1"
    (cd "$1" && pwd -P)
}

show_logs() {
    local f
    # *.out is the daemons' stderr: the log file's lines plus early fatal errors.
    for f in "$DIR"/log/*.out; do
        [[ -f $f ]] || continue
        echo "----- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2 || true
    done
}

# spawn NAME CMD...: run CMD (whose binary is NAME) in the background, with
# stdin/stdout/stderr detached from the caller so that a parent waiting on our
# pipes does not hang, record its pid in DIR/NAME.pid, and wait until the
# forked child has exec'd NAME (before that its comm is still bash's, and
# alive PID NAME would call it dead).
spawn() {
    local name=$1 pid comm i
    shift
    "$@" </dev/null >"$DIR/log/$name.out" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/$name.pid"
    for i in $(seq 1 100); do
        { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 0
        [[ $comm == "$name" ]] && return 0
        sleep 0.02
    done
}

check_running() {
    local d pid
    for d in "${DAEMONS[@]}"; do
        pid=$(cat "$DIR/$d.pid" 2>/dev/null || true)
        if ! alive "$pid" "$d"; then
            log "$d (pid ${pid:-?}) died during start"
            show_logs
            do_stop >/dev/null 2>&1 || true
            die "$d failed to start; logs are in $DIR/log"
        fi
    done
}

do_start() {
    local t0 t1 host cpus mem_kb mem port_ctld port_d cluster sock d pid state i deadline
    t0=$(date +%s.%N)
    deadline=$((SECONDS + START_TIMEOUT))
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root, slurmd must be root)"
    need munged munge unmunge slurmctld slurmd sinfo scontrol squeue scancel srun \
        hostname nproc id dd sed awk grep seq tr ps timeout date chown chmod
    [[ -r $TEMPLATE ]] || die "template $TEMPLATE not found"

    for d in "${DAEMONS[@]}"; do
        pid=$(cat "$DIR/$d.pid" 2>/dev/null || true)
        if alive "$pid" "$d"; then
            die "$d already running from $DIR (pid $pid); run '$0 stop $DIR' first"
        fi
    done

    # A fresh cluster every time: a state dir left from an earlier run would
    # bring back its node state (e.g. a DRAIN) and job ids.
    rm -rf "$DIR"/{munge,state,spool,run,log}
    mkdir -p "$DIR"/{munge,state,spool,run,log}
    # munged wants o+x on its socket directory (it warns otherwise) and no
    # group/other write on the key's directory.
    chmod 0711 "$DIR/munge"
    sock="$DIR/munge/munge.socket"
    ((${#sock} < 100)) || die "DIR path too long: munge socket path $sock exceeds the 108-byte unix socket limit"

    host=$(hostname -s)
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem=$((mem_kb * 95 / 100 / 1024))
    cluster=${SLURM_CLUSTER_NAME:-sigmatest}
    if [[ -n ${SLURM_PORT_CTLD:-} ]]; then port_ctld=$SLURM_PORT_CTLD; PICKED+="$port_ctld "; else pick_port port_ctld; fi
    if [[ -n ${SLURM_PORT_D:-} ]]; then port_d=$SLURM_PORT_D; PICKED+="$port_d "; else pick_port port_d; fi

    sed -e "s|@CLUSTER@|$cluster|g" \
        -e "s|@DIR@|$DIR|g" \
        -e "s|@HOST@|$host|g" \
        -e "s|@USER@|root|g" \
        -e "s|@PORT_CTLD@|$port_ctld|g" \
        -e "s|@PORT_D@|$port_d|g" \
        -e "s|@CPUS@|$cpus|g" \
        -e "s|@MEM@|$mem|g" \
        "$TEMPLATE" >"$DIR/slurm.conf"
    if grep -v '^#' "$DIR/slurm.conf" | grep -Eq '@[A-Z_]+@'; then
        die "unsubstituted placeholder in $DIR/slurm.conf: $(grep -v '^#' "$DIR/slurm.conf" | grep -Eo '@[A-Z_]+@' | head -n1)"
    fi
    # Extra lines from the caller, e.g. HealthCheckProgram=... (a later
    # key overrides an earlier one).
    if [[ -n ${SLURM_CONF_EXTRA:-} ]]; then
        printf '%s\n' "$SLURM_CONF_EXTRA" >>"$DIR/slurm.conf"
    fi
    : >"$DIR/plugstack.conf"
    echo "export SLURM_CONF=$DIR/slurm.conf" >"$DIR/env"

    # Munge key: 1 KiB of random bytes, owned by root, mode 0400.
    rm -f "$DIR/munge/munge.key"
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chown root:root "$DIR/munge/munge.key"
    chmod 0400 "$DIR/munge/munge.key"

    # munged: --force because it runs as root and DIR usually sits below the
    # world-writable (sticky) /tmp.
    spawn munged munged -F --force \
        --socket="$sock" \
        --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
    for i in $(seq 1 100); do
        if munge -n -S "$sock" 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1; then
            break
        fi
        pid=$(cat "$DIR/munged.pid")
        alive "$pid" munged || { show_logs; do_stop >/dev/null 2>&1 || true; die "munged failed to start; logs are in $DIR/log"; }
        ((i < 100)) || { show_logs; do_stop >/dev/null 2>&1 || true; die "munged socket $sock not answering after 10 s"; }
        sleep 0.1
    done

    export SLURM_CONF="$DIR/slurm.conf"
    spawn slurmctld slurmctld -D -f "$DIR/slurm.conf"
    # Start slurmd once slurmctld answers: slurmd then registers at once
    # instead of retrying a second later.
    while ((SECONDS < deadline)); do
        timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP' && break
        pid=$(cat "$DIR/slurmctld.pid")
        alive "$pid" slurmctld || { show_logs; do_stop >/dev/null 2>&1 || true; die "slurmctld failed to start; logs are in $DIR/log"; }
        sleep 0.1
    done
    spawn slurmd slurmd -D -f "$DIR/slurm.conf"

    # Wait (bounded) for the node to be idle.
    state=""
    while ((SECONDS < deadline)); do
        check_running
        state=$(timeout 5 sinfo -h -N -n "$host" -o '%t' 2>/dev/null | head -n1 || true)
        [[ -n $state && " $WAIT_STATES " == *" $state "* ]] && break
        sleep 0.2
    done
    if [[ -z $state || " $WAIT_STATES " != *" $state "* ]]; then
        log "node $host not in state '$WAIT_STATES' after ${START_TIMEOUT}s (state: '${state:-no answer}')"
        show_logs
        do_stop >/dev/null 2>&1 || true
        die "cluster did not come up"
    fi
    t1=$(date +%s.%N)
    log "cluster up in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s: node $host $state, slurmctld port $port_ctld, slurmd port $port_d"
    # stdout: the one line a caller needs.
    echo "export SLURM_CONF=$DIR/slurm.conf"
}

# stop_one NAME: TERM, wait STOP_TIMEOUT s, KILL, wait again.
stop_one() {
    local name=$1 pidfile="$DIR/$1.pid" pid i
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 $((STOP_TIMEOUT * 10))); do
            alive "$pid" "$name" || break
            sleep 0.1
        done
        if alive "$pid" "$name"; then
            log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 1 50); do
                alive "$pid" "$name" || break
                sleep 0.1
            done
        fi
        alive "$pid" "$name" && { log "$name (pid $pid) still alive after SIGKILL"; return 1; }
    fi
    rm -f "$pidfile"
    return 0
}

# cluster_pids NAME...: live processes called NAME whose environment holds
# SLURM_CONF=DIR/slurm.conf: slurmstepd gets it from slurmd (started with it
# exported), srun from whoever ran it against this cluster.
cluster_pids() {
    local p pid comm n env
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        { read -r comm <"$p/comm"; } 2>/dev/null || continue
        for n in "$@"; do
            [[ $comm == "$n" ]] || continue
            env=$({ tr '\0' '\n' <"$p/environ"; } 2>/dev/null) || continue
            if grep -qxF "SLURM_CONF=$DIR/slurm.conf" <<<"$env" && alive "$pid"; then
                echo "$pid"
            fi
        done
    done
}

# kill_leftovers SIG: job steps of this cluster (slurmstepd and the process
# groups of its tasks; proctrack/pgid makes every task a group leader) and
# srun clients still attached to it. Returns 1 if there was nothing.
kill_leftovers() {
    local sig=$1 s c pg found=1
    for s in $(cluster_pids slurmstepd); do
        for c in $(ps -o pid= --ppid "$s" 2>/dev/null); do
            pg=$(ps -o pgid= -p "$c" 2>/dev/null | tr -d ' ')
            if [[ $pg == "$c" ]]; then
                kill "-$sig" -- "-$c" 2>/dev/null || true
            else
                kill "-$sig" "$c" 2>/dev/null || true
            fi
        done
        kill "-$sig" "$s" 2>/dev/null || true
        found=0
    done
    for s in $(cluster_pids srun); do
        kill "-$sig" "$s" 2>/dev/null || true
        found=0
    done
    return $found
}

do_stop() {
    local rc=0 d i ids pid
    [[ -d $DIR ]] || return 0
    # 1. While the cluster still runs, cancel its jobs the normal way.
    pid=$(cat "$DIR/slurmctld.pid" 2>/dev/null || true)
    if [[ -f $DIR/slurm.conf ]] && alive "$pid" slurmctld; then
        ids=$(SLURM_CONF="$DIR/slurm.conf" timeout 5 squeue -h -o %A 2>/dev/null || true)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086
            SLURM_CONF="$DIR/slurm.conf" timeout 5 scancel $ids 2>/dev/null || true
            for i in $(seq 1 $(((STOP_TIMEOUT + 5) * 10))); do
                [[ -z $(cluster_pids slurmstepd) ]] && break
                sleep 0.1
            done
        fi
    fi
    # 2. The daemons, by pid.
    for d in "${DAEMONS[@]}"; do
        stop_one "$d" || rc=1
    done
    # 3. Whatever is left of job steps and srun clients.
    if kill_leftovers TERM; then
        for i in $(seq 1 $((STOP_TIMEOUT * 10))); do
            sleep 0.1
            [[ -z $(cluster_pids slurmstepd srun) ]] && break
        done
        kill_leftovers KILL || true
        sleep 0.2
        if [[ -n $(cluster_pids slurmstepd srun) ]]; then
            log "left over: $(cluster_pids slurmstepd srun | tr '\n' ' ')"
            rc=1
        fi
    fi
    return $rc
}

cmd=${1:-}
case $cmd in
start)
    DIR=$(abs_dir "${2:-}")
    do_start
    ;;
stop)
    [[ -n ${2:-} ]] || die "missing DIR argument (usage: $0 stop DIR)"
    if [[ ! -d $2 ]]; then
        exit 0
    fi
    DIR=$(cd "$2" && pwd -P)
    need ps tr grep seq timeout
    do_stop || die "some process of $DIR could not be stopped"
    log "stopped $DIR"
    ;;
*)
    echo "usage: $0 start DIR | stop DIR" >&2
    exit 2
    ;;
esac
