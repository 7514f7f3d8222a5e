#!/usr/bin/env bash
# Quality gates of the collection (make lint). Each gate prints PASS or FAIL; the script exits non-zero
# when any gate failed. All gates run even after a failure, so one run shows everything.
#
#   sanity        ansible-test sanity --venv --python 3.11 on a copy of the collection under
#                 .build/sanity/ansible_collections/ceph_rbd/backup (ansible-test refuses a symlinked root)
#   ansible-lint  ansible-lint --profile production over the whole collection (config: .ansible-lint)
#   docs          ansible-doc renders every module, filter and role of the collection, with nothing on stderr
#   build         ansible-galaxy collection build; checks the tarball's file list (no bench/, scripts/, Makefile,
#                 caches, virtualenvs, build output: scripts/check_release.py tarball) and size; installs it into
#                 a temporary path and runs ansible-doc and a playbook syntax check from the installed copy
#   changelog     antsibull-changelog lint and lint-changelog-yaml; a consistent release: no breaking changes,
#                 deprecations, removals or bugfixes before the first release, no fragments pending for a
#                 released version, CHANGELOG.rst/.md generated from changelogs/changelog.yaml
#   version       one version (scripts/check_release.py versions): galaxy.yml's against the changelog (the last
#                 release, or the next one its pending fragments call for), CHANGELOG.md/.rst, the README's
#                 install lines and EE image tag, the EE definition's collection entry, every version_added
#   galaxy-importer  galaxy-importer (what Galaxy runs on upload; no ansible-test, no container) on the built
#                 tarball: fails on an import error, an unaccepted WARNING/ERROR, a plugin or role without docs
#   docs-lint     antsibull-docs lint-collection-docs --plugin-docs on the collection with its guides
#                 (scripts/docs.sh --stage): schema, markup and references of every plugin, the role, extra docs
#
# Usage: scripts/lint.sh [GATE...]   (default: all eight, in that order). Logs: .build/lint/GATE.log
#
# Needs the .venv made by scripts/bootstrap.sh (with ansible-lint) and PyPI for ansible-test's per-test
# virtualenvs (cached in ~/.ansible/test/venv after the first run), and for the tools of the last three gates:
# each in its own virtualenv under .build/tools/, made on first use (scripts/tools.sh). Nothing else is
# downloaded.
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
# shellcheck source=scripts/tools.sh
source "$ROOT/scripts/tools.sh"

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
  # A gate may leave notes (what it accepted, and why) in .build/lint/NAME.notes: shown even on PASS.
  rm -f "$LOGS/$name.notes"
  "$fn" >"$LOGS/$name.log" 2>&1
  rc=$?
  elapsed=$(($(date +%s) - start))
  if ((rc == 0)); then
    SUMMARY+=("PASS  $name (${elapsed}s)")
    log "PASS  $name (${elapsed}s)"
    if [[ -s $LOGS/$name.notes ]]; then sed "s/^/    note: /" "$LOGS/$name.notes"; fi
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
  # What must not ship (the repository's tools, caches, virtualenvs, build output): the rules and their reasons
  # are TARBALL_FORBIDDEN in scripts/check_release.py, tested in tests/unit/scripts/.
  if ! bad=$(python scripts/check_release.py tarball <<<"$listing"); then
    echo "$bad"; echo "the tarball holds files that build_ignore in galaxy.yml should keep out (above)"; return 1
  fi
  echo "$bad"
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

# ---------------------------------------------------------------------------------------------- changelog
# antsibull-changelog lint (fragments) and lint-changelog-yaml, then what makes a release consistent:
# galaxy.yml's version is not older than the last release; fragments pending for an already released version
# fail (bump galaxy.yml); before the first release nothing can be broken, deprecated, removed or fixed, so
# fragments hold release_summary, major_changes, minor_changes, known_issues (or trivial); once released,
# CHANGELOG.rst and CHANGELOG.md are what `antsibull-changelog generate` makes of changelogs/changelog.yaml.
gate_changelog() {
  local bin
  bin=$(tool_venv antsibull-changelog) || return 1
  (
    export PATH="$bin:$PATH"
    unset ANSIBLE_COLLECTIONS_PATH
    antsibull-changelog --version
    antsibull-changelog lint || { echo "antsibull-changelog lint: the fragments above are invalid"; exit 1; }
    antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml || exit 1
    check_changelog_consistency || exit 1
    check_changelog_generated
  )
}

check_changelog_consistency() {
  python - <<'EOF'
import glob, os, sys
import yaml
from packaging.version import Version

errors = []
version = Version(str(yaml.safe_load(open('galaxy.yml'))['version']))
changes = yaml.safe_load(open('changelogs/changelog.yaml')) or {}
released = sorted(Version(v) for v in (changes.get('releases') or {}))
config = yaml.safe_load(open('changelogs/config.yaml'))
sections = [s[0] for s in config['sections']] + [config.get('prelude_section_name', 'release_summary'),
                                                   config.get('trivial_section_name', 'trivial')]
fragments = {}
for path in sorted(glob.glob('changelogs/fragments/*.yml') + glob.glob('changelogs/fragments/*.yaml')):
    fragments[path] = yaml.safe_load(open(path)) or {}
pending = {p: sorted(k for k in f if k != 'trivial') for p, f in fragments.items()}
pending = {p: s for p, s in pending.items() if s}
print('galaxy.yml version %s; released: %s; fragments: %d (%d with entries)'
      % (version, ', '.join(map(str, released)) or 'none', len(fragments), len(pending)))
if released and version < released[-1]:
    errors.append('galaxy.yml version %s is older than the last release %s' % (version, released[-1]))
if version in released and pending:
    errors.append('%s is released, but fragments are pending: bump version in galaxy.yml (%s)'
                  % (version, ', '.join(sorted(pending))))
if not released:
    first = ('breaking_changes', 'deprecated_features', 'removed_features', 'bugfixes', 'security_fixes')
    for path, frag in fragments.items():
        for section in first:
            if section in frag:
                errors.append('%s: section %s before the first release (%s): nothing was released that it could '
                              'change or fix; say what %s does (major_changes/minor_changes/known_issues) or use '
                              'trivial' % (path, section, version, version))
    if pending and not any('release_summary' in f for f in fragments.values()):
        errors.append('the first release (%s) has no release_summary fragment' % version)
    for name in ('CHANGELOG.rst', 'CHANGELOG.md'):
        if os.path.exists(name):
            errors.append('%s exists but changelogs/changelog.yaml has no release' % name)
for e in errors:
    print('ERROR: ' + e)
sys.exit(1 if errors else 0)
EOF
}

# Once a release exists: CHANGELOG.rst/.md must be what antsibull-changelog generates from changelog.yaml (it
# reads the plugins from there, so a copy of galaxy.yml and changelogs/ is enough).
check_changelog_generated() {
  local tmp rc=0 f
  python -c 'import sys, yaml; sys.exit(0 if (yaml.safe_load(open("changelogs/changelog.yaml")) or {}).get("releases") else 1)' \
    || { echo "no release yet: no CHANGELOG to compare"; return 0; }
  tmp=$(mktemp -d)
  mkdir -p "$tmp/changelogs"
  cp galaxy.yml "$tmp/"
  cp changelogs/config.yaml changelogs/changelog.yaml "$tmp/changelogs/"
  (cd "$tmp" && antsibull-changelog generate) || { rm -rf "$tmp"; return 1; }
  for f in CHANGELOG.rst CHANGELOG.md; do
    if ! diff -u "$f" "$tmp/$f"; then
      echo "$f is not what antsibull-changelog generate makes of changelogs/changelog.yaml (above): run it"
      rc=1
    fi
  done
  rm -rf "$tmp"
  ((rc == 0)) && echo "CHANGELOG.rst and CHANGELOG.md match changelogs/changelog.yaml"
  return $rc
}

# ---------------------------------------------------------------------------------------------- version
# One version: galaxy.yml, the changelog, the README and the EE example agree. The rule (G = galaxy.yml's version,
# L = the newest release in changelogs/changelog.yaml; the docstring of scripts/check_release.py has it in full):
#   * no fragment pending (trivial ones aside): G == L - the tree is that release;
#   * fragments pending: G is not released and is the release right after L that they call for - next major for
#     breaking_changes/removed_features, next minor (or major) for major_changes/minor_changes/deprecated_features,
#     else next patch (or minor, or major); before the first release only G >= 1.0.0 (the gate changelog checks
#     the fragments);
#   * CHANGELOG.md's and CHANGELOG.rst's newest section is L;
#   * README.md (and roles' README.md) give the collection G and only G - the tarball ceph_rbd-backup-G.tar.gz,
#     ceph_rbd.backup:G, the EE image tag ceph-rbd-backup-ee:G - and README.md has an install line;
#   * meta/execution-environment.yml installs this collection, at G if it names a version;
#   * every version_added under plugins/ and roles/ is a released version or G.
gate_version() {
  python scripts/check_release.py versions .
}

# ------------------------------------------------------------------------------------------ galaxy-importer
# galaxy-importer (what Galaxy runs on an upload) on the tarball `ansible-galaxy collection build` makes:
# metadata, ansible-doc of every plugin, the role's README, ansible-lint (Galaxy's own flags), the changelog.
# No container and no ansible-test (RUN_ANSIBLE_TEST false; the gate sanity runs it). Fails on an import
# error, on any ERROR or WARNING line of the import log not in GALAXY_ACCEPTED_WARNINGS, and when a module,
# a documented filter or the role has no docs in the result.
#
# Accepted warnings, each with its reason (ERE, matched against the whole line):
GALAXY_ACCEPTED_WARNINGS=(
  # tests/sanity/ignore-2.19.txt ships: shebangs of scripts that are not modules, and pylint/pep8 findings in
  # tests/integration (owned by the integration suite). Galaxy tells users that sanity tests are skipped.
  '^WARNING: Ignore files skip ansible-test sanity tests, found ignore-2\.[0-9]+\.txt with [0-9]+ statement\(s\)$'
)
# galaxy.yml names no repository (there is no public one yet: see .ansible-lint's skip of
# galaxy[no-repository]), and Galaxy refuses such an import. The gate reports that refusal, then imports the
# same tarball with a stand-in URL in MANIFEST.json to check everything else. Once galaxy.yml has a
# repository, this path is never taken.
GALAXY_STANDIN_REPOSITORY=https://repository.invalid/ceph_rbd/backup

gate_galaxy_importer() {
  local bin tmp rc
  bin=$(tool_venv galaxy-importer) || return 1
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/ceph_rbd-galaxy.XXXXXX") || return 1
  galaxy_import "$bin" "$tmp"
  rc=$?
  rm -rf "$tmp"
  return $rc
}

# galaxy_importer_run BIN TARBALL LOG: runs the importer in the tarball's directory (its result JSON lands there).
galaxy_importer_run() {
  local bin=$1 tarball=$2 log=$3
  (
    cd "$(dirname "$tarball")" || exit 1
    export PATH="$bin:$PATH" GALAXY_IMPORTER_CONFIG=$ROOT/.build/galaxy-importer/galaxy-importer.cfg
    unset ANSIBLE_COLLECTIONS_PATH
    "$bin/python" -m galaxy_importer.main "$(basename "$tarball")"
  ) >"$log" 2>&1
  local rc=$?
  cat "$log"
  return $rc
}

galaxy_import() {
  local bin=$1 tmp=$2 tarball rc bad pattern line accepted
  mkdir -p "$ROOT/.build/galaxy-importer" "$tmp/ansible-tmp"
  cat >"$ROOT/.build/galaxy-importer/galaxy-importer.cfg" <<EOF
# Written by scripts/lint.sh (gate galaxy-importer).
[galaxy-importer]
RUN_ANSIBLE_TEST = False
ANSIBLE_TEST_LOCAL_IMAGE = False
LOCAL_IMAGE_DOCKER = False
RUN_ANSIBLE_DOC = True
RUN_ANSIBLE_LINT = True
OFFLINE_ANSIBLE_LINT = True
RUN_FLAKE8 = False
CHECK_CHANGELOG = True
REQUIRE_V1_OR_GREATER = True
LOG_LEVEL_MAIN = INFO
ANSIBLE_LOCAL_TMP = $tmp/ansible-tmp
EOF
  echo "galaxy-importer $("$bin/python" -c 'import importlib.metadata as m; print(m.version("galaxy-importer"))')," \
    "config .build/galaxy-importer/galaxy-importer.cfg"
  ansible-galaxy collection build --force --output-path "$tmp/dist" . || return 1
  tarball=$(ls "$tmp"/dist/ceph_rbd-backup-*.tar.gz) || return 1
  galaxy_importer_run "$bin" "$tarball" "$tmp/import.log"
  rc=$?
  if ((rc != 0)) && grep -q "'repository' is required" "$tmp/import.log" \
     && ! grep -qE '^repository:' galaxy.yml; then
    echo
    echo "KNOWN: Galaxy refuses this tarball: galaxy.yml has no repository (no public one exists yet)." \
      | tee -a "$LOGS/galaxy-importer.notes"
    echo "Importing the same tarball again with repository $GALAXY_STANDIN_REPOSITORY in MANIFEST.json"
    echo "to check everything else."
    mkdir -p "$tmp/standin"
    python - "$tarball" "$tmp/standin/$(basename "$tarball")" "$GALAXY_STANDIN_REPOSITORY" <<'EOF' || return 1
import io, json, sys, tarfile
src, dst, url = sys.argv[1:]
with tarfile.open(src) as tin, tarfile.open(dst, 'w:gz') as tout:
    for member in tin.getmembers():
        data = tin.extractfile(member).read() if member.isfile() else None
        if member.name == 'MANIFEST.json':
            manifest = json.loads(data)
            manifest['collection_info']['repository'] = url
            data = json.dumps(manifest, indent=4).encode()
            member.size = len(data)
        tout.addfile(member, io.BytesIO(data) if data is not None else None)
EOF
    tarball=$tmp/standin/$(basename "$tarball")
    galaxy_importer_run "$bin" "$tarball" "$tmp/import.log"
    rc=$?
  fi
  if ((rc != 0)) || ! grep -q '^Importer processing completed successfully' "$tmp/import.log"; then
    echo "galaxy-importer: the import failed (rc=$rc)"
    return 1
  fi
  bad=0
  while IFS= read -r line; do
    accepted=false
    for pattern in "${GALAXY_ACCEPTED_WARNINGS[@]}"; do
      [[ $line =~ $pattern ]] && accepted=true
    done
    if $accepted; then
      echo "accepted (see GALAXY_ACCEPTED_WARNINGS): $line" | tee -a "$LOGS/galaxy-importer.notes"
    else
      echo "galaxy-importer: $line"
      bad=1
    fi
  done < <(grep -E '^(WARNING|ERROR|CRITICAL)' "$tmp/import.log")
  # Every module, every filter documented in plugins/filter/*.yml and every role carry their docs.
  python - "$(dirname "$tarball")/importer_result.json" <<'EOF' || bad=1
import glob, json, os, sys
result = json.load(open(sys.argv[1]))
docs = {(c['content_type'], c['content_name']): c for c in result['docs_blob']['contents']}
want = [('module', os.path.basename(p)[:-3]) for p in glob.glob('plugins/modules/*.py') if not p.endswith('__init__.py')]
want += [('filter', os.path.basename(p)[:-4]) for p in glob.glob('plugins/filter/*.yml')]
want += [('role', os.path.basename(p)) for p in glob.glob('roles/*') if os.path.isdir(p)]
errors = []
for kind, name in sorted(want):
    entry = docs.get((kind, name))
    if entry is None:
        errors.append('%s %s is not in the import result' % (kind, name))
    elif kind == 'role' and not entry.get('readme_html'):
        errors.append('role %s has no README on Galaxy' % name)
    elif kind != 'role' and not entry.get('doc_strings'):
        errors.append('%s %s has no docs on Galaxy' % (kind, name))
for e in errors:
    print('galaxy-importer result: ' + e)
print('import result: %d contents, %d checked for docs, requires_ansible %s'
      % (len(result['contents']), len(want), result.get('requires_ansible')))
sys.exit(1 if errors else 0)
EOF
  return $bad
}

# ---------------------------------------------------------------------------------------------- docs-lint
# antsibull-docs lint-collection-docs on the collection as scripts/docs.sh stages it (with the guides made from
# README.md): every plugin's and the role's docs against antsibull-docs' schema and markup (O(), M(), ... refer
# to options and plugins that exist, here and in ansible.builtin), the extra docs and their references, rstcheck.
gate_docs_lint() {
  local bin stage
  bin=$(tool_venv antsibull-docs) || return 1
  stage=$(bash scripts/docs.sh --stage | tail -n 1) || return 1
  [[ -f $stage/galaxy.yml && -f $stage/docs/docsite/extra-docs.yml ]] || { echo "docs.sh --stage made no $stage"; return 1; }
  (
    export PATH="$bin:$PATH" ANSIBLE_COLLECTIONS_PATH=$ROOT/.build/docs-src
    antsibull-docs --version
    antsibull-docs lint-collection-docs --plugin-docs --check-extra-docs-refs \
      --validate-collection-refs all --disallow-unknown-collection-refs "$stage" \
      && echo "antsibull-docs lint-collection-docs: no errors in $stage"
  )
}

# ---------------------------------------------------------------------------------------------- main
gates=("$@")
((${#gates[@]})) || gates=(sanity ansible-lint docs build changelog version galaxy-importer docs-lint)
start=$(date +%s)
for g in "${gates[@]}"; do
  case $g in
    sanity) run_gate sanity gate_sanity ;;
    ansible-lint) run_gate ansible-lint gate_ansible_lint ;;
    docs) run_gate docs gate_docs ;;
    build) run_gate build gate_build ;;
    changelog) run_gate changelog gate_changelog ;;
    version) run_gate version gate_version ;;
    galaxy-importer) run_gate galaxy-importer gate_galaxy_importer ;;
    docs-lint) run_gate docs-lint gate_docs_lint ;;
    *) echo "unknown gate $g (sanity, ansible-lint, docs, build, changelog, version, galaxy-importer, docs-lint)"; exit 2 ;;
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
