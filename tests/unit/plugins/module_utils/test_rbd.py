# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import shlex
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _rbd as R
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError

HOSTILE_IMAGE = "vm 1's \"disk\" $(touch /tmp/pwned); `id` | x & y\\z"


class FakeRunner:
    """Records every argv; answers from a list of (rc, stdout, stderr) or a function of argv."""

    def __init__(self, *answers, **kw):
        self.answers = list(answers)
        self.func = kw.get('func')
        self.calls = []

    def __call__(self, argv, timeout, stdin_data=None):
        self.calls.append(dict(argv=list(argv), timeout=timeout, stdin_data=stdin_data))
        if self.func:
            return self.func(argv)
        a = self.answers.pop(0)
        if isinstance(a, (list, dict)):
            return 0, json.dumps(a), ''
        return a

    @property
    def argv(self):
        return self.calls[-1]['argv']


# -- pure argv builders ---------------------------------------------------------------------

def test_client_args_empty():
    assert R.client_args() == []


def test_client_args_full():
    assert R.client_args('backup', '/etc/ceph/b.conf', 'repl', '/k/keyring', 30) == [
        '--cluster', 'backup', '--conf', '/etc/ceph/b.conf', '--id', 'repl', '--keyring', '/k/keyring',
        '--rados-osd-op-timeout', '30', '--rados-mon-op-timeout', '30', '--client-mount-timeout', '30']


def test_client_args_timeout_string_is_int():
    assert R.client_args(timeout='45') == ['--rados-osd-op-timeout', '45', '--rados-mon-op-timeout', '45',
                                           '--client-mount-timeout', '45']


def test_image_args():
    assert R.image_args('rbd') == ['--pool', 'rbd']
    assert R.image_args('rbd', 'img') == ['--pool', 'rbd', '--image', 'img']
    assert R.image_args('rbd', 'a/b@c', 'ns', 'snap') == [
        '--pool', 'rbd', '--namespace', 'ns', '--image', 'a/b@c', '--snap', 'snap']
    # an empty image name is still passed as an option, not dropped
    assert R.image_args('rbd', '') == ['--pool', 'rbd', '--image', '']


def test_image_label():
    assert R.image_label('rbd', 'img') == 'rbd/img'
    assert R.image_label('rbd', 'img', 'ns', 's1') == 'rbd/ns/img@s1'


def test_ssh_argv_minimal_and_full():
    assert R.ssh_argv('h1') == ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20',
                                '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4', '--', 'h1']
    argv = R.ssh_argv('h2', user='ceph', port=2222, key='/k', options=['-o', 'Compression=no'],
                      cipher='aes128-gcm@openssh.com', batch=False)
    assert 'BatchMode=yes' not in argv
    assert argv[-2:] == ['--', 'h2']
    assert argv[argv.index('-p') + 1] == '2222'
    assert argv[argv.index('-l') + 1] == 'ceph'
    assert argv[argv.index('-i') + 1] == '/k'
    assert argv[argv.index('-c') + 1] == 'aes128-gcm@openssh.com'
    assert argv.index('Compression=no') < argv.index('--')


def test_remote_command_hostile_names_survive_shlex():
    argv = Rbd(runner=FakeRunner()).argv('snap', 'ls', *R.image_args('p p', HOSTILE_IMAGE, "n'", '@;'))
    cmd = R.remote_command(argv)
    assert shlex.split(cmd) == argv
    assert shlex.split(R.remote_command(['echo', ''])) == ['echo', '']


def test_ssh_runner_wraps_once():
    inner = FakeRunner((0, 'out', ''))
    runner = R.SshRunner(['ssh', '--', 'h'], local_runner=inner)
    argv = ['rbd', '--image', HOSTILE_IMAGE]
    assert runner(argv, 12, 'in') == (0, 'out', '')
    call = inner.calls[0]
    assert call['argv'][:3] == ['ssh', '--', 'h'] and len(call['argv']) == 4
    assert shlex.split(call['argv'][3]) == argv
    assert call['timeout'] == 12 and call['stdin_data'] == 'in'


# -- RbdError ---------------------------------------------------------------------------------------

def test_rbd_error_str_names_image_command_rc_stderr():
    e = RbdError('rbd snap failed', cmd=['rbd', 'snap', 'ls', '--image', 'a b'], rc=2,
                 stderr='  rbd: error opening image\n', image='rbd/a b')
    assert str(e) == ("image rbd/a b: rbd snap failed (command: rbd snap ls --image 'a b', rc=2): "
                      "rbd: error opening image")
    d = e.as_dict()
    assert d == dict(msg=str(e), cmd=['rbd', 'snap', 'ls', '--image', 'a b'], rc=2,
                     stderr='rbd: error opening image')


def test_rbd_error_str_minimal():
    assert str(RbdError('oops')) == 'oops'
    assert str(RbdError('oops', cmd=['rbd'])) == 'oops (command: rbd)'


def test_rbd_error_stderr_is_tail_limited():
    e = RbdError('x', stderr='A' * 5000 + 'END')
    assert str(e).endswith('END') and len(str(e)) == len('x: ') + 2000


# -- Rbd with a fake runner --------------------------------------------------------------------------

def test_rbd_argv_global_args_and_timeout():
    fr = FakeRunner((0, '', ''))
    rbd = Rbd(cluster='c', user='u', timeout=7, runner=fr, binary='/usr/bin/rbd')
    rbd.run('status')
    assert fr.argv[:5] == ['/usr/bin/rbd', '--cluster', 'c', '--id', 'u']
    assert fr.argv[-1] == 'status'
    assert fr.calls[0]['timeout'] == 7


def test_rbd_from_params():
    fr = FakeRunner((0, '[]', ''))
    rbd = Rbd.from_params(dict(ceph=dict(cluster='x', conf=None, user=None, keyring='/k'), timeout=9), runner=fr)
    assert rbd.timeout == 9
    assert rbd.global_args[:4] == ['--cluster', 'x', '--keyring', '/k']
    assert Rbd.from_params(dict(timeout=9), runner=fr, timeout=3).timeout == 3
    assert Rbd.from_params(dict(ceph=None)).global_args[:2] == ['--rados-osd-op-timeout', '300']


def test_snapshots_sorted_by_id_and_protected_bool():
    canned = [
        dict(id=12, name='backup-b', size=1, protected='true', timestamp='Thu Nov 26 11:40:59 2026'),
        dict(id=3, name='backup-a', size=1, protected='false'),
        dict(id=7, name='manual', size=1),
        dict(id=9, name='p', size=1, protected=True),
    ]
    fr = FakeRunner(canned)
    snaps = Rbd(runner=fr, timeout=None).snapshots('rbd', HOSTILE_IMAGE, 'ns')
    assert [s['id'] for s in snaps] == [3, 7, 9, 12]
    assert [s['protected'] for s in snaps] == [False, False, True, True]
    assert all(isinstance(s['protected'], bool) for s in snaps)
    assert fr.argv == ['rbd', 'snap', 'ls', '--pool', 'rbd', '--namespace', 'ns', '--image', HOSTILE_IMAGE,
                       '--format', 'json']


def test_snapshots_empty_output():
    assert Rbd(runner=FakeRunner((0, '\n', ''))).snapshots('rbd', 'i') == []


def test_snapshots_or_none():
    fr = FakeRunner((2, '', 'rbd: error opening image i: (2) No such file or directory'))
    assert Rbd(runner=fr).snapshots_or_none('rbd', 'i') is None
    with pytest.raises(RbdError) as ei:
        Rbd(runner=FakeRunner((1, '', 'rbd: permission denied'))).snapshots_or_none('rbd', 'i')
    assert ei.value.rc == 1 and 'rbd/i' in str(ei.value)


def test_diff_parses_exists_strings_and_sorts():
    canned = [dict(offset=4096, length=10, exists='true'), dict(offset=0, length=5, exists='false'),
              dict(offset='8192', length='1', exists=True), dict(offset=100, length=2, exists='FALSE')]
    fr = FakeRunner(canned)
    out = Rbd(runner=fr, timeout=None).diff('rbd', 'img', snap='s2', from_snap='s1', whole_object=True)
    assert out == [(0, 5, False), (100, 2, False), (4096, 10, True), (8192, 1, True)]
    assert fr.argv == ['rbd', 'diff', '--pool', 'rbd', '--image', 'img', '--snap', 's2', '--from-snap', 's1',
                       '--whole-object', '--format', 'json']


def test_diff_without_from_snap():
    fr = FakeRunner([])
    assert Rbd(runner=fr, timeout=None).diff('rbd', 'img', snap='s') == []
    assert '--from-snap' not in fr.argv and '--whole-object' not in fr.argv


def test_info():
    fr = FakeRunner(dict(name='img', size=1024, object_size=4194304))
    assert Rbd(runner=fr).info('rbd', 'img')['size'] == 1024


def test_info_none_when_missing():
    fr = FakeRunner((2, '', 'rbd: error opening image img: (2) No such file or directory\n'))
    assert Rbd(runner=fr).info('rbd', 'img') is None
    fr = FakeRunner((22, '', 'rbd: error: (2) No such file or directory'))
    assert Rbd(runner=fr).info('rbd', 'img') is None


def test_info_other_error_raises_with_context():
    fr = FakeRunner((13, '', 'rbd: error opening image: (13) Permission denied'))
    with pytest.raises(RbdError) as ei:
        Rbd(runner=fr, timeout=None).info('rbd', 'img', 'ns')
    s = str(ei.value)
    assert s.startswith('image rbd/ns/img: rbd info failed (command: rbd info --pool rbd --namespace ns '
                        '--image img --format json, rc=13)')
    assert 'Permission denied' in s


def test_json_garbage_raises():
    fr = FakeRunner((0, 'this is not json', ''))
    with pytest.raises(RbdError) as ei:
        Rbd(runner=fr).json('ls', '--pool', 'p', image='p/x')
    assert 'printed no JSON' in str(ei.value) and ei.value.image == 'p/x'


def test_list_images_sorted_and_pool_exists():
    fr = FakeRunner(['b', 'a', 'c'])
    assert Rbd(runner=fr).list_images('p') == ['a', 'b', 'c']
    assert Rbd(runner=FakeRunner([])).pool_exists('p') is True
    assert Rbd(runner=FakeRunner((2, '', 'rbd: error opening pool p'))).pool_exists('p') is False
    assert Rbd(runner=FakeRunner((1, '', 'rbd: error opening pool \'p\': (2) No such file'))).pool_exists('p') is False
    with pytest.raises(RbdError):
        Rbd(runner=FakeRunner((1, '', 'rbd: connection timed out'))).pool_exists('p')


def test_meta_get():
    assert Rbd(runner=FakeRunner((0, 'v1\n', ''))).meta_get('p', 'i', 'k') == 'v1'
    assert Rbd(runner=FakeRunner((2, '', ''))).meta_get('p', 'i', 'k') is None
    assert Rbd(runner=FakeRunner((1, '', 'failed to get metadata k of image'))).meta_get('p', 'i', 'k') is None
    with pytest.raises(RbdError):
        Rbd(runner=FakeRunner((5, '', 'io error'))).meta_get('p', 'i', 'k')


def test_meta_get_error_reports_the_command_run():
    fr = FakeRunner((5, '', 'io error'))
    with pytest.raises(RbdError) as ei:
        Rbd(runner=fr, timeout=None).meta_get('p', 'i', 'k')
    assert ei.value.cmd == fr.argv


def test_changes_build_expected_argv():
    fr = FakeRunner(func=lambda argv: (0, '', ''))
    rbd = Rbd(runner=fr, timeout=None)
    rbd.snap_create('p', HOSTILE_IMAGE, 's1', 'ns')
    assert fr.argv == ['rbd', 'snap', 'create', '--pool', 'p', '--namespace', 'ns', '--image', HOSTILE_IMAGE,
                       '--snap', 's1']
    rbd.snap_remove('p', 'i', 's1')
    assert fr.argv == ['rbd', 'snap', 'rm', '--no-progress', '--pool', 'p', '--image', 'i', '--snap', 's1']
    rbd.snap_rollback('p', 'i', 's1')
    assert fr.argv[:3] == ['rbd', 'snap', 'rollback'] and fr.argv[-2:] == ['--snap', 's1']
    rbd.create('p', 'i', 1 << 30, object_size=1 << 22)
    assert fr.argv == ['rbd', 'create', '--size', '1073741824B', '--pool', 'p', '--image', 'i',
                       '--object-size', '4194304B']
    rbd.rename('p', 'i', 'i.old', 'ns')
    assert fr.argv == ['rbd', 'rename', '--pool', 'p', '--namespace', 'ns', '--image', 'i', '--dest-pool', 'p',
                       '--dest-namespace', 'ns', '--dest', 'i.old']
    rbd.meta_set('p', 'i', R.META_IMPORTING, 'yes')
    assert fr.argv == ['rbd', 'image-meta', 'set', '--pool', 'p', '--image', 'i', 'ceph_rbd_backup.importing',
                       'yes']
    rbd.remove('p', 'i')
    assert fr.argv == ['rbd', 'rm', '--no-progress', '--pool', 'p', '--image', 'i']


def test_meta_remove_tolerates_rc2_only():
    Rbd(runner=FakeRunner((2, '', 'no such key'))).meta_remove('p', 'i', 'k')
    with pytest.raises(RbdError) as ei:
        Rbd(runner=FakeRunner((1, '', 'boom'))).meta_remove('p', 'i', 'k')
    assert ei.value.image == 'p/i'


def test_parse_bool():
    assert [R.parse_bool(v) for v in (True, False, 'true', 'True', 'false', 'yes', None, 1)] == \
        [True, False, True, True, False, False, False, False]


# -- run_bounded ---------------------------------------------------------------------------------------

def test_run_bounded_ok_with_stdin():
    rc, out, err = R.run_bounded(['sh', '-c', 'cat; echo E >&2; exit 4'], 10, stdin_data='héllo')
    assert (rc, out, err) == (4, 'héllo', 'E\n')


def test_run_bounded_missing_binary():
    rc, out, err = R.run_bounded(['/nonexistent/xyz'], 5)
    assert rc == 127 and out == '' and 'cannot run /nonexistent/xyz' in err


def test_run_bounded_kills_after_timeout():
    t0 = time.monotonic()
    rc, out, err = R.run_bounded(['sleep', '30'], 1)
    assert rc == -9 and out == '' and 'timed out after 1 s' in err
    assert time.monotonic() - t0 < 15   # killed, not the 30 s sleep (margin for a loaded machine)


def test_run_bounded_kills_whole_group_holding_pipes():
    # a grandchild keeps stdout open; without killing the group communicate() would wait 30 s
    t0 = time.monotonic()
    rc, _out, _err = R.run_bounded(['sh', '-c', 'sleep 30 & sleep 30'], 1)
    assert rc == -9
    assert time.monotonic() - t0 < 15   # killed, not the 30 s sleep (margin for a loaded machine)


def test_watchers_from_rbd_status():
    fr = FakeRunner({'watchers': [{'address': '127.0.0.1:0/1', 'client': 4278, 'cookie': 1}]}, (2, '', 'No such file'))
    rbd = Rbd(runner=fr)
    assert rbd.watchers('p', HOSTILE_IMAGE) == [{'address': '127.0.0.1:0/1', 'client': 4278, 'cookie': 1}]
    argv = fr.calls[0]['argv']
    assert argv[argv.index('--image') + 1] == HOSTILE_IMAGE and 'status' in argv
    assert rbd.watchers('p', 'gone') == []
