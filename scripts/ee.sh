#!/usr/bin/env bash
# make ee: the execution environment definition (meta/execution-environment.yml) checked with
# ansible-builder, without building an image (no podman/docker and no registry on the build machine).
#
#   1. ansible-builder (pinned below) in its own virtualenv .build/tools/ansible-builder, made on first use
#      from PyPI (it must not share .venv with the ansible-core/ansible-lint pins of tests/requirements.txt).
#   2. Stages .build/ee/def/: the definition as it is, bindep.txt and the collection tarball
#      (ansible-galaxy collection build) as ceph_rbd-backup.tar.gz, the layout the definition expects.
#   3. ansible-builder create -> .build/ee/context/ (Containerfile and _build/), then checks that the context
#      holds what the definition says: base image, python, ansible-core and ansible-runner pins, the very
#      tarball just built (ceph_rbd.backup at galaxy.yml's version) in the galaxy requirements and copied
#      in before the galaxy stage, the system requirements, the introspection step.
#   4. Installs the tarball into .build/ee/collections and runs ansible-builder introspect on it, the step
#      an EE build runs for every collection it installs: the collection's system requirements must be
#      exactly bindep.txt's lines (an ssh client among them), its python requirements exactly those of the
#      file dependencies.python names (none today).
#   5. Checks the reason there are none: the code that runs on the controller (plugins other than modules,
#      and the module_utils they import) imports only the standard library, ansible and the collection.
#      A new third-party import there must be declared (requirements.txt + dependencies.python).
#
# Every check prints PASS or FAIL; the script exits non-zero when any failed. Output: .build/ee/.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
ANSIBLE_BUILDER_PIN="ansible-builder==3.2.0"
TOOL=$ROOT/.build/tools/ansible-builder
OUT=$ROOT/.build/ee
DEF=$ROOT/meta/execution-environment.yml
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1
exec </dev/null

start=$(date +%s.%N)
FAILED=()
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILED+=("$1"); }
elapsed() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(date +%s.%N)"; }

# ------------------------------------------------------------------------------------- 1. the tool
t=$(date +%s.%N)
if [[ ! -x $TOOL/bin/ansible-builder || $(cat "$TOOL/.requirements" 2>/dev/null) != "$ANSIBLE_BUILDER_PIN" ]]; then
  echo "ee: installing $ANSIBLE_BUILDER_PIN into $TOOL"
  rm -rf "$TOOL"
  /usr/bin/python3 -m venv "$TOOL" || exit 1
  "$TOOL/bin/python" -m pip install -q --disable-pip-version-check "$ANSIBLE_BUILDER_PIN" 2>&1 \
    | grep -v "^WARNING: Location 'file:" || true
  "$TOOL/bin/ansible-builder" --version >/dev/null 2>&1 || { echo "ee: ansible-builder did not install"; rm -rf "$TOOL"; exit 1; }
  printf '%s' "$ANSIBLE_BUILDER_PIN" >"$TOOL/.requirements"
fi
echo "ee: ansible-builder $("$TOOL/bin/ansible-builder" --version) ($(elapsed "$t") s)"

# ------------------------------------------------------------------------------------- 2. staging
rm -rf "$OUT"
mkdir -p "$OUT/def" "$OUT/dist"
[[ -f $DEF ]] || { fail definition "$DEF is missing"; exit 1; }
# The file names the definition uses (system, additional_build_files) must be next to it, as they are
# at the collection root.
cp "$DEF" "$OUT/def/execution-environment.yml"
system_file=$("$TOOL/bin/python" -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))["dependencies"]
print(d.get("system") if isinstance(d.get("system"), str) else "")' "$DEF") || { fail definition "cannot read $DEF"; exit 1; }
python_file=$("$TOOL/bin/python" -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))["dependencies"]
print(d.get("python") if isinstance(d.get("python"), str) else "")' "$DEF")
for f in $system_file $python_file; do
  [[ -f $f ]] || { fail definition "meta/execution-environment.yml names $f, which the collection root lacks"; exit 1; }
  cp "$f" "$OUT/def/$f"
done
t=$(date +%s.%N)
ansible-galaxy collection build --force --output-path "$OUT/dist" . >"$OUT/galaxy-build.log" 2>&1 \
  || { cat "$OUT/galaxy-build.log"; fail tarball "ansible-galaxy collection build failed"; exit 1; }
tarball=$(ls "$OUT"/dist/ceph_rbd-backup-*.tar.gz)
cp "$tarball" "$OUT/def/ceph_rbd-backup.tar.gz"
echo "ee: staged $OUT/def ($(basename "$tarball"), $(elapsed "$t") s)"

# ------------------------------------------------------------------------------------- 3. create
t=$(date +%s.%N)
if (cd "$OUT/def" && "$TOOL/bin/ansible-builder" create -f execution-environment.yml -c "$OUT/context" \
      --output-filename Containerfile -v 2) >"$OUT/create.log" 2>&1; then
  pass "ansible-builder create ($(elapsed "$t") s): $OUT/context"
else
  sed 's/^/    /' "$OUT/create.log"
  fail create "ansible-builder create rejected meta/execution-environment.yml"
fi

if [[ -f $OUT/context/Containerfile ]]; then
  if "$TOOL/bin/python" - "$DEF" "$OUT/context" "$tarball" "$system_file" <<'EOF'
import hashlib, json, os, re, sys, tarfile, yaml

definition, context, tarball, system_file = sys.argv[1:5]
d = yaml.safe_load(open(definition))
deps = d['dependencies']
cf = open(os.path.join(context, 'Containerfile')).read()
build = os.path.join(context, '_build')
errors = []

def arg(name):
    m = re.search(r'^ARG %s="(.*)"$' % name, cf, re.M)
    return m.group(1) if m else None

def sha(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()

if arg('EE_BASE_IMAGE') != d['images']['base_image']['name']:
    errors.append('base image %r, the definition says %r' % (arg('EE_BASE_IMAGE'), d['images']['base_image']['name']))
if arg('PYCMD') != deps['python_interpreter']['python_path']:
    errors.append('python %r, the definition says %r' % (arg('PYCMD'), deps['python_interpreter']['python_path']))
refs = (arg('ANSIBLE_INSTALL_REFS') or '').split()
for key in ('ansible_core', 'ansible_runner'):
    if deps[key]['package_pip'] not in refs:
        errors.append('%s %r is not installed (ANSIBLE_INSTALL_REFS %r)' % (key, deps[key]['package_pip'], refs))
if not re.match(r'ansible-core>=2\.16\b', deps['ansible_core']['package_pip']):
    errors.append('ansible-core must start at 2.16 (meta/runtime.yml requires_ansible)')

# the collection: the tarball just built, named in the galaxy requirements, copied in before galaxy runs
reqs = yaml.safe_load(open(os.path.join(build, 'requirements.yml')))
names = [c['name'] for c in reqs.get('collections', [])]
copied = [os.path.join(build, 'collection', os.path.basename(n)) for n in names if n.startswith('/build/collection/')]
if not copied:
    errors.append('the galaxy requirements %r do not name the collection tarball' % names)
for path in copied:
    if not os.path.isfile(path):
        errors.append('%s is not in the context' % path)
    elif sha(path) != sha(tarball):
        errors.append('%s is not the tarball just built' % path)
    else:
        with tarfile.open(path) as tar:
            info = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
            members = set(tar.getnames())
        galaxy = yaml.safe_load(open('galaxy.yml'))
        if (info['namespace'], info['name'], info['version']) != (galaxy['namespace'], galaxy['name'], galaxy['version']):
            errors.append('the tarball holds %(namespace)s.%(name)s %(version)s' % info)
        for need in ('meta/execution-environment.yml', system_file, 'meta/runtime.yml', 'roles/rbd_replicate/meta/argument_specs.yml'):
            if need and need not in members:
                errors.append('the tarball lacks %s' % need)
copy_at = cf.find('COPY _build/collection /build/collection')
galaxy_at = cf.find('ansible-galaxy collection install')
if not 0 <= copy_at < galaxy_at:
    errors.append('the tarball is not copied into the image before "ansible-galaxy collection install"')
if 'introspect.py introspect' not in cf:
    errors.append('the Containerfile has no introspection step')

# system requirements: the context's bindep file is the collection's
if system_file:
    if not os.path.isfile(os.path.join(build, 'bindep.txt')):
        errors.append('_build/bindep.txt is missing')
    elif open(os.path.join(build, 'bindep.txt')).read() != open(system_file).read():
        errors.append('_build/bindep.txt differs from %s' % system_file)

for e in errors:
    print('    ' + e)
print('    Containerfile: base %s, %s, installs %s; galaxy: %s; system: %s'
      % (arg('EE_BASE_IMAGE'), arg('PYCMD'), ' '.join(refs), ' '.join(names), system_file or '-'))
sys.exit(1 if errors else 0)
EOF
  then
    pass "the build context holds what meta/execution-environment.yml says"
  else
    fail context "the build context does not match meta/execution-environment.yml"
  fi
else
  fail context "no Containerfile in $OUT/context"
fi

# ------------------------------------------------------------------------------------- 4. introspect
t=$(date +%s.%N)
ansible-galaxy collection install --offline --force -p "$OUT/collections" "$tarball" >"$OUT/install.log" 2>&1 \
  || { cat "$OUT/install.log"; fail install "the tarball does not install"; }
if "$TOOL/bin/ansible-builder" introspect --write-pip "$OUT/introspect-requirements.txt" \
     --write-bindep "$OUT/introspect-bindep.txt" "$OUT/collections" >"$OUT/introspect.yml" 2>"$OUT/introspect.err"; then
  if "$TOOL/bin/python" - "$OUT/introspect.yml" "$system_file" "$python_file" <<'EOF'
import sys, yaml

out, system_file, python_file = sys.argv[1:4]
data = yaml.safe_load(open(out))
tag = '  # from collection ceph_rbd.backup'

def lines(path):
    if not path:
        return []
    return [ln.split('#')[0].strip() for ln in open(path) if ln.split('#')[0].strip()]

errors = []
for kind, path in (('system', system_file), ('python', python_file)):
    got = [ln[:-len(tag)] for ln in data.get(kind) or [] if ln.endswith(tag)]
    want = lines(path)
    if kind == 'python':
        # introspect drops what every EE has anyway (ansible-core, pyyaml, test tools)
        want = [w for w in want if w.split('>')[0].split('=')[0].split('<')[0].strip().lower()
                not in ('ansible-core', 'pyyaml', 'pytest', 'ansible-lint', 'molecule')]
    if got != want:
        errors.append('introspect lists %s requirements %r, %s says %r' % (kind, got, path or 'the definition (none)', want))
    print('    %s: %s' % (kind, ', '.join(got) or '(none)'))
if not any(w.startswith('openssh-client') for w in lines(system_file)):
    errors.append('no ssh client among the system requirements: Ansible\'s ssh connection needs one')
for e in errors:
    print('    ' + e)
sys.exit(1 if errors else 0)
EOF
  then
    pass "ansible-builder introspect ($(elapsed "$t") s) lists the collection's requirements as declared"
  else
    fail introspect "ansible-builder introspect disagrees with the declared requirements ($OUT/introspect.yml)"
  fi
else
  sed 's/^/    /' "$OUT/introspect.err"
  fail introspect "ansible-builder introspect failed on the installed collection"
fi

# ------------------------------------------------------------------------------------- 5. controller imports
if "$TOOL/bin/python" - "$python_file" <<'EOF'
import ast, os, sys

PREFIX = 'ansible_collections.ceph_rbd.backup.'
declared = set()
if sys.argv[1]:
    for ln in open(sys.argv[1]):
        ln = ln.split('#')[0].strip()
        if ln:
            declared.add(ln.split('>')[0].split('=')[0].split('<')[0].split('[')[0].strip().lower().replace('-', '_'))

# controller side: every plugin type but modules (they run on the Ceph hosts), then the module_utils they import
todo = []
for kind in sorted(os.listdir('plugins')):
    if kind not in ('modules', 'module_utils') and os.path.isdir(os.path.join('plugins', kind)):
        todo += [os.path.join('plugins', kind, f) for f in sorted(os.listdir(os.path.join('plugins', kind))) if f.endswith('.py')]
seen, bad = set(), []
while todo:
    path = todo.pop()
    if path in seen or not os.path.isfile(path):
        continue
    seen.add(path)
    for node in ast.walk(ast.parse(open(path).read(), path)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            if name.startswith(PREFIX):
                todo.append(os.path.join(*name[len(PREFIX):].split('.')) + '.py')
                continue
            top = name.split('.')[0]
            if top in sys.stdlib_module_names or top in ('ansible', '__future__') or top.lower() in declared:
                continue
            bad.append('%s imports %s' % (path, name))
print('    controller-side files: %s' % ' '.join(sorted(seen)))
for b in bad:
    print('    %s: not in the standard library nor declared in dependencies.python' % b)
sys.exit(1 if bad else 0)
EOF
then
  pass "the controller-side code needs no Python package beyond ansible-core"
else
  fail imports "controller-side code imports a package the EE does not declare"
fi

echo "ee: $(elapsed "$start") s in all; context $OUT/context, introspection $OUT/introspect.yml"
if ((${#FAILED[@]})); then
  echo "FAIL: ${FAILED[*]}"
  exit 1
fi
echo "PASS: execution environment definition"
