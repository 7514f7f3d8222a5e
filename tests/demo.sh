#!/usr/bin/env bash
# make demo: two throwaway clusters, some data, the nightly playbook twice with changes between, a report.
set -euo pipefail
cd "$(dirname "$0")/.."
export ANSIBLE_COLLECTIONS_PATH="$PWD/.build/collections" ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=False
bash tests/testbed/testbed.sh up
# shellcheck disable=SC1091
source "${RBD_TESTBED_DIR:-/tmp/rbd-testbed}/env.sh"
POOL=demo
py=.venv/bin/python
# Run a python snippet (stdin) with `bed` (both test clusters, tests/integration/conftest.py) and `pool` set.
with_bed() {
  $py -c "import os, sys
sys.path.insert(0, 'tests/integration')
from conftest import Bed, _env_file, mixed_chunk, random_data
bed = Bed(_env_file(os.environ['RBD_TESTBED_DIR'] + '/env.sh'))
pool = sys.argv[1]
exec(sys.stdin.read())" "$POOL"
}

echo "== demo: a fresh pool '$POOL' on both clusters with three images of random data and zero runs"
with_bed <<'PY'
for c in (bed.src, bed.dst):
    c.remove_pool(pool)
    c.create_pool(pool)
for i, name in enumerate(['vm-101-disk-0', 'vm-102-disk-0', 'db data (prod)']):
    bed.src.create(pool, name, 256 << 20)
    for k in range(6):
        bed.src.write(pool, name, k * (8 << 20), mixed_chunk(4 << 20))
PY

run() {
  ansible-playbook -i "$INVENTORY" ceph_rbd.backup.replicate \
    -e "{\"rbd_replicate_pools\": [{\"pool\": \"$POOL\"}]}" "$@" </dev/null 2>&1 | sed -n '/Show the summary/,/PLAY RECAP/p'
}
echo "== night 1: first run copies every image"
run
echo "== during the day: 4 MiB changes in one image"
with_bed <<'PY'
bed.src.write(pool, 'vm-101-disk-0', 100 << 20, random_data(4 << 20))
PY
echo "== what tonight would do (--check changes nothing)"
run --check
sleep 1
echo "== night 2: only the changed blocks travel"
run
echo "== report: every snapshot on both sides, rbd export | sha256sum"
with_bed <<'PY'
ok = True
for image in bed.src.images(pool):
    for snap in bed.dst.snaps(pool, image):
        a, b = bed.src.export_sha(pool, image, snap), bed.dst.export_sha(pool, image, snap)
        ok &= a == b
        print('%-16s %-26s source %s backup %s %s' % (image, snap, a[:12], b[:12], 'OK' if a == b else 'DIFFERENT'))
print('demo: all replicated snapshots identical' if ok else 'demo: MISMATCH')
sys.exit(0 if ok else 1)
PY
