#!/usr/bin/env bash
# Quality gates of the collection (make lint). Each gate prints PASS or FAIL; the script exits non-zero
# when any gate failed. All gates run even after a failure, so one run shows everything.
#
#   sanity        ansible-test sanity --venv --python 3.11 on a copy of the collection under
#                 .build/sanity/ansible_collections/ceph_rbd/backup (ansible-test refuses a symlinked root)
#   ansible-lint  ansible-lint --profile production over the whole collection (config: .ansible-lint)
#   docs          ansible-doc renders every module, filter and role of the collection, with nothing on stderr
#   build         ansible-galaxy collection build; checks the tarball's file list and size; installs it into
#                 a temporary path and runs ansible-doc and a playbook syntax check from the installed copy
#
# Usage: scripts/lint.sh [GATE...]   (default: all four, in that order). Logs: .build/lint/GATE.log
#
# Needs the .venv made by scripts/bootstrap.sh (with ansible-lint) and PyPI for ansible-test's per-test
# virtualenvs (cached in ~/.ansible/test/venv after the first run). Nothing else is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
COLLECTION=ceph_rbd.backup
PYTHON_VERSION=3.11
MAX_TARBALL_BYTES=$((1024 * 1024))

export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/collections"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 NO_COLOR=1 PY_COLORS=0
export ANSIBLE_DEPRECATION_WARNINGS=true
exec </dev/null

LOGS=$ROOT/.build/lint
mkdir -p "$LOGS"
FAILED=()
SUMMARY=()

log() { printf '%s\n' "$*"; }

# run_gate NAME FUNCTION: runs FUNCTION with its output in .build/lint/NAME.log, prints PASS/FAIL.
run_gate() {
  local name=$1 fn=$2 start rc elapsed
  start=$(date +%s)
  log "=== $name"
  "$fn" >"$LOGS/$name.log" 2>&1
  rc=$?
  elapsed=$(($(date +%s) - start))
  if ((rc == 0)); then
    SUMMARY+=("PASS  $name (${elapsed}s)")
    log "PASS  $name (${elapsed}s)"
  else
    FAILED+=("$name")
    SUMMARY+=("FAIL  $name (${elapsed}s)  see .build/lint/$name.log")
    log "FAIL  $name (${elapsed}s) - last lines of .build/lint/$name.log:"
    grep -v -e "^WARNING: Location 'file:" "$LOGS/$name.log" | tail -n 40 | sed 's/^/    /'
  fi
}

# The files of the collection as git sees them: tracked and untracked-but-not-ignored, still present.
collection_files() {
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -e $f || -L $f ]] && printf '%s\0' "$f"
  done
}

# ---------------------------------------------------------------------------------------------- sanity
# ansible-test's pip bootstrap downloads get-pip.py from ci-files.testing.ansible.com, which is not a
# package registry and unreachable here. This stand-in at its cache path bootstraps pip with ensurepip
# (Debian's python3-venv wheels) and then asks pip for the pinned pip from the index. A real cached
# get-pip.py is left alone.
install_pip_bootstrap() {
  local pip_version cache
  # The pip version ansible-test pins (24.2 for ansible-core 2.19) names its cache file.
  pip_version=$(python -c 'import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="'"$PYTHON_VERSION"'"))["pip"])') || return 1
  cache=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
  [[ -s $cache ]] && return 0
  mkdir -p "$(dirname "$cache")"
  echo "writing the offline pip bootstrap $cache"
  cat >"$cache" <<'EOF'
# Offline stand-in for ansible-test's get-pip.py, written by ceph_rbd.backup scripts/lint.sh.
# ansible-test runs it as: python get_pip.py [pip options] pip==X [--no-setuptools] [--no-wheel]
import ensurepip
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
ensurepip.bootstrap(upgrade=True)
if any(not a.startswith('-') for a in args):
    # Bring pip to the version ansible-test pins; keep ensurepip's pip if the index is unreachable.
    subprocess.call([sys.executable, '-m', 'pip', 'install', '-q'] + args)
EOF
}

gate_sanity() {
  local dest=$ROOT/.build/sanity/ansible_collections/ceph_rbd/backup
  install_pip_bootstrap || return 1
  # A real copy (ansible-test resolves a symlinked collection root to the repo, which is not under
  # ansible_collections/), refreshed but keeping tests/output (ansible-test's delegation venv) and .git.
  mkdir -p "$dest"
  find "$dest" -mindepth 1 -maxdepth 1 ! -name .git ! -name tests -exec rm -rf {} +
  if [[ -d $dest/tests ]]; then
    find "$dest/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
  fi
  collection_files | tar --null -T - -cf - | tar -xf - -C "$dest" || return 1
  # Its own git repository: otherwise ansible-test finds the repo's .git above it, in which .build/ is
  # ignored, and sees no files at all. It lists untracked files, so nothing needs to be committed.
  [[ -d $dest/.git ]] || git -C "$dest" init -q || return 1
  (cd "$dest" && ansible-test sanity --venv --python "$PYTHON_VERSION" --color no)
}

# ------------------------------------------------------------------------------------------ ansible-lint
gate_ansible_lint() {
  ansible-lint --version && ansible-lint --profile production --offline --nocolor
}

# ---------------------------------------------------------------------------------------------- docs
# plugin_names TYPE: the FQCNs ansible-doc lists for the collection; fails on an undocumented plugin
# (a filter without its plugins/filter/NAME.yml is listed as UNDOCUMENTED).
plugin_names() {
  local type=$1 json
  json=$(ansible-doc -t "$type" -l --json "$COLLECTION") || return 1
  python -c '
import json, sys
plugins = json.loads(sys.argv[1])
bad = sorted(k for k, v in plugins.items() if v == "UNDOCUMENTED")
for name in bad:
    print("undocumented %s: %s" % (sys.argv[2], name), file=sys.stderr)
print(" ".join(sorted(plugins)))
sys.exit(1 if bad else 0)' "$json" "$type"
}

# doc_check TYPE NAME...: ansible-doc (text and JSON) must succeed and print nothing on stderr.
doc_check() {
  local type=$1 err
  shift
  err=$(mktemp)
  for fmt in text json; do
    local args=(-t "$type")
    [[ $fmt == json ]] && args+=(--json)
    if ! ansible-doc "${args[@]}" "$@" >"$err.out" 2>"$err"; then
      echo "ansible-doc ${args[*]} $* failed:"; cat "$err"; rm -f "$err" "$err.out"; return 1
    fi
    if [[ -s $err ]]; then
      echo "ansible-doc ${args[*]} $* wrote to stderr:"; cat "$err"; rm -f "$err" "$err.out"; return 1
    fi
  done
  echo "ansible-doc -t $type renders: $*"
  rm -f "$err" "$err.out"
}

# check_docs: every module, filter and role of the collection on ANSIBLE_COLLECTIONS_PATH.
check_docs() {
  local modules filters roles n rc=0
  # Lists every plugin, documented or not; an undocumented one is reported and fails the gate.
  modules=$(plugin_names module) || rc=1
  filters=$(plugin_names filter) || rc=1
  roles=$(ansible-doc -t role -l --json "$COLLECTION" | python -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))') || rc=1
  echo "modules: $modules"; echo "filters: $filters"; echo "roles: $roles"
  # shellcheck disable=SC2086
  doc_check module $modules || rc=1
  # shellcheck disable=SC2086
  doc_check filter $filters || rc=1
  # shellcheck disable=SC2086
  check_filter_docs $filters || rc=1
  # shellcheck disable=SC2086
  doc_check role $roles || rc=1
  # A module that fails to load is silently missing from the list: every file must be there.
  n=$(find "$ROOT/plugins/modules" -name '*.py' ! -name '__init__.py' | wc -l)
  if [[ $(wc -w <<<"$modules") -ne $n ]]; then
    echo "ansible-doc lists $(wc -w <<<"$modules") modules, plugins/modules has $n files"; rc=1
  fi
  n=$(find "$ROOT/roles" -mindepth 1 -maxdepth 1 -type d | wc -l)
  if [[ $(wc -w <<<"$roles") -ne $n ]]; then
    echo "ansible-doc lists $(wc -w <<<"$roles") roles, roles/ has $n"; rc=1
  fi
  return $rc
}

# check_filter_docs FQCN...: each filter's docs are complete, use valid types, and document exactly the
# function's arguments (first one as _input; required = no default). validate-modules skips filters.
check_filter_docs() {
  local json f
  # One call for all; when one filter's docs break it, one call per filter (the broken ones are left out
  # here; doc_check reports them).
  json=$(ansible-doc -t filter --json "$@" 2>/dev/null) \
    || json=$(for f; do ansible-doc -t filter --json "$f" 2>/dev/null; done | python -c 'import json, sys
text, pos, out = sys.stdin.read(), 0, {}
while text[pos:].strip():
    obj, end = json.JSONDecoder().raw_decode(text[pos:].lstrip())
    out.update(obj)
    pos += len(text[pos:]) - len(text[pos:].lstrip()) + end
print(json.dumps(out))')
  PYTHONPATH=$ANSIBLE_COLLECTIONS_PATH python - "$json" <<'EOF'
import glob, importlib, inspect, json, os, sys
from ansible.module_utils.common.parameters import DEFAULT_TYPE_VALIDATORS

TYPES = set(DEFAULT_TYPE_VALIDATORS) | {'any', 'raw'}
errors = []
for fqcn, entry in sorted(json.loads(sys.argv[1]).items()):
    doc, ret = entry.get('doc') or {}, entry.get('return') or {}
    where = '%s (%s)' % (fqcn, doc.get('filename'))
    for key in ('name', 'short_description', 'description', 'author', 'version_added', 'options'):
        if not doc.get(key):
            errors.append('%s: DOCUMENTATION.%s is missing' % (where, key))
    if not (entry.get('examples') or '').strip():
        errors.append('%s: EXAMPLES is missing' % where)
    if not (ret.get('_value') or {}).get('type'):
        errors.append('%s: RETURN._value.type is missing' % where)
    values = dict(doc.get('options') or {}, _value=ret.get('_value') or {})
    for name, spec in values.items():
        if spec.get('type', 'str') not in TYPES:
            errors.append('%s: %s has an unknown type %r' % (where, name, spec.get('type')))
        if not spec.get('description'):
            errors.append('%s: %s has no description' % (where, name))
    ns, col, short = fqcn.split('.')
    func = None
    plugin_dir = os.path.join(os.environ['PYTHONPATH'], 'ansible_collections', ns, col, 'plugins', 'filter')
    for py in sorted(glob.glob(os.path.join(plugin_dir, '*.py'))):
        mod = importlib.import_module('ansible_collections.%s.%s.plugins.filter.%s'
                                      % (ns, col, os.path.splitext(os.path.basename(py))[0]))
        func = mod.FilterModule().filters().get(short) if hasattr(mod, 'FilterModule') else None
        if func:
            break
    if func is None:
        errors.append('%s: no filter plugin exports %s' % (where, short))
        continue
    params = list(inspect.signature(func).parameters.values())
    want = dict((('_input' if i == 0 else p.name), p.default is inspect.Parameter.empty)
                for i, p in enumerate(params) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    have = dict((k, bool(v.get('required'))) for k, v in (doc.get('options') or {}).items())
    if sorted(want) != sorted(have):
        errors.append('%s: options %s, but %s() takes %s' % (where, sorted(have), func.__name__, sorted(want)))
    for k in set(want) & set(have):
        if want[k] != have[k]:
            errors.append('%s: %s is %srequired in the docs but %s in the code'
                          % (where, k, '' if have[k] else 'not ', 'required' if want[k] else 'optional'))
print('\n'.join(errors) or 'filter docs match the code: %s' % ' '.join(sorted(json.loads(sys.argv[1]))))
sys.exit(1 if errors else 0)
EOF
}

gate_docs() {
  # The collection as the repo has it (scripts/bootstrap.sh links .build/collections/.../backup to it).
  [[ -e $ANSIBLE_COLLECTIONS_PATH/ansible_collections/ceph_rbd/backup/galaxy.yml ]] || {
    echo "$ANSIBLE_COLLECTIONS_PATH/ansible_collections/ceph_rbd/backup is missing: run make deps"; return 1; }
  check_docs
}

# ---------------------------------------------------------------------------------------------- build
gate_build() {
  local tmp rc
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/ceph_rbd-build.XXXXXX") || return 1
  build_and_install "$tmp"
  rc=$?
  rm -rf "$tmp"
  return $rc
}

build_and_install() {
  local tmp=$1 tarball size listing bad
  ansible-galaxy collection build --force --output-path "$tmp/dist" . || return 1
  tarball=$(ls "$tmp"/dist/ceph_rbd-backup-*.tar.gz) || return 1
  size=$(stat -c %s "$tarball")
  listing=$(tar -tzf "$tarball")
  echo "$tarball: $size bytes, $(wc -l <<<"$listing") entries"
  echo "$listing"
  bad=$(grep -E '(^|/)(\.venv|\.build|\.git|\.pytest_cache|__pycache__|\.ansible|\.cache)(/|$)|^tests/output(/|$)|^bench/results(/|$)|\.(pyc|tar\.gz|retry)$' <<<"$listing")
  if [[ -n $bad ]]; then
    echo "the tarball holds files that build_ignore in galaxy.yml should keep out:"; echo "$bad"; return 1
  fi
  for f in MANIFEST.json FILES.json LICENSE meta/runtime.yml playbooks/replicate.yml \
           roles/rbd_replicate/meta/argument_specs.yml plugins/filter/replication.py; do
    grep -qx "$f" <<<"$listing" || { echo "the tarball lacks $f"; return 1; }
  done
  grep -q 'example.invalid' galaxy.yml && { echo "galaxy.yml has placeholder URLs"; return 1; }
  if ((size > MAX_TARBALL_BYTES)); then
    echo "the tarball is $size bytes, more than $MAX_TARBALL_BYTES: something that should not ship is in it"
    return 1
  fi
  ANSIBLE_COLLECTIONS_PATH=$tmp/installed \
    ansible-galaxy collection install --offline --force -p "$tmp/installed" "$tarball" || return 1
  (
    export ANSIBLE_COLLECTIONS_PATH=$tmp/installed
    installed=$tmp/installed/ansible_collections/ceph_rbd/backup
    [[ -d $installed && ! -L $installed ]] || { echo "not installed at $installed"; exit 1; }
    check_docs || exit 1
    ansible-playbook -i localhost, --syntax-check "$COLLECTION.replicate" || exit 1
    # The docs must come from the installed copy, not from the repo.
    out=$(ansible-doc -t module "$COLLECTION.rbd_snapshot") || exit 1
    [[ $out == *"$installed/"* ]] || { echo "ansible-doc did not read the installed copy"; exit 1; }
  )
}

# ---------------------------------------------------------------------------------------------- main
gates=("$@")
((${#gates[@]})) || gates=(sanity ansible-lint docs build)
start=$(date +%s)
for g in "${gates[@]}"; do
  case $g in
    sanity) run_gate sanity gate_sanity ;;
    ansible-lint) run_gate ansible-lint gate_ansible_lint ;;
    docs) run_gate docs gate_docs ;;
    build) run_gate build gate_build ;;
    *) echo "unknown gate $g (sanity, ansible-lint, docs, build)"; exit 2 ;;
  esac
done
log ""
log "=== lint summary ($(($(date +%s) - start))s)"
printf '%s\n' "${SUMMARY[@]}"
if ((${#FAILED[@]})); then
  log "FAIL: ${FAILED[*]}"
  exit 1
fi
log "PASS: all gates"
