#!/usr/bin/env bash
# The ansible-core version matrix (make matrix, issue #10): for each version, ansible-test sanity of that
# version and a short end-to-end run of the replicate playbook on the test bed (tests/matrix/test_e2e.py),
# then a summary table. Exits non-zero when any step failed. See tests/matrix/README.md.
#
#   MATRIX_VERSIONS="2.16 2.17 2.18 2.19"  the ansible-core minors (default: all four)
#   MATRIX_SANITY_SKIP="2.19"              versions whose sanity is not run here (make lint runs 2.19's)
#   MATRIX_E2E_SKIP=""                     versions whose end-to-end run is skipped
#   MATRIX_CONNECTION=paramiko             connection plugin of the end-to-end runs: paramiko or ssh
#   MATRIX_PARAMIKO="2.16 2.17 2.18 2.19"  with MATRIX_CONNECTION unset: the versions run over paramiko
#                                          (the others over ssh); default: every version
#   MATRIX_E2E_JOBS=2                      how many versions' end-to-end runs go at once
#   MATRIX_REF=HEAD                        test a commit (git archive) instead of the working tree
#
# Layout: .build/matrix/<ver>/venv (ansible-core of that minor, ansible-runner, paramiko, jmespath, pytest;
# --system-site-packages for python3-rbd), .build/matrix/<ver>/{venv,sanity,e2e}.log, the sanity copy under
# .build/matrix/<ver>/ansible_collections/ceph_rbd/backup, the collection snapshot both steps use under
# .build/matrix/collection, the summary in .build/matrix/summary.txt.
#
# Scheduling (2 cores): the venvs are made in parallel (pip is network-bound); then the sanity runs (CPU:
# pylint, one version after the other) and the end-to-end runs (mostly waiting on the clusters and ssh, one
# version after the other) go side by side.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
OUT=$ROOT/.build/matrix
PYTHON_VERSION=3.11
read -r -a VERSIONS <<<"${MATRIX_VERSIONS:-2.16 2.17 2.18 2.19}"
SANITY_SKIP=" ${MATRIX_SANITY_SKIP:-} "
E2E_SKIP=" ${MATRIX_E2E_SKIP:-} "
PARAMIKO=" ${MATRIX_PARAMIKO:-2.16 2.17 2.18 2.19} "
E2E_JOBS=${MATRIX_E2E_JOBS:-2}
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
exec </dev/null

for v in "${VERSIONS[@]}"; do
  [[ $v =~ ^2\.(1[6-9]|[2-9][0-9])$ ]] || { echo "matrix: unsupported version '$v' (2.16 and later)"; exit 2; }
done

# The offline pip bootstrap of ansible-test (get-pip.py is not reachable here): scripts/lint.sh's own
# function, taken from there so that both stay one piece of code. It uses `python` (here: the version's
# venv, first on PATH) and PYTHON_VERSION; the pinned pip differs per version (23.1.2 for 2.16/2.17, 24.2
# for 2.18/2.19), and so does the cache file it writes.
eval "$(sed -n '/^install_pip_bootstrap() {$/,/^}$/p' scripts/lint.sh)"
declare -F install_pip_bootstrap >/dev/null || { echo "matrix: install_pip_bootstrap not found in scripts/lint.sh"; exit 2; }

mkdir -p "$OUT"
now() { date +%s.%N; }
secs() { python3 -c 'import sys; print("%.0f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }

# ------------------------------------------------------------------------------------------------ venvs
requirements() {
  local v=$1 next
  next="2.$((${v#2.} + 1))"
  echo "ansible-core>=$v,<$next ansible-runner paramiko jmespath pytest"
}

make_venv() {
  local v=$1 dir=$OUT/$1/venv req
  req=$(requirements "$v")
  if [[ -x $dir/bin/python && -f $dir/.matrix-requirements && $(cat "$dir/.matrix-requirements") == "$req" ]] \
     && "$dir/bin/python" -c 'import ansible, ansible_runner, paramiko, jmespath, pytest, rbd' 2>/dev/null; then
    echo "venv $dir is up to date ($req)"
    return 0
  fi
  rm -rf "$dir"
  /usr/bin/python3 -m venv --system-site-packages "$dir" || return 1
  # shellcheck disable=SC2086
  "$dir/bin/python" -m pip install --disable-pip-version-check $req || return 1
  echo "$req" >"$dir/.matrix-requirements"
  "$dir/bin/ansible" --version
}

# ---------------------------------------------------------------------------------- collection snapshot
# One copy for every version and both steps, so that they all test the same files even while the working
# tree changes: the files git sees (tracked, and untracked but not ignored), or MATRIX_REF's tree.
snapshot() {
  local dest=$OUT/collection/ansible_collections/ceph_rbd/backup
  rm -rf "$OUT/collection"
  mkdir -p "$dest"
  if [[ -n ${MATRIX_REF:-} ]]; then
    git archive "$MATRIX_REF" | tar -xf - -C "$dest"
  else
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
      [[ -e $f || -L $f ]] && printf '%s\0' "$f"
    done | tar --null -T - -cf - | tar -xf - -C "$dest"
  fi
}

# ------------------------------------------------------------------------------------------------ sanity
# Like scripts/lint.sh gate_sanity: a real copy under ansible_collections/ (ansible-test refuses a
# symlinked root) with its own git repository (the repo's .git ignores .build/), keeping tests/output
# (ansible-test's delegation venv) between runs. ansible-test's per-test venvs are cached per version in
# ~/.ansible/test/venv.
sanity() {
  local v=$1 dest=$OUT/$1/ansible_collections/ceph_rbd/backup
  export PATH="$OUT/$v/venv/bin:$PATH"
  install_pip_bootstrap || return 1
  mkdir -p "$dest"
  find "$dest" -mindepth 1 -maxdepth 1 ! -name .git ! -name tests -exec rm -rf {} +
  if [[ -d $dest/tests ]]; then
    find "$dest/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
  fi
  (cd "$OUT/collection/ansible_collections/ceph_rbd/backup" && tar -cf - .) | tar -xf - -C "$dest" || return 1
  [[ -d $dest/.git ]] || git -C "$dest" init -q || return 1
  ansible-test --version
  (cd "$dest" && ansible-test sanity --venv --python "$PYTHON_VERSION" --color no)
}

# --------------------------------------------------------------------------------------------- end-to-end
e2e() {
  local v=$1 conn=${MATRIX_CONNECTION:-}
  if [[ -z $conn ]]; then
    if [[ $PARAMIKO == *" $v "* ]]; then conn=paramiko; else conn=ssh; fi
  fi
  echo "ansible-core $v, connection $conn"
  PATH="$OUT/$v/venv/bin:$PATH" MATRIX_VERSION=$v MATRIX_CONNECTION=$conn MATRIX_OUT=$OUT/$v/e2e \
    MATRIX_COLLECTIONS=$OUT/collection \
    "$OUT/$v/venv/bin/python" -m pytest -p no:cacheprovider -v --durations=0 tests/matrix/test_e2e.py
  local rc=$?
  echo "warnings of the playbook runs ($OUT/$v/e2e/warnings.txt):"
  sort "$OUT/$v/e2e/warnings.txt" 2>/dev/null | uniq -c
  return $rc
}

# step NAME VERSION FUNCTION: runs FUNCTION VERSION with its output in .build/matrix/VERSION/NAME.log and
# records "PASS|FAIL seconds" in .build/matrix/VERSION/NAME.result.
step() {
  local name=$1 v=$2 fn=$3 start rc res
  start=$(now)
  mkdir -p "$OUT/$v"
  ( "$fn" "$v" ) >"$OUT/$v/$name.log" 2>&1
  rc=$?
  if ((rc == 0)); then res=PASS; else res=FAIL; fi
  echo "$res $(secs "$start")" >"$OUT/$v/$name.result"
  echo "$(date +%H:%M:%S) $res  $v $name ($(secs "$start")s)  .build/matrix/$v/$name.log"
  if ((rc != 0)); then
    grep -v -e "^WARNING: Location 'file:" "$OUT/$v/$name.log" | tail -n 30 | sed 's/^/    /'
  fi
  return $rc
}

skip() { mkdir -p "$OUT/$2"; echo "SKIP -" >"$OUT/$2/$1.result"; }

# ------------------------------------------------------------------------------------------------- main
start_all=$(now)
for v in "${VERSIONS[@]}"; do rm -f "$OUT/$v"/*.result; done

echo "=== venvs and the collection snapshot"
t=$(now)
pids=()
for v in "${VERSIONS[@]}"; do
  step venv "$v" make_venv &
  pids+=($!)
done
snapshot || { echo "matrix: could not copy the collection"; exit 1; }
for p in "${pids[@]}"; do wait "$p"; done
VENV_SECONDS=$(secs "$t")

sanity_stream() {
  for v in "${VERSIONS[@]}"; do
    if [[ $(cut -d' ' -f1 "$OUT/$v/venv.result") != PASS ]]; then skip sanity "$v"; continue; fi
    if [[ $SANITY_SKIP == *" $v "* ]]; then skip sanity "$v"; continue; fi
    step sanity "$v" sanity
  done
}

e2e_stream() {
  local todo=()
  for v in "${VERSIONS[@]}"; do
    [[ $E2E_SKIP == *" $v "* || $(cut -d' ' -f1 "$OUT/$v/venv.result") != PASS ]] && skip e2e "$v" || todo+=("$v")
  done
  ((${#todo[@]})) || return 0
  bash tests/testbed/testbed.sh up >"$OUT/testbed.log" 2>&1 || { echo "matrix: test bed not up, see $OUT/testbed.log"
                                                              for v in "${todo[@]}"; do echo "FAIL 0" >"$OUT/$v/e2e.result"; done; return 1; }
  # up to MATRIX_E2E_JOBS versions at once: each on its own pools, mostly waiting on the clusters and ssh
  local running=0 rc=0
  for v in "${todo[@]}"; do
    if ((running >= E2E_JOBS)); then wait -n || rc=1; ((running--)); fi
    step e2e "$v" e2e &
    ((running++))
  done
  while ((running > 0)); do wait -n || rc=1; ((running--)); done
  return $rc
}

echo "=== sanity and end-to-end runs, side by side"
sanity_stream &
sp=$!
e2e_stream &
ep=$!
wait "$sp"
wait "$ep"

total=$(secs "$start_all")
table() {
  printf '%-8s %-14s %-14s %-14s\n' version venv sanity e2e
  local v s res sec row
  for v in "${VERSIONS[@]}"; do
    row=()
    for s in venv sanity e2e; do
      read -r res sec 2>/dev/null <"$OUT/$v/$s.result" || { res=FAIL; sec=-; }
      if [[ $res == SKIP ]]; then row+=("SKIP"); else row+=("$res ${sec}s"); fi
    done
    printf '%-8s %-14s %-14s %-14s\n' "$v" "${row[@]}"
  done
  echo "venvs (in parallel): ${VENV_SECONDS}s; total ${total}s"
}
echo
echo "=== ansible-core matrix"
table >"$OUT/summary.txt"
cat "$OUT/summary.txt"
if grep -q FAIL "$OUT/summary.txt"; then echo "matrix: FAIL"; exit 1; fi
echo "matrix: PASS"
