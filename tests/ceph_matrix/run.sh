#!/usr/bin/env bash
# The Ceph release matrix (make ceph-matrix, issue #19): for each source->backup release pair, a test bed
# of its own (tests/testbed/testbed.sh with SOURCE_RELEASE/BACKUP_RELEASE: the newer releases' daemons,
# sshd, rbd and python3-rbd from their distributions' packages, in roots made by tests/testbed/roots.sh),
# the end-to-end scenario on it, then the bed is removed; and a short soak on one pair. Ends with a table
# (pair, releases seen on the hosts, scenarios passed, wall time) in .build/ceph-matrix/summary.md and
# exits non-zero when anything failed.
#
#   CEPH_PAIRS="squid-squid reef-reef squid-pacific pacific-squid squid-reef"   the pairs (SOURCE-BACKUP)
#   CEPH_SOAK_PAIR=squid-reef   the pair the soak runs on ("" for none)
#   CEPH_SOAK_NIGHTS=5          its nights
#   CEPH_MATRIX_FULL=1          the whole integration suite per pair instead of the scenario (slower)
#   CEPH_MATRIX_JOBS=3          pytest-xdist workers per pair
#
# Each pair's bed is RBD_TESTBED_DIR=/tmp/rbd-ceph-<pair> on the loopback net 127.0.9 (hosts .2-.5), so
# it never touches the default bed of make test (127.0.0, /tmp/rbd-testbed); pairs run one after another.
# The scenario is the integration tests below, unchanged: what they prove on Pacific they prove here on
# the pair (their helpers on the controller use this machine's Pacific client; everything the modules
# run is the host's release).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
OUT=$ROOT/.build/ceph-matrix
read -r -a PAIRS <<<"${CEPH_PAIRS:-squid-squid reef-reef squid-pacific pacific-squid squid-reef}"
SOAK_PAIR=${CEPH_SOAK_PAIR-squid-reef}
SOAK_NIGHTS=${CEPH_SOAK_NIGHTS:-5}
JOBS=${CEPH_MATRIX_JOBS:-3}
NET=127.0.9
exec </dev/null

# first run, incremental, check mode, verify full, restore to a new image and in place, file restore,
# freeze window, direct, push; and what else the hosts' release touches: the run lock, the watcher check
# (one failing image), the librbd helpers, the read-only forced-command user, several hosts on one pool.
SCENARIO=(
  tests/integration/test_replicate.py::test_first_run_copies_everything_second_sends_only_changes
  tests/integration/test_replicate.py::test_check_mode_changes_nothing_and_reports
  tests/integration/test_replicate.py::test_full_verify_catches_damage_to_a_backup_that_had_no_change
  tests/integration/test_replicate.py::test_verify_variants_through_the_role
  tests/integration/test_replicate.py::test_push_mode_and_zstd
  tests/integration/test_replicate.py::test_one_failing_image_does_not_stop_the_others
  tests/integration/test_operations.py::test_restore_to_new_image_and_in_place
  tests/integration/test_restore_verify.py::test_full_verify_reads_what_data_trusts_and_check_mode_changes_nothing
  tests/integration/test_file_restore.py::test_a_file_comes_back_as_it_was_on_night_2
  tests/integration/test_consistency.py::test_with_freeze_both_disks_backups_end_at_the_same_record
  tests/integration/test_direct.py::test_role_direct_read_only_source_byte_identical_and_check
  tests/integration/test_direct.py::test_module_direct_first_incremental_check_and_digest
  tests/integration/test_run_lock.py::test_a_killed_runs_lock_expires_and_its_mark_is_recovered
  tests/integration/test_librbd_stress.py::test_the_modules_read_and_query_in_their_children_without_fallback
  tests/integration/test_least_privilege.py::test_pull_with_read_only_user_and_forced_command
  tests/integration/test_scale_out.py::test_two_source_and_two_backup_hosts_share_a_pool
  tests/integration/test_modules.py::test_no_shell_reaches_hostile_names
)

[[ -x .venv/bin/python ]] || { echo "ceph-matrix: run 'make deps' first (make ceph-matrix does)"; exit 2; }
export PATH="$ROOT/.venv/bin:$PATH"
mkdir -p "$OUT"
rows=()
failed=0

bed() { RBD_TESTBED_DIR="$1" RBD_TESTBED_NET=$NET bash tests/testbed/testbed.sh "${@:2}"; }

host_versions() {
  local dir=$1 h out=()
  for h in SRC_HOST DST_HOST; do
    out+=("$(. "$dir/env.sh" && timeout 30 ssh -p "$SSH_PORT" -o BatchMode=yes -o UserKnownHostsFile="$dir/ssh/known_hosts" \
      "root@${!h}" 'rbd --version | cut -d" " -f3; /usr/bin/python3 -c "import platform; print(platform.python_version())"' \
      2>/dev/null | paste -sd/ -)")
  done
  echo "${out[0]:-?} -> ${out[1]:-?}"
}

run_pair() {
  local pair=$1 src=${1%-*} dst=${1#*-} dir=/tmp/rbd-ceph-$1 start=$SECONDS log=$OUT/$1.log rc versions what
  [[ $pair == *-* ]] || { echo "ceph-matrix: a pair is SOURCE-BACKUP, not '$pair'"; return 2; }
  echo "=== ceph-matrix: $src -> $dst ($dir)"
  bed "$dir" down >/dev/null 2>&1
  if ! SOURCE_RELEASE=$src BACKUP_RELEASE=$dst RBD_TESTBED_OSD_GB=${RBD_TESTBED_OSD_GB:-25} bed "$dir" up >"$log" 2>&1; then
    tail -n 20 "$log"
    rows+=("| $src -> $dst | - | bed did not come up | $((SECONDS - start)) s |")
    failed=1
    return 1
  fi
  versions=$(host_versions "$dir")
  if [[ ${CEPH_MATRIX_FULL:-} == 1 ]]; then
    what="whole integration suite"
    RBD_TESTBED_DIR=$dir python -m pytest -q -n "$JOBS" -p no:cacheprovider tests/integration \
      --deselect tests/integration/test_zz_outage.py >>"$log" 2>&1
    rc=$?
  else
    what="scenario (${#SCENARIO[@]} tests)"
    RBD_TESTBED_DIR=$dir python -m pytest -q -n "$JOBS" -p no:cacheprovider "${SCENARIO[@]}" >>"$log" 2>&1
    rc=$?
  fi
  local tally
  tally=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$log" | tail -n 1 | tr -d '=')
  if [[ $pair == "$SOAK_PAIR" ]] && ((SOAK_NIGHTS > 0)); then
    local s0=$SECONDS soak
    RBD_TESTBED_DIR=$dir SOAK_NIGHTS=$SOAK_NIGHTS python tests/soak/soak.py --out "$OUT/soak-$pair.json" >>"$log" 2>&1
    soak=$?
    ((soak == 0)) || rc=1
    tally="$tally; soak $SOAK_NIGHTS nights: $( ((soak == 0)) && echo passed || echo FAILED) ($((SECONDS - s0)) s)"
  fi
  ((rc == 0)) || { failed=1; grep -E '^(FAILED|ERROR) ' "$log" | head -n 20; }
  echo "    $tally"
  rows+=("| $src -> $dst | $versions | $what: $tally | $((SECONDS - start)) s |")
  bed "$dir" down >/dev/null 2>&1
}

for pair in "${PAIRS[@]}"; do run_pair "$pair"; done
{
  echo "Ceph release matrix, $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD 2>/dev/null)"
  echo
  echo "| source -> backup | rbd/python on the hosts | result | wall |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
exit "$failed"
