"""The two test-bed clusters, driven through the real rbd/ceph CLI and librbd.

The bench's own drivers: what it needs of the test bed (tests/testbed/testbed.sh writes env.sh), written
for the bench.  The integration tests have theirs in tests/integration/conftest.py; nothing here imports
test code.
"""

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import yaml

from .common import REPO

COLLECTIONS = REPO / '.build' / 'collections'
# over the caller's environment in every ansible run: the repository's collection, plain output
ANSIBLE_ENV = dict(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_DEPRECATION_WARNINGS='False',
                   ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_RETRY_FILES_ENABLED='False',
                   ANSIBLE_SYSTEM_WARNINGS='False', ANSIBLE_PYTHON_INTERPRETER='/usr/bin/python3')

try:
    import rados
    import rbd as librbd
except ImportError:  # pragma: no cover - the .venv is made with --system-site-packages
    rados = librbd = None


def env_file(path: str) -> Dict[str, str]:
    """The ``export K=V`` lines of a shell file (the test bed's env.sh) as a dict."""
    pairs = (line[len('export '):].partition('=') for line in Path(path).read_text().splitlines()
             if line.startswith('export '))
    return dict((key, value.strip('"\'')) for key, _eq, value in pairs)


def testbed_env() -> Dict[str, str]:
    """The running test bed's env.sh ($RBD_TESTBED_DIR, default /tmp/rbd-testbed)."""
    return env_file(os.path.join(os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'), 'env.sh'))


def quoted(argv: List[str]) -> str:
    """An argv as one shell word list."""
    return ' '.join(shlex.quote(a) for a in argv)


class Cluster:
    """One test cluster, driven through the real CLI and librbd."""

    def __init__(self, name: str, conf: str, keyring: str):
        self.name, self.conf, self.keyring = name, conf, keyring
        self._rados = None

    def args(self) -> List[str]:
        return ['--conf', self.conf, '--keyring', self.keyring, '--id', 'admin']

    def ceph_args(self) -> Dict[str, str]:
        """The collection modules' connection options for this cluster."""
        return dict(conf=self.conf, keyring=self.keyring, user='admin')

    def run(self, *args: str, tool: str = 'rbd', check: bool = True,
            timeout: int = 120) -> subprocess.CompletedProcess:
        """``TOOL <this cluster> ARGS...``; with check, a non-zero exit raises AssertionError."""
        proc = subprocess.run([tool] + self.args() + list(args), capture_output=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError('%s %s failed rc=%s: %s' % (
                tool, ' '.join(args), proc.returncode, proc.stderr.decode(errors='replace')))
        return proc

    def create_pool(self, pool: str) -> None:
        self.run('osd', 'pool', 'create', pool, '8', tool='ceph')
        self.run('osd', 'pool', 'application', 'enable', pool, 'rbd', tool='ceph')
        self.run('pool', 'init', pool)

    def remove_pool(self, pool: str) -> None:
        self.run('osd', 'pool', 'rm', pool, pool, '--yes-i-really-really-mean-it', tool='ceph', check=False)

    @property
    def cluster(self) -> 'rados.Rados':
        """A librados connection, made on first use."""
        if self._rados is None:
            self._rados = rados.Rados(conffile=self.conf, conf={'keyring': self.keyring,
                                                                'rados_osd_op_timeout': '60'})
            self._rados.connect(timeout=60)
        return self._rados

    def create(self, pool: str, image: str, size: int) -> None:
        self.run('create', '--size', '%dB' % size, '--pool', pool, '--image', image)

    def write(self, pool: str, image: str, offset: int, data: bytes) -> None:
        with self.cluster.open_ioctx(pool) as io:
            with librbd.Image(io, image) as img:
                img.write(data, offset)

    def snap(self, pool: str, image: str, name: str) -> None:
        self.run('snap', 'create', '--pool', pool, '--image', image, '--snap', name)


class Bed:
    """The test bed: source and backup clusters, the inventory, the ssh route to the backup host."""

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.src = Cluster('source', env['SRC_CONF'], env['SRC_KEYRING'])
        self.dst = Cluster('backup', env['DST_CONF'], env['DST_KEYRING'])
        self.inventory = env['INVENTORY']
        self.dir = env['RBD_TESTBED_DIR']
        self.ssh_port = str(env.get('SSH_PORT', 2222))
        # the old script's route to the backup host: OpenSSH's default cipher, no ControlMaster
        self.ssh = ['ssh', '-p', self.ssh_port, '-o', 'BatchMode=yes',
                    '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % self.dir,
                    '-o', 'StrictHostKeyChecking=yes', 'root@%s' % env.get('DST_HOST', '127.0.0.3')]

    def second_hosts(self) -> Dict[str, str]:
        """The test bed's second sshd per cluster (same clusters, same keys, in known_hosts): name -> address."""
        return dict(source2=self.env.get('SRC2_HOST', '127.0.0.4'), backup2=self.env.get('DST2_HOST', '127.0.0.5'))

    def second_hosts_missing(self) -> List[str]:
        """Those of the second hosts whose sshd does not answer (a test bed started before they existed)."""
        missing = []
        for name, addr in self.second_hosts().items():
            try:
                socket.create_connection((addr, int(self.ssh_port)), timeout=5).close()
            except OSError:
                missing.append('%s (%s:%s)' % (name, addr, self.ssh_port))
        return missing

    def two_hosts_inventory(self, path: str) -> str:
        """The test bed's inventory plus source2 and backup2; the source hosts name the group ceph_backup as
        rbd_replicate_dest_host, so they share each pool's images and take the two backup hosts in turn
        (the way tests/integration/test_scale_out.py writes it).  Returns ``path``."""
        inv = yaml.safe_load(Path(self.inventory).read_text())
        groups = inv['all']['children']
        addr = self.second_hosts()
        groups['ceph_source']['hosts']['source2'] = dict(ansible_host=addr['source2'])
        groups['ceph_backup']['hosts']['backup2'] = dict(ansible_host=addr['backup2'])
        groups['ceph_source']['vars']['rbd_replicate_dest_host'] = 'ceph_backup'
        Path(path).write_text(yaml.safe_dump(inv))
        return path

    @staticmethod
    def ansible_env(*extra: Dict[str, str]) -> Dict[str, str]:
        """The environment of an ansible run against the test bed: ours, ANSIBLE_ENV, then each of ``extra``."""
        env = dict(os.environ)
        env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
        for more in (ANSIBLE_ENV,) + extra:
            env.update(more)
        return env
