#!/usr/bin/env bash
# Local test bed for the RBD replication collection.
#
# Brings up, on a single machine and without systemd or containers:
#   * two single-node Ceph clusters ("source" on 127.0.0.2, "backup" on
#     127.0.0.3), each with one mon and one bluestore OSD (no mgr), and a
#     pool "rbd";
#   * two sshd instances acting as the fake hosts "source" (127.0.0.2:2222)
#     and "backup" (127.0.0.3:2222), accepting root's ~/.ssh/id_ed25519;
#   * an Ansible inventory and an env.sh describing all of the above.
#
# Usage: testbed.sh up|down|status|env|osd-stop <cluster>|osd-start <cluster>
# State lives in ${RBD_TESTBED_DIR:-/tmp/rbd-testbed}.
#
# A Ceph release per cluster (issue #19): SOURCE_RELEASE and BACKUP_RELEASE = pacific (default: this
# machine's own Debian 12 packages), quincy, reef or squid. A cluster of another release runs its mon, osd
# and the sshd of its hosts inside that release's root file system (tests/testbed/roots.sh makes it), so
# what logs in over ssh there - the modules, rbd, python3-rbd, rbd-fuse - is that release's. A bed keeps
# the releases it was made with ($DIR/<cluster>/release); `up` without the variables takes those.
# RBD_TESTBED_NET (default 127.0.0) puts the hosts on NET.2-NET.5, so that beds of several release pairs
# can run side by side, each in its own RBD_TESTBED_DIR. RBD_TESTBED_OSD_GB caps each OSD's sparse file.
set -euo pipefail

DIR_RAW="${RBD_TESTBED_DIR:-/tmp/rbd-testbed}"
case "$DIR_RAW" in
  /*) DIR="$DIR_RAW" ;;
  *) DIR="$(pwd)/$DIR_RAW" ;;
esac
DIR="${DIR%/}"
[ -n "$DIR" ] || { echo "testbed: refusing to use / as state dir" >&2; exit 2; }

CLUSTERS=(source backup)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOTS_SH="$REPO/tests/testbed/roots.sh"
NET="${RBD_TESTBED_NET:-$(cat "$DIR/net" 2>/dev/null || true)}"
NET="${NET:-127.0.0}"
[[ "$NET" =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "testbed: RBD_TESTBED_NET must be 127.X.Y (loopback), not '$NET'" >&2; exit 2; }
# sshd endpoints ("hosts"): one per cluster, plus a second host of each cluster for the tests of several
# hosts sharing a pool (issue #11); the second hosts are not in the generated inventory.
SSH_HOSTS=(source backup source2 backup2)
SSH_PORT=2222
SSH_DIR="$DIR/ssh"
KNOWN_HOSTS="$SSH_DIR/known_hosts"
INVENTORY="$DIR/inventory.yml"
ENV_FILE="$DIR/env.sh"
READY_MARKER=".ready"   # written into $DIR/<cluster>/ once the cluster is fully created
BED_MARKER=".rbd-testbed"  # marks $DIR as ours, so `down` may delete it

# Per-command time limits (seconds).
T_CEPH=30        # a single ceph/rbd admin command
T_BENCH=90       # rbd bench round trip step
T_WAIT=240       # waiting for a cluster to become usable
T_STOP=10        # grace period between SIGTERM and SIGKILL

PACKAGES=(ceph-mon ceph-osd ceph-common python3-rbd python3-rados openssh-server openssh-client zstd coreutils)

# Run a command quietly; show its output only if it fails.
quiet() {
  local out
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" >&2
    return 1
  fi
}

log() { printf '[testbed %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cluster_ip() {
  case "$1" in
    source) echo "$NET.2" ;;
    backup) echo "$NET.3" ;;
    source2) echo "$NET.4" ;;
    backup2) echo "$NET.5" ;;
    *) die "unknown cluster or host '$1' (expected source, backup, source2 or backup2)" ;;
  esac
}

# The cluster a host belongs to.
cluster_of() { case "$1" in source|source2) echo source ;; backup|backup2) echo backup ;; *) die "unknown host '$1'" ;; esac; }

# The Ceph release of a cluster (or of a host's cluster): the environment's choice, else what the bed was
# made with, else pacific.
release_of() {
  local c var rel
  c="$(cluster_of "$1")"
  var="${c^^}_RELEASE"
  rel="${!var:-}"
  [ -n "$rel" ] || rel="$(cat "$DIR/$c/release" 2>/dev/null || true)"
  echo "${rel:-pacific}"
}

# Run a command with the Ceph release of cluster/host $1: pacific directly, any other inside its root, in
# a mount namespace of its own where /proc, /sys, /dev, /tmp, /var/tmp, root's ~/.ssh (its key, for the
# hop between hosts), the state dir and this checkout are the host's, at the same paths (not the rest of
# root's home: its shell profile would bring this machine's Python onto the PATH) (the mounts vanish with the last process in it; a daemon keeps
# its namespace). Usage: inroot <cluster|host> command args...
inroot() {
  local rel root home
  rel="$(release_of "$1")"; shift
  if [ "$rel" = pacific ]; then "$@"; return; fi
  root="$(bash "$ROOTS_SH" path "$rel")"
  [ -f "$root/.rbd-testbed-root" ] || die "no $rel root at $root (made by: $ROOTS_SH build $rel)"
  home="$(root_home)"
  unshare --mount --propagation private -- /bin/bash -c '
    r=$1; shift; n=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" || exit 125
    bound=()
    for ((i = 0; i < n; i++)); do
      p=$1; shift
      for b in "${bound[@]}"; do [[ "$p/" == "$b/"* ]] && continue 2; done
      mkdir -p "$r$p" && mount --rbind "$p" "$r$p" || exit 125
      bound+=("$p")
    done
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C "$@"' \
    inroot "$root" 6 /tmp /var/tmp "$home/.ssh" "$DIR" "$REPO" "$SSH_DIR" "$@"
}

cdir() { echo "$DIR/$1"; }
conf_of() { echo "$DIR/$1/ceph.conf"; }
keyring_of() { echo "$DIR/$1/ceph.client.admin.keyring"; }
mon_pidfile() { echo "$DIR/$1/run/mon.a.pid"; }
osd_pidfile() { echo "$DIR/$1/run/osd.0.pid"; }
sshd_pidfile() { echo "$SSH_DIR/sshd-$1.pid"; }

# ceph / rbd wrappers: always bounded by timeout, always pointed at the bed.
# Usage: cephc <cluster> [timeout-seconds] -- args...
cephc() {
  local c="$1" t="$T_CEPH"; shift
  if [ "${1:-}" != "--" ]; then t="$1"; shift; fi
  shift
  inroot "$c" timeout -k 5 "$t" ceph --conf "$(conf_of "$c")" --keyring "$(keyring_of "$c")" --id admin \
    --connect-timeout "$t" "$@"
}
rbdc() {
  local c="$1" t="$T_CEPH"; shift
  if [ "${1:-}" != "--" ]; then t="$1"; shift; fi
  shift
  inroot "$c" timeout -k 5 "$t" rbd --conf "$(conf_of "$c")" --keyring "$(keyring_of "$c")" --id admin "$@"
}

# ---------------------------------------------------------------- processes

# Is the pid in <pidfile> alive and one of ours (its command line mentions
# our state dir)?  Prints the pid on success.
pid_from_file() {
  local f="$1" pid
  [ -s "$f" ] || return 1
  pid="$(tr -dc '0-9' <"$f")"
  [ -n "$pid" ] || return 1
  is_ours "$pid" || return 1
  echo "$pid"
}

is_ours() {
  local pid="$1" cmd
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"$DIR/"* ]]
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# All descendants of a pid (children first-level and below).
descendants() {
  local parent="$1" p ppid kids=()
  for p in /proc/[0-9]*; do
    ppid="$(awk '/^PPid:/ {print $2}' "$p/status" 2>/dev/null)" || continue
    [ "$ppid" = "$parent" ] && kids+=("${p#/proc/}")
  done
  for p in "${kids[@]}"; do
    echo "$p"
    descendants "$p"
  done
}

# SIGTERM the given pids, wait up to T_STOP (or $2.. seconds), then SIGKILL.
kill_pids() {
  local grace="$1"; shift
  local pids=("$@") p i left
  [ "${#pids[@]}" -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    left=0
    for p in "${pids[@]}"; do alive "$p" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    if alive "$p"; then
      log "pid $p did not stop after ${grace}s, sending SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  for ((i = 0; i < 50; i++)); do
    left=0
    for p in "${pids[@]}"; do alive "$p" && left=1; done
    [ "$left" = 0 ] && return 0
    sleep 0.1
  done
}

stop_pidfile() {
  local f="$1" grace="${2:-$T_STOP}" pid
  if pid="$(pid_from_file "$f")"; then
    kill_pids "$grace" "$pid"
  fi
  rm -f "$f"
}

# Daemons of this bed still running without (valid) pid files, identified by
# executable and a command line that references our state dir.
stray_daemons() {
  local p exe pid
  for p in /proc/[0-9]*; do
    pid="${p#/proc/}"
    [ "$pid" = "$$" ] && continue
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    case "${exe##*/}" in
      ceph-mon|ceph-osd|sshd) is_ours "$pid" && echo "$pid" ;;
    esac
  done
}

# ------------------------------------------------------------------ packages

ensure_packages() {
  local missing=() p st
  for p in "${PACKAGES[@]}"; do
    st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [ "$st" = "install ok installed" ] || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing missing packages: ${missing[*]}"
  timeout 900 apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y "${missing[@]}"
}

# -------------------------------------------------------------------- ceph

write_ceph_conf() {
  local c="$1" d ip fsid
  d="$(cdir "$c")"; ip="$(cluster_ip "$c")"; fsid="$2"
  cat >"$d/ceph.conf" <<EOF
# Generated by tests/testbed/testbed.sh -- single-node test cluster "$c".
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:$ip:3300,v1:$ip:6789]
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
ms bind ipv6 = false
run dir = $d/run
# single node: one replica, OSD is the failure domain
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
# let a killed OSD be noticed within a minute, never auto-mark it out
osd beacon report interval = 10
mon osd report timeout = 60
mon osd down out interval = 0
mon warn on osd down out interval zero = false
# faster map updates (pool create etc.) on a one-mon test cluster
paxos propose interval = 0.1

[mon]
mon data = $d/mon/ceph-a
keyring = $d/mon/ceph-a/keyring
public addr = $ip
log file = $d/log/mon.a.log
mon cluster log file = $d/log/cluster.log
pid file = $d/run/mon.a.pid
admin socket = $d/run/mon.a.asok
mon memory target = 536870912

[osd]
osd data = $d/osd/ceph-0
keyring = $d/osd/ceph-0/keyring
osd objectstore = bluestore
# never <osd data>/block itself: mkfs symlinks <osd data>/block -> this path
bluestore block path = $d/osd0.img
bluestore block create = false
public addr = $ip
cluster addr = $ip
log file = $d/log/osd.0.log
pid file = $d/run/osd.0.pid
admin socket = $d/run/osd.0.asok
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 2
osd op num threads per shard = 1
# The OSD file sits on a rotational disk here, so the default would sleep 5 s between snapshot trim
# operations: removed snapshots' space then came back so slowly that the bench's OSD-space guard skipped
# whole cases. Trim at once.
osd snap trim sleep hdd = 0
osd snap trim sleep hybrid = 0

[client]
keyring = $d/ceph.client.admin.keyring
EOF
}

start_mon() {
  local c="$1" d
  d="$(cdir "$c")"
  pid_from_file "$(mon_pidfile "$c")" >/dev/null && return 0
  log "$c: starting mon"
  inroot "$c" timeout 60 ceph-mon --conf "$d/ceph.conf" -i a </dev/null >>"$d/log/mon.a.stdout" 2>&1 \
    || { tail -n 30 "$d/log/mon.a.log" "$d/log/mon.a.stdout" >&2 2>/dev/null || true; die "$c: ceph-mon failed to start"; }
}

start_osd() {
  local c="$1" d
  d="$(cdir "$c")"
  pid_from_file "$(osd_pidfile "$c")" >/dev/null && return 0
  log "$c: starting osd"
  inroot "$c" timeout 120 ceph-osd --conf "$d/ceph.conf" -i 0 </dev/null >>"$d/log/osd.0.stdout" 2>&1 \
    || { tail -n 30 "$d/log/osd.0.log" "$d/log/osd.0.stdout" >&2 2>/dev/null || true; die "$c: ceph-osd failed to start"; }
}

wait_mon() {
  local c="$1" end=$((SECONDS + T_WAIT))
  until cephc "$c" 10 -- mon stat >/dev/null 2>&1; do
    pid_from_file "$(mon_pidfile "$c")" >/dev/null \
      || { tail -n 30 "$(cdir "$c")/log/mon.a.log" >&2 2>/dev/null || true; die "$c: mon died"; }
    [ "$SECONDS" -lt "$end" ] || die "$c: mon not answering after ${T_WAIT}s"
    sleep 0.5
  done
}

wait_osd_up() {
  local c="$1" end=$((SECONDS + T_WAIT))
  until [ "$(cephc "$c" 10 -- osd dump --format json 2>/dev/null \
      | /usr/bin/python3 -c 'import json,sys; print(sum(o["up"] for o in json.load(sys.stdin)["osds"]))' 2>/dev/null)" = 1 ]; do
    pid_from_file "$(osd_pidfile "$c")" >/dev/null \
      || { tail -n 30 "$(cdir "$c")/log/osd.0.log" >&2 2>/dev/null || true; die "$c: osd died"; }
    [ "$SECONDS" -lt "$end" ] || die "$c: osd not up after ${T_WAIT}s"
    sleep 0.5
  done
}

# rbd create + write bench + rm, retried until it works (PGs may still peer).
wait_rbd_io() {
  local c="$1" end=$((SECONDS + T_WAIT)) img
  img="testbed-probe-$$-$c"
  while :; do
    if rbdc "$c" -- create --size 16M "rbd/$img" >/dev/null 2>&1 \
      && rbdc "$c" "$T_BENCH" -- bench --io-type write --io-total 4M "rbd/$img" >/dev/null 2>&1 \
      && rbdc "$c" -- rm --no-progress "rbd/$img" >/dev/null 2>&1; then
      return 0
    fi
    rbdc "$c" -- rm --no-progress "rbd/$img" >/dev/null 2>&1 || true
    [ "$SECONDS" -lt "$end" ] || die "$c: rbd I/O round trip does not work after ${T_WAIT}s"
    sleep 1
  done
}

create_cluster() {
  local c="$1" d ip fsid uuid
  d="$(cdir "$c")"; ip="$(cluster_ip "$c")"
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  uuid="$(cat /proc/sys/kernel/random/uuid)"
  log "$c: creating cluster (fsid $fsid) on $ip, Ceph $(release_of "$c")"
  stop_cluster "$c"
  rm -rf "$d"
  mkdir -p "$d/run" "$d/log" "$d/mon/ceph-a" "$d/osd/ceph-0"
  release_of "$c" >"$d/release"
  write_ceph_conf "$c" "$fsid"

  # keyrings
  inroot "$c" timeout 30 ceph-authtool --create-keyring "$d/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  inroot "$c" timeout 30 ceph-authtool --create-keyring "$d/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  inroot "$c" timeout 30 ceph-authtool "$d/mon.keyring" --import-keyring "$d/ceph.client.admin.keyring" >/dev/null
  chmod 600 "$d/mon.keyring" "$d/ceph.client.admin.keyring"

  # mon
  inroot "$c" timeout 30 monmaptool --create --fsid "$fsid" --addv a "[v2:$ip:3300,v1:$ip:6789]" "$d/monmap" >/dev/null
  inroot "$c" timeout 60 ceph-mon --conf "$d/ceph.conf" --mkfs -i a --monmap "$d/monmap" --keyring "$d/mon.keyring" \
    >>"$d/log/mon.a.stdout" 2>&1 || { tail -n 30 "$d/log/mon.a.log" "$d/log/mon.a.stdout" >&2 2>/dev/null || true; die "$c: mon mkfs failed"; }
  start_mon "$c"
  wait_mon "$c"

  # osd: bluestore on a large sparse file (a small one makes the OSD hit ENOSPC), but never larger than
  # a third of the host's free space: bluestore spreads its writes over the whole device and does not
  # give freed space back to the file, so a sparse file sized past the free space fills the host disk
  # (seen here: 80 GB used by two 100G files after the benchmark), and then everything stops.
  local free_gb size_gb
  free_gb=$(( $(df -Pk "$d" | awk 'NR==2 {print $4}') / 1024 / 1024 ))
  size_gb=$(( free_gb / 3 ))
  (( size_gb > ${RBD_TESTBED_OSD_GB:-100} )) && size_gb=${RBD_TESTBED_OSD_GB:-100}
  (( size_gb < 8 )) && die "$c: only ${free_gb}G free under $d; the test bed needs at least 24G"
  log "$c: OSD on a ${size_gb}G sparse file (${free_gb}G free)"
  truncate -s "${size_gb}G" "$d/osd0.img"
  quiet cephc "$c" -- osd new "$uuid" 0
  inroot "$c" timeout 300 ceph-osd --conf "$d/ceph.conf" --no-mon-config --mkfs --mkkey -i 0 --osd-uuid "$uuid" \
    >>"$d/log/osd.0.stdout" 2>&1 || { tail -n 30 "$d/log/osd.0.log" "$d/log/osd.0.stdout" >&2 2>/dev/null || true; die "$c: osd mkfs failed"; }
  quiet cephc "$c" -- auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    -i "$d/osd/ceph-0/keyring"
  start_osd "$c"
  wait_osd_up "$c"

  # pool
  quiet cephc "$c" -- osd pool create rbd 8 8 replicated
  quiet rbdc "$c" 120 -- pool init rbd
  touch "$d/$READY_MARKER"
  log "$c: cluster created"
}

# Make sure a cluster exists and its daemons run; then prove I/O works.
up_cluster() {
  local c="$1" d
  d="$(cdir "$c")"
  if [ -f "$d/$READY_MARKER" ]; then
    start_mon "$c"
    wait_mon "$c"
    start_osd "$c"
  else
    create_cluster "$c"
  fi
  wait_rbd_io "$c"
  log "$c: rbd I/O round trip OK"
}

stop_osd() { stop_pidfile "$(osd_pidfile "$1")" 30; }

stop_cluster() {
  local c="$1"
  stop_osd "$c"
  stop_pidfile "$(mon_pidfile "$c")"
}

# --------------------------------------------------------------------- ssh

root_home() { getent passwd root | cut -d: -f6; }

ensure_root_key() {
  local home
  home="$(root_home)"
  mkdir -p "$home/.ssh"
  chmod 700 "$home/.ssh"
  if [ ! -e "$home/.ssh/id_ed25519" ]; then
    log "creating $home/.ssh/id_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C "root@rbd-testbed" -f "$home/.ssh/id_ed25519"
  fi
  if [ ! -e "$home/.ssh/id_ed25519.pub" ]; then
    ssh-keygen -y -f "$home/.ssh/id_ed25519" >"$home/.ssh/id_ed25519.pub"
  fi
}

write_sshd_conf() {
  local h="$1" ip
  ip="$(cluster_ip "$h")"
  cat >"$SSH_DIR/sshd-$h.conf" <<EOF
# Generated by tests/testbed/testbed.sh -- fake host "$h".
ListenAddress $ip:$SSH_PORT
HostKey $SSH_DIR/ssh_host_ed25519_key-$h
PidFile $(sshd_pidfile "$h")
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
UseDNS no
MaxStartups 50:30:100
MaxSessions 50
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel INFO
EOF
}

start_sshd() {
  local h="$1"
  pid_from_file "$(sshd_pidfile "$h")" >/dev/null && return 0
  [ -f "$SSH_DIR/ssh_host_ed25519_key-$h" ] \
    || ssh-keygen -q -t ed25519 -N '' -C "rbd-testbed-$h" -f "$SSH_DIR/ssh_host_ed25519_key-$h"
  write_sshd_conf "$h"
  log "ssh: starting sshd for host $h on $(cluster_ip "$h"):$SSH_PORT"
  inroot "$h" timeout 30 /usr/sbin/sshd -f "$SSH_DIR/sshd-$h.conf" -E "$SSH_DIR/sshd-$h.log" </dev/null \
    || { tail -n 20 "$SSH_DIR/sshd-$h.log" >&2 2>/dev/null || true; die "sshd for $h failed to start"; }
}

ssh_check() {
  local h="$1"
  timeout 20 ssh -p "$SSH_PORT" -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o ConnectTimeout=10 "root@$(cluster_ip "$h")" true </dev/null >/dev/null 2>&1
}

up_ssh() {
  local h end tmp home
  home="$(root_home)"
  mkdir -p /run/sshd "$SSH_DIR"
  chmod 755 /run/sshd
  ensure_root_key
  cp "$home/.ssh/id_ed25519.pub" "$SSH_DIR/authorized_keys"
  chmod 600 "$SSH_DIR/authorized_keys"
  case "$(getent shadow root | cut -d: -f2)" in
    '!'*) log "WARNING: root's password is locked ('!'); sshd with UsePAM no refuses locked accounts" ;;
  esac
  for h in "${SSH_HOSTS[@]}"; do start_sshd "$h"; done
  tmp="$KNOWN_HOSTS.tmp"
  for h in "${SSH_HOSTS[@]}"; do
    end=$((SECONDS + 30))
    until timeout 10 ssh-keyscan -T 5 -t ed25519 -p "$SSH_PORT" "$(cluster_ip "$h")" >"$tmp.$h" 2>/dev/null \
        && [ -s "$tmp.$h" ]; do
      [ "$SECONDS" -lt "$end" ] || die "ssh-keyscan of $h failed"
      sleep 0.3
    done
  done
  for h in "${SSH_HOSTS[@]}"; do cat "$tmp.$h"; done >"$tmp"
  mv "$tmp" "$KNOWN_HOSTS"
  for h in "${SSH_HOSTS[@]}"; do rm -f "$tmp.$h"; done
  for h in "${SSH_HOSTS[@]}"; do
    ssh_check "$h" || { tail -n 20 "$SSH_DIR/sshd-$h.log" >&2 2>/dev/null || true; die "ssh root@$(cluster_ip "$h") does not work"; }
  done
  log "ssh: all hosts reachable (${SSH_HOSTS[*]})"
}

# ----------------------------------------------------------- inventory/env

write_inventory() {
  local tmp="$INVENTORY.tmp"
  cat >"$tmp" <<EOF
# Generated by tests/testbed/testbed.sh
all:
  vars:
    ansible_port: $SSH_PORT
    ansible_user: root
    ansible_python_interpreter: /usr/bin/python3
    # one ssh round trip per task instead of four (measured: a role run's fixed cost 10.5 s -> 6.7 s)
    ansible_pipelining: true
    ansible_ssh_common_args: "-o UserKnownHostsFile=$KNOWN_HOSTS -o StrictHostKeyChecking=yes"
  children:
    ceph_source:
      hosts:
        source:
          ansible_host: $(cluster_ip source)
      vars:
        rbd_replicate_dest_host: backup
        rbd_replicate_source_ceph:
          conf: "$(conf_of source)"
          keyring: "$(keyring_of source)"
          user: admin
        rbd_replicate_dest_ceph:
          conf: "$(conf_of backup)"
          keyring: "$(keyring_of backup)"
          user: admin
        rbd_replicate_ssh_options:
          - "-o"
          - "UserKnownHostsFile=$KNOWN_HOSTS"
          - "-o"
          - "StrictHostKeyChecking=yes"
    ceph_backup:
      hosts:
        backup:
          ansible_host: $(cluster_ip backup)
EOF
  mv "$tmp" "$INVENTORY"

  tmp="$ENV_FILE.tmp"
  {
    echo "# Generated by tests/testbed/testbed.sh -- source this file."
    printf 'export RBD_TESTBED_DIR=%q\n' "$DIR"
    printf 'export SRC_CONF=%q\n' "$(conf_of source)"
    printf 'export SRC_KEYRING=%q\n' "$(keyring_of source)"
    printf 'export DST_CONF=%q\n' "$(conf_of backup)"
    printf 'export DST_KEYRING=%q\n' "$(keyring_of backup)"
    printf 'export SRC_HOST=%q\n' "$(cluster_ip source)"
    printf 'export DST_HOST=%q\n' "$(cluster_ip backup)"
    printf 'export SSH_PORT=%q\n' "$SSH_PORT"
    printf 'export INVENTORY=%q\n' "$INVENTORY"
    printf 'export SOURCE_RELEASE=%q\n' "$(release_of source)"
    printf 'export BACKUP_RELEASE=%q\n' "$(release_of backup)"
    printf 'export SRC2_HOST=%q\n' "$(cluster_ip source2)"
    printf 'export DST2_HOST=%q\n' "$(cluster_ip backup2)"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# ------------------------------------------------------------- subcommands

require_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

# Fast health check used by `up` to return early.
healthy() {
  local c h
  for c in "${CLUSTERS[@]}"; do
    [ -f "$(cdir "$c")/$READY_MARKER" ] || return 1
    pid_from_file "$(mon_pidfile "$c")" >/dev/null || return 1
    pid_from_file "$(osd_pidfile "$c")" >/dev/null || return 1
  done
  for h in "${SSH_HOSTS[@]}"; do
    pid_from_file "$(sshd_pidfile "$h")" >/dev/null || return 1
  done
  [ -s "$KNOWN_HOSTS" ] && [ -s "$SSH_DIR/authorized_keys" ] || return 1
  for c in "${CLUSTERS[@]}"; do
    rbdc "$c" 15 -- ls rbd >/dev/null 2>&1 || return 1
  done
  for h in "${SSH_HOSTS[@]}"; do
    ssh_check "$h" || return 1
  done
}

# A bed made with other releases than the environment asks for is not silently reused.
check_releases() {
  local c var want have
  for c in "${CLUSTERS[@]}"; do
    var="${c^^}_RELEASE"; want="${!var:-}"
    have="$(cat "$DIR/$c/release" 2>/dev/null || true)"
    [ -n "$want" ] && [ -f "$DIR/$c/$READY_MARKER" ] && [ "$want" != "${have:-pacific}" ] \
      && die "$c cluster in $DIR runs ${have:-pacific}, not $want: '$0 down' first (or another RBD_TESTBED_DIR)"
    bash "$ROOTS_SH" path "$(release_of "$c")" >/dev/null || die "$var: unknown release"
  done
  return 0
}

cmd_up() {
  require_root
  check_releases
  local start=$SECONDS pids=() c p rc=0
  if healthy; then
    write_inventory
    log "already up and healthy ($DIR)"
    return 0
  fi
  ensure_packages
  check_releases
  for c in "${CLUSTERS[@]}"; do bash "$ROOTS_SH" build "$(release_of "$c")" >/dev/null; done
  mkdir -p "$DIR"
  # if we are interrupted, do not leave the parallel set-up jobs running
  trap 'trap - INT TERM; [ "${#pids[@]}" -eq 0 ] || kill "${pids[@]}" 2>/dev/null; exit 130' INT TERM
  touch "$DIR/$BED_MARKER"
  echo "$NET" >"$DIR/net"
  for c in "${CLUSTERS[@]}"; do
    up_cluster "$c" &
    pids+=("$!")
  done
  up_ssh &
  pids+=("$!")
  for p in "${pids[@]}"; do
    wait "$p" || rc=1
  done
  [ "$rc" = 0 ] || die "test bed did not come up (logs under $DIR/*/log, $SSH_DIR/*.log)"
  write_inventory
  log "test bed up in $((SECONDS - start))s; source with: . $ENV_FILE"
}

cmd_down() {
  require_root
  local c h p pids=() strays
  for h in "${SSH_HOSTS[@]}"; do
    if p="$(pid_from_file "$(sshd_pidfile "$h")")"; then
      # the listener plus its per-connection session processes
      mapfile -t pids < <(echo "$p"; descendants "$p")
      kill_pids "$T_STOP" "${pids[@]}"
    fi
    rm -f "$(sshd_pidfile "$h")"
  done
  for c in "${CLUSTERS[@]}"; do
    stop_cluster "$c"
  done
  mapfile -t strays < <(stray_daemons)
  if [ "${#strays[@]}" -gt 0 ]; then
    log "stopping leftover daemons without pid file: ${strays[*]}"
    kill_pids "$T_STOP" "${strays[@]}"
  fi
  if [ -e "$DIR" ] && [ ! -e "$DIR/$BED_MARKER" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR is not a test bed directory (no $BED_MARKER); not removing it"
  fi
  rm -rf "$DIR"
  log "test bed down ($DIR removed)"
}

cmd_status() {
  local c h p bad=0 st
  for c in "${CLUSTERS[@]}"; do
    if p="$(pid_from_file "$(mon_pidfile "$c")")"; then st="up (pid $p)"; else st="DOWN"; bad=1; fi
    echo "$c mon.a: $st"
    if p="$(pid_from_file "$(osd_pidfile "$c")")"; then st="up (pid $p)"; else st="DOWN"; bad=1; fi
    echo "$c osd.0: $st"
    echo "$c release: $(release_of "$c")"
  done
  for h in "${SSH_HOSTS[@]}"; do
    if p="$(pid_from_file "$(sshd_pidfile "$h")")"; then st="up (pid $p)"; else st="DOWN"; bad=1; fi
    echo "sshd $h ($(cluster_ip "$h"):$SSH_PORT): $st"
  done
  for c in "${CLUSTERS[@]}"; do
    echo "--- ceph -s ($c)"
    if [ -f "$(conf_of "$c")" ] && pid_from_file "$(mon_pidfile "$c")" >/dev/null; then
      cephc "$c" 15 -- -s || { echo "ceph -s failed for $c"; bad=1; }
    else
      echo "(mon not running)"
    fi
  done
  return "$bad"
}

cmd_env() {
  [ -f "$ENV_FILE" ] || die "$ENV_FILE does not exist; run '$0 up' first"
  cat "$ENV_FILE"
}

cmd_osd_stop() {
  require_root
  local c="${1:-}"
  cluster_ip "$c" >/dev/null
  log "$c: stopping osd"
  stop_osd "$c"
}

cmd_osd_start() {
  require_root
  local c="${1:-}"
  cluster_ip "$c" >/dev/null
  [ -f "$(cdir "$c")/$READY_MARKER" ] || die "$c: cluster not created; run '$0 up'"
  start_mon "$c"
  wait_mon "$c"
  start_osd "$c"
  wait_osd_up "$c"
  local end=$((SECONDS + T_WAIT))
  until rbdc "$c" 15 -- ls rbd >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || die "$c: pool rbd not usable after ${T_WAIT}s"
    sleep 0.5
  done
  log "$c: osd up"
}

usage() {
  cat >&2 <<EOF
usage: $0 up|down|status|env|osd-stop <source|backup>|osd-start <source|backup>
state dir: \${RBD_TESTBED_DIR:-/tmp/rbd-testbed} (now: $DIR)
EOF
  exit 2
}

main() {
  local cmd="${1:-}"
  [ $# -gt 0 ] && shift
  case "$cmd" in
    # One 'up' at a time: pytest-xdist workers, the soak and the bench all call it (their temporary files
    # and the daemons they start would race). flock -o: the lock stays with flock itself, so the daemons
    # this starts do not inherit it (they did with 'exec 9>lock; flock 9', and held it forever).
    up) mkdir -p "$DIR"; exec flock -o "$DIR/.up.lock" bash "${BASH_SOURCE[0]}" up-locked ;;
    up-locked) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    osd-stop) cmd_osd_stop "$@" ;;
    osd-start) cmd_osd_start "$@" ;;
    *) usage ;;
  esac
}

main "$@"
