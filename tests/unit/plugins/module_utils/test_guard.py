import shlex

from ansible_collections.ceph_rbd.backup.plugins.module_utils._guard import allowed
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, image_args
from ansible_collections.ceph_rbd.backup.plugins.module_utils._stream import remote_pipeline

RBD = Rbd(conf='/etc/ceph/ceph.conf', user='backup-ro', keyring='/k', timeout=30)
HOSTILE = "we ird $(touch x);`id` 'q\""


def cmd(*args):
    return ' '.join(shlex.quote(a) for a in RBD.argv(*args))


def test_the_read_only_calls_a_pull_transfer_sends_are_allowed():
    assert allowed(cmd('ls', '--pool', 'rbd', '--format', 'json'))
    assert allowed(cmd('snap', 'ls', *image_args('rbd', HOSTILE), '--format', 'json'))
    assert allowed(cmd('info', *image_args('rbd', HOSTILE, 'ns'), '--format', 'json'))
    assert allowed(cmd('diff', *image_args('rbd', 'vm', snap='s'), '--from-snap', 'a', '--format', 'json'))
    export = RBD.argv('export-diff', '--no-progress', *image_args('rbd', HOSTILE, snap='b'), '--from-snap', 'a', '-')
    assert allowed(remote_pipeline([export]))
    assert allowed(remote_pipeline([export, ['zstd', '-q', '-c', '-1', '-T0']]))


def test_writes_other_programs_and_shell_tricks_are_refused():
    assert not allowed(cmd('snap', 'rm', *image_args('rbd', 'vm', snap='s')))
    assert not allowed(cmd('rm', *image_args('rbd', 'vm')))
    assert not allowed(cmd('import-diff', *image_args('rbd', 'vm'), '-'))
    assert not allowed(cmd('export-diff', *image_args('rbd', 'vm', snap='s'), '/etc/passwd'))
    assert not allowed(cmd('image-meta', 'set', *image_args('rbd', 'vm'), 'k', 'v'))
    assert not allowed(cmd('image-meta', 'get', *image_args('rbd', 'vm'), 'k'))
    assert not allowed('rbd ls; rm -rf /')
    assert not allowed('rbd ls $(id)')
    assert not allowed('sh -c "rbd ls"')
    assert not allowed("bash -o pipefail -c 'rbd export-diff --pool p --image i - | sh'")
    assert not allowed("bash -o pipefail -c 'rbd export-diff --pool p --image i -; id | zstd -c'")
    assert not allowed("bash -o pipefail -c 'rbd rm --pool p --image i | zstd -c'")
    assert not allowed('')
    assert not allowed('rbd "unterminated')
