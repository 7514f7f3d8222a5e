"""A short end-to-end run of the nightly playbook on one ansible-core version (tests/matrix/run.sh).

Run with the python of that version's virtualenv (.build/matrix/<ver>/venv). Everything is real: the two
test bed clusters, ssh (or paramiko), and ``ceph_rbd.backup.replicate`` through ansible-runner, as AWX runs
it. The tests are steps of one story on one pool pair and run in file order:

1. first run: every image is sent in full; the backup snapshot is byte-identical on both clusters;
2. incremental run after unique random bytes were written: byte-identical again;
3. ``--check`` run after another write: nothing changes on either cluster;
4. one image fails (a foreign write on its backup's head), the others go through; the set_stats summary
   read from the ansible-runner events names it.

Environment (set by run.sh):
  MATRIX_VERSION     the ansible-core minor under test (names the pools: matrix-216 ...)
  MATRIX_CONNECTION  paramiko (default) or ssh: the connection plugin of every task
  MATRIX_COLLECTIONS the collections path the playbook runs from (default .build/collections)
  MATRIX_OUT         where the ansible-runner directories (events, stdout) are kept
"""

import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import ansible
import ansible_runner
import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = os.environ.get('MATRIX_VERSION') or '.'.join(ansible.__version__.split('.')[:2])
CONNECTION = os.environ.get('MATRIX_CONNECTION', 'paramiko')
COLLECTIONS = os.environ.get('MATRIX_COLLECTIONS') or str(REPO / '.build' / 'collections')
OUT = Path(os.environ.get('MATRIX_OUT') or REPO / '.build' / 'matrix' / VERSION)
POOL = 'matrix-' + VERSION.replace('.', '')
IMAGES = ('vm-1', 'vm-2', 'vm-3')
MiB = 1 << 20
# the test bed's ssh key (root's, from the passwd entry: HOME may point elsewhere, see Runner)
KEY = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, '.ssh', 'id_ed25519')

# The integration suite's helpers (Cluster, Bed): the real rbd/ceph CLI and librbd, nothing faked.
_spec = importlib.util.spec_from_file_location('integration_conftest', REPO / 'tests' / 'integration' / 'conftest.py')
it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(it)


def test_this_is_the_version_under_test():
    assert '.'.join(ansible.__version__.split('.')[:2]) == VERSION, ansible.__version__
    assert Path(ansible.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), \
        'ansible must come from this venv (%s), not from %s' % (sys.prefix, ansible.__file__)


@pytest.fixture(scope='module')
def bed():
    if it.rados is None:
        pytest.fail('python3-rados/python3-rbd must import: the matrix venvs are made with --system-site-packages')
    env = it._env_file(os.path.join(os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'), 'env.sh'))
    b = it.Bed(env)
    for c in (b.src, b.dst):
        c.remove_pool(POOL)   # a leftover of an interrupted run
        c.create_pool(POOL)
    yield b
    for c in (b.src, b.dst):
        c.remove_pool(POOL)


class Runner:
    """ansible-runner on the replicate playbook, with the connection under test."""

    def __init__(self, bed):
        self.bed = bed
        self.n = 0
        OUT.mkdir(parents=True, exist_ok=True)
        self.env = bed.ansible_env()
        self.env['ANSIBLE_COLLECTIONS_PATH'] = COLLECTIONS
        # what each version warns about (deprecations included) is kept in warnings.txt, not failed on
        self.env['ANSIBLE_DEPRECATION_WARNINGS'] = 'True'
        (OUT / 'warnings.txt').write_text('')
        self.extravars = {}
        if CONNECTION == 'paramiko':
            # paramiko reads known_hosts only from ~/.ssh (it ignores ansible_ssh_common_args): a HOME of our
            # own holds the test bed's known_hosts, so host keys are still checked (a missing key would make
            # ansible prompt, and the run fail). The ssh plugin is made unusable, so a task that did not go
            # through paramiko fails the run.
            home = OUT / 'home'
            (home / '.ssh').mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.join(bed.dir, 'ssh', 'known_hosts'), home / '.ssh' / 'known_hosts')
            self.env.update(HOME=str(home), ANSIBLE_SSH_EXECUTABLE='/bin/false',
                            ANSIBLE_PARAMIKO_RECORD_HOST_KEYS='False')
            self.extravars = dict(ansible_connection='paramiko',
                                  ansible_ssh_private_key_file=KEY)

    def __call__(self, name, check=False, **role):
        self.n += 1
        pdd = OUT / ('runner-%d-%s' % (self.n, name))
        shutil.rmtree(pdd, ignore_errors=True)
        pdd.mkdir(parents=True)
        extravars = it.role_vars(POOL, **role)
        extravars.update(self.extravars)
        r = ansible_runner.run(private_data_dir=str(pdd), playbook='ceph_rbd.backup.replicate',
                               inventory=self.bed.inventory, extravars=extravars, envvars=self.env,
                               cmdline='--check' if check else None, quiet=True, timeout=600)
        r.events_list = list(r.events)
        r.text = ''.join(e.get('stdout', '') + '\n' for e in r.events_list)
        warnings = [line for line in r.text.splitlines() if 'WARNING]' in line]
        with open(OUT / 'warnings.txt', 'a') as f:
            f.writelines('%s: %s\n' % (name, line) for line in warnings)
        return r


def summary_of(r):
    """The set_stats summary AWX shows as the job's artifacts (the playbook_on_stats event)."""
    stats = [e for e in r.events_list if e['event'] == 'playbook_on_stats']
    assert stats, r.text[-6000:]
    return stats[0]['event_data']['artifact_data']['rbd_replicate']['source']


def newest(cluster, image):
    snaps = [s for s in cluster.snaps(POOL, image) if s.startswith('backup-')]
    return snaps[-1] if snaps else None


def assert_identical(bed, image):
    """The newest backup snapshot is the same on both clusters, byte for byte (rbd export | sha256)."""
    snap = newest(bed.dst, image)
    assert snap and snap == newest(bed.src, image), (bed.src.snaps(POOL, image), bed.dst.snaps(POOL, image))
    src, dst = bed.src.export_sha(POOL, image, snap), bed.dst.export_sha(POOL, image, snap)
    assert src == dst, '%s@%s differs: source %s, backup %s' % (image, snap, src, dst)
    return snap, src


def state(bed):
    """Snapshot lists on both sides and the backup heads' digests: what a --check run must not change."""
    return dict(src={i: bed.src.snaps(POOL, i) for i in IMAGES},
                dst={i: (bed.dst.snaps(POOL, i), bed.dst.export_sha(POOL, i)) for i in IMAGES})


@pytest.fixture(scope='module')
def run(bed):
    return Runner(bed)


@pytest.fixture(scope='module')
def story():
    return {}


def test_first_run_sends_every_image(bed, run, story):
    sizes = {'vm-1': 8 * MiB, 'vm-2': 4 * MiB, 'vm-3': 4 * MiB + 4096}
    for n, image in enumerate(IMAGES):
        bed.src.create(POOL, image, sizes[image])
        bed.src.write(POOL, image, 0, it.random_data(MiB))
        bed.src.write(POOL, image, 2 * MiB + 512 * n, it.random_data(4096 + 17 * n))
    r = run('first')
    assert (r.status, r.rc) == ('successful', 0), r.text[-6000:]
    s = summary_of(r)
    assert (s['images'], s['ok'], s['failed'], s['failed_images']) == (3, 3, 0, []), s
    assert {p['image']: p['action'] for p in s['per_image']} == dict.fromkeys(IMAGES, 'initial'), s['per_image']
    assert s['bytes'] >= 3 * MiB
    for image in IMAGES:
        assert bed.dst.size(POOL, image) == sizes[image]
        story[image] = assert_identical(bed, image)


def test_incremental_run_after_a_change_is_byte_identical(bed, run, story):
    bed.src.write(POOL, 'vm-1', 5 * MiB + 123, it.random_data(MiB + 7))
    r = run('incremental')
    assert (r.status, r.rc) == ('successful', 0), r.text[-6000:]
    s = summary_of(r)
    assert (s['images'], s['ok'], s['failed']) == (3, 3, 0), s
    per = {p['image']: p for p in s['per_image']}
    assert per['vm-1']['action'] == 'incremental' and per['vm-1']['base'] == story['vm-1'][0], per['vm-1']
    assert per['vm-1']['bytes'] >= MiB
    snap, digest = assert_identical(bed, 'vm-1')
    assert snap != story['vm-1'][0] and digest != story['vm-1'][1], 'the change did not arrive'
    for image in ('vm-2', 'vm-3'):   # nothing written: a new snapshot, the same bytes
        assert per[image]['action'] != 'initial', per[image]
        assert assert_identical(bed, image)[1] == story[image][1]
    assert len(bed.dst.snaps(POOL, 'vm-1')) == 2


def test_check_run_changes_nothing(bed, run):
    bed.src.write(POOL, 'vm-2', MiB, it.random_data(8192))   # something a real run would send
    before = state(bed)
    r = run('check', check=True)
    assert (r.status, r.rc) == ('successful', 0), r.text[-6000:]
    assert state(bed) == before


def test_one_image_failing_does_not_stop_the_others(bed, run):
    bed.dst.write(POOL, 'vm-2', 0, it.random_data(4096))   # a foreign write on the backup's head
    bed.src.write(POOL, 'vm-1', 0, it.random_data(MiB))
    dst_before = {i: bed.dst.snaps(POOL, i) for i in IMAGES}
    r = run('one-fails')
    assert r.status == 'failed' and r.rc != 0, r.text[-6000:]
    s = summary_of(r)
    assert (s['images'], s['ok'], s['failed']) == (3, 2, 1), s
    assert s['failed_images'] == ['%s/vm-2' % POOL], s
    failed = [p for p in s['per_image'] if p.get('failed')]
    assert any('modified' in e for e in failed[0]['errors']), failed
    assert 'vm-2' in r.text and 'image(s) failed' in r.text, r.text[-6000:]
    assert bed.dst.snaps(POOL, 'vm-2') == dst_before['vm-2']
    for image in ('vm-1', 'vm-3'):
        assert len(bed.dst.snaps(POOL, image)) == len(dst_before[image]) + 1
        assert_identical(bed, image)


def test_the_runs_went_through_the_connection_under_test(bed, run):
    # With paramiko the ssh plugin's executable is /bin/false, so a task that had used it would have failed
    # the runs above. Here, the same settings ad hoc with -vvv: ansible names the connection it establishes.
    args = [os.path.join(os.path.dirname(sys.executable), 'ansible'), 'source', '-i', bed.inventory,
            '-m', 'ansible.builtin.ping', '-vvv', '-e', json.dumps(run.extravars)]
    out = subprocess.run(args, capture_output=True, text=True, env=run.env, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    established = 'ESTABLISH PARAMIKO SSH CONNECTION' if CONNECTION == 'paramiko' else 'ESTABLISH SSH CONNECTION'
    assert established in out.stdout, out.stdout[-4000:]
