"""Fixtures for tests against the two real test clusters (tests/testbed/testbed.sh).

Nothing here fakes Ceph: every helper runs the real ``rbd``/``ceph`` CLI, librbd, ssh and
ansible.  Each test gets its own pool pair so tests do not see each other's images.
"""

import hashlib
import itertools
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTBED = REPO / 'tests' / 'testbed' / 'testbed.sh'
COLLECTIONS = REPO / '.build' / 'collections'

try:
    import rados
    import rbd as librbd
except ImportError:  # pragma: no cover - the venv is made with --system-site-packages
    rados = librbd = None

_counter = itertools.count()


def _env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith('export '):
            k, _sep, v = line[len('export '):].partition('=')
            env[k] = v.strip('"\'')
    return env


class Cluster:
    """One test cluster, driven through the real CLI and librbd."""

    def __init__(self, name, conf, keyring):
        self.name, self.conf, self.keyring = name, conf, keyring
        self._rados = None

    def args(self):
        return ['--conf', self.conf, '--keyring', self.keyring, '--id', 'admin']

    def ceph_args(self):
        return dict(conf=self.conf, keyring=self.keyring, user='admin')

    def run(self, *args, tool='rbd', check=True, timeout=120, input=None):
        proc = subprocess.run([tool] + self.args() + list(args), capture_output=True, timeout=timeout,
                              input=input, check=False)
        if check and proc.returncode != 0:
            raise AssertionError('%s %s failed rc=%s: %s' % (
                tool, ' '.join(args), proc.returncode, proc.stderr.decode(errors='replace')))
        return proc

    def rbd_json(self, *args):
        return json.loads(self.run(*(args + ('--format', 'json'))).stdout or b'null')

    def create_pool(self, pool):
        self.run('osd', 'pool', 'create', pool, '8', tool='ceph')
        self.run('osd', 'pool', 'application', 'enable', pool, 'rbd', tool='ceph')
        self.run('pool', 'init', pool)

    def remove_pool(self, pool):
        self.run('osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it', tool='ceph', check=False)

    @property
    def cluster(self):
        if self._rados is None:
            self._rados = rados.Rados(conffile=self.conf, conf={'keyring': self.keyring,
                                                                'rados_osd_op_timeout': '60'})
            self._rados.connect(timeout=60)
        return self._rados

    def create(self, pool, image, size):
        self.run('create', '--size', '%dB' % size, '--pool', pool, '--image', image)

    def write(self, pool, image, offset, data):
        with self.cluster.open_ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                img.write(data, offset)

    def read(self, pool, image, offset, length, snap=None):
        with self.cluster.open_ioctx(pool) as io:
            with librbd.Image(io, image, snapshot=snap, read_only=True) as img:
                return img.read(offset, length)

    def snaps(self, pool, image):
        return [s['name'] for s in sorted(self.rbd_json('snap', 'ls', '--pool', pool, '--image', image),
                                          key=lambda s: s['id'])]

    def snap(self, pool, image, name):
        self.run('snap', 'create', '--pool', pool, '--image', image, '--snap', name)

    def images(self, pool):
        return sorted(self.rbd_json('ls', '--pool', pool) or [])

    def size(self, pool, image, snap=None):
        args = ['info', '--pool', pool, '--image', image] + (['--snap', snap] if snap else [])
        return self.rbd_json(*args)['size']

    def export_sha(self, pool, image, snap=None):
        """sha256 of ``rbd export [img@snap] -``: what the issues call byte-identical."""
        args = ['export', '--no-progress', '--pool', pool, '--image', image] + \
            (['--snap', snap] if snap else []) + ['-']
        proc = subprocess.Popen(['rbd'] + self.args() + args, stdout=subprocess.PIPE)
        h = hashlib.sha256()
        for chunk in iter(lambda: proc.stdout.read(1 << 20), b''):
            h.update(chunk)
        assert proc.wait(timeout=300) == 0
        return h.hexdigest()

    def state(self, pool):
        """Every image's snapshots and head digest: to prove that nothing changed."""
        return dict((img, (self.snaps(pool, img), self.export_sha(pool, img))) for img in self.images(pool))

    def meta(self, pool, image):
        return self.rbd_json('image-meta', 'list', '--pool', pool, '--image', image) or {}


def random_data(n, seed=None):
    """Unique random bytes (rbd bench writes constant bytes, which prove nothing)."""
    return random.Random(seed).randbytes(n) if seed is not None else os.urandom(n)


def mixed_chunk(n, seed=None):
    """Half random data, half zeros: import-diff re-sparsifies the zeros."""
    return random_data(n // 2, seed) + b'\0' * (n - n // 2)


class Bed:
    def __init__(self, env):
        self.env = env
        self.src = Cluster('source', env['SRC_CONF'], env['SRC_KEYRING'])
        self.dst = Cluster('backup', env['DST_CONF'], env['DST_KEYRING'])
        self.inventory = env['INVENTORY']
        self.dir = env['RBD_TESTBED_DIR']

    def ansible_env(self):
        env = dict(os.environ)
        env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
        env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_DEPRECATION_WARNINGS='False',
                   ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_SYSTEM_WARNINGS='False', ANSIBLE_PYTHON_INTERPRETER='/usr/bin/python3')
        return env

    def playbook(self, *args, extra=None, check=False, expect_rc=0, playbook='ceph_rbd.backup.replicate'):
        cmd = ['ansible-playbook', '-i', self.inventory, playbook]
        if extra:
            cmd += ['-e', json.dumps(extra)]
        if check:
            cmd.append('--check')
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.ansible_env(), timeout=900, check=False)
        out = proc.stdout + proc.stderr
        if expect_rc is not None:
            assert proc.returncode == expect_rc, out[-6000:]
        return out

    def module(self, host, name, args, check=False, diff=False, expect_failed=False):
        """Run one module ad hoc (``ansible HOST -m ceph_rbd.backup.NAME -a JSON``); return its result."""
        tree = tempfile.mkdtemp(prefix='rbd-tree-')
        try:
            cmd = ['ansible', host, '-i', self.inventory, '-m', 'ceph_rbd.backup.' + name,
                   '-a', json.dumps(args), '--tree', tree]
            if check:
                cmd.append('--check')
            if diff:
                cmd.append('--diff')
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.ansible_env(), timeout=900, check=False)
            path = os.path.join(tree, host)
            assert os.path.exists(path), proc.stdout + proc.stderr
            with open(path) as f:
                result = json.load(f)
            result['_stdout'] = proc.stdout   # the tree callback drops 'diff'; ansible prints it here
            result['_warnings'] = ' '.join(proc.stderr.split())   # ... and 'warnings' (here, possibly wrapped)
            result['failed'] = proc.returncode != 0   # ... and 'failed': the exit code tells
        finally:
            shutil.rmtree(tree, ignore_errors=True)
        assert bool(result.get('failed')) == expect_failed, json.dumps(result, indent=1)[-6000:]
        return result

    def host_sh(self, host, *argv, timeout=120):
        """Run argv on a bed host over ssh (in its mount namespace and with its release's tools: a host of a
        newer release lives in a root of its own, tests/testbed/testbed.sh) and return its stdout."""
        addr = self.env['SRC_HOST' if host == 'source' else 'DST_HOST']
        proc = subprocess.run(['ssh', '-p', self.env.get('SSH_PORT', '2222'), '-o', 'BatchMode=yes',
                               '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % self.dir, 'root@' + addr,
                               shlex.join(argv)], capture_output=True, text=True, timeout=timeout, check=False)
        assert proc.returncode == 0, '%s on %s: rc=%s %s' % (shlex.join(argv), host, proc.returncode, proc.stderr)
        return proc.stdout

    def src_module(self, name, args, **kw):
        args = dict(args)
        args.setdefault('ceph', self.src.ceph_args())
        return self.module('source', name, args, **kw)

    def dst_module(self, name, args, **kw):
        args = dict(args)
        args.setdefault('ceph', self.dst.ceph_args())
        return self.module('backup', name, args, **kw)

    def pull_args(self):
        """The rbd_diff_transfer connection options for pull mode (runs on backup, reads source)."""
        return dict(remote=dict(host=self.env['SRC_HOST'], port=int(self.env.get('SSH_PORT', 2222)), user='root',
                                options=['-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % self.dir,
                                         '-o', 'StrictHostKeyChecking=yes'],
                                ceph=self.src.ceph_args()))

    def push_args(self):
        args = self.pull_args()
        args['remote'].update(host=self.env['DST_HOST'], ceph=self.dst.ceph_args())
        args['mode'] = 'push'
        return args


@pytest.fixture(scope='session')
def bed():
    if rados is None:
        pytest.fail('python3-rados/python3-rbd must import: run the tests from the .venv that make test builds')
    subprocess.run(['bash', str(TESTBED), 'up'], check=True, timeout=900)
    env = _env_file(os.path.join(os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'), 'env.sh'))
    return Bed(env)


@pytest.fixture
def pools(bed, request):
    """A fresh pool of the same name on both clusters, removed afterwards."""
    # unique across pytest-xdist workers (each has its own counter) and across runs
    name = 't%d-%d-%s' % (os.getpid() % 10000, next(_counter),
                          request.node.name[:20].replace('[', '-').replace(']', '').replace('_', '-'))
    bed.src.create_pool(name)
    bed.dst.create_pool(name)
    yield name
    bed.src.remove_pool(name)
    bed.dst.remove_pool(name)


def role_vars(pool, **extra):
    out = dict(rbd_replicate_pools=[dict(pool=pool)])
    out.update(extra)
    return out
