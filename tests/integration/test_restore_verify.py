"""The restore playbook's verify (rbd_restore_verify), proven on the real clusters.

The default ``data`` compares what the restore wrote, read back from the restored snapshot, with the digest
of the stream the backup sent: here the restored image is damaged between the transfer and the verify (a
test-only callback plugin runs ``rados put`` on the source cluster right after the transfer task's result,
before the next task starts), and the verify must fail. ``full`` reads both sides in full: it also finds a
difference that ``data`` trusts by design (a base snapshot that differs between the clusters).
"""

import json
import subprocess
import sys
import time

import pytest

from conftest import mixed_chunk, random_data, role_vars
from test_operations import BACKUP_READ, RESTORED_READ, task_status

MiB = 1 << 20
TRANSFER_TASK = 'Restore the snapshot from the backup cluster'

# Runs in the controller process, synchronously, when the transfer task's result is processed: the linear
# strategy starts the next task only after that.
CALLBACK = '''
import json
import os
import subprocess

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'restore_test_hook'
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        if result._task.get_name().startswith(%r):
            subprocess.run(json.loads(os.environ['RESTORE_TEST_HOOK']), check=True)
            open(os.environ['RESTORE_TEST_HOOK_RAN'], 'w').close()
''' % TRANSFER_TASK


# Overwrites 4 KiB of a RADOS object of an image on the source cluster, with no snapshot context: no clone is
# made, so the image's newest snapshot reads the damage too (bit rot, or a restore that wrote wrong bytes).
# The object prefix is looked up when it runs: a restore to a new image creates the image in its transfer.
# argv: ceph args (JSON), pool, image, offset, junk file.
ROT = '''
import json, random, subprocess, sys
args, pool, image, offset, junk = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
info = json.loads(subprocess.run(['rbd'] + args + ['info', '--format', 'json', '--pool', pool, '--image', image],
                                 check=True, capture_output=True).stdout)
with open(junk, 'wb') as f:
    f.write(random.Random(offset).randbytes(4096))
subprocess.run(['rados'] + args + ['--pool', pool, 'put', '%s.%016x' % (info['block_name_prefix'], offset >> 22),
                junk, '--offset', str(offset % (4 << 20))], check=True)
'''


def rot_argv(bed, tmp_path, pool, image, offset):
    """The argv that rots 4 KiB of ``image`` at ``offset`` on the source cluster (see ROT)."""
    return [sys.executable, '-c', ROT, json.dumps(bed.src.args()), pool, image, str(offset),
            str(tmp_path / ('junk-%d' % offset))]


def restore_with_hook(bed, tmp_path, extra, hook, expect_rc):
    """The restore playbook, with ``hook`` (an argv) run right after its transfer task; returns the output."""
    plugins = tmp_path / 'callbacks'
    plugins.mkdir(exist_ok=True)
    (plugins / 'restore_test_hook.py').write_text(CALLBACK)
    ran = tmp_path / 'hook-ran'
    env = bed.ansible_env()
    env.update(ANSIBLE_CALLBACK_PLUGINS=str(plugins), ANSIBLE_CALLBACKS_ENABLED='restore_test_hook',
               RESTORE_TEST_HOOK=json.dumps(hook), RESTORE_TEST_HOOK_RAN=str(ran))
    cmd = ['ansible-playbook', '-i', bed.inventory, 'ceph_rbd.backup.restore', '-e', json.dumps(extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect_rc, out[-6000:]
    assert ran.exists(), 'the hook did not run: ' + out[-3000:]
    return out


def two_backups(bed, pool):
    """vm: 8 MiB (half random, half zeros) backed up as `first`, then 4 MiB at 16 MiB backed up as `newest`."""
    bed.src.create(pool, 'vm', 32 * MiB)
    bed.src.write(pool, 'vm', 0, mixed_chunk(8 * MiB, seed=21))
    bed.playbook(extra=role_vars(pool))
    first = bed.dst.snaps(pool, 'vm')[-1]
    bed.src.write(pool, 'vm', 16 * MiB, random_data(4 * MiB, seed=22))
    time.sleep(1.1)                       # snapshot names are stamped to the second
    bed.playbook(extra=role_vars(pool))
    newest = bed.dst.snaps(pool, 'vm')[-1]
    assert newest != first
    return first, newest


@pytest.mark.parametrize('where', ['new-image', 'in-place'])
def test_data_verify_catches_a_block_damaged_between_transfer_and_verify(bed, pools, tmp_path, where):
    _first, newest = two_backups(bed, pools)
    extra = dict(rbd_restore_image='vm', rbd_restore_pool=pools, rbd_restore_snapshot=newest)
    if where == 'new-image':
        # a whole-image restore (initial); the damage lands in the random half of the first 8 MiB
        to, at = 'vm-restored', 1 * MiB + 4096
        extra['rbd_restore_to'] = to
    else:
        # in place, incremental from `first` (the source lost `newest`); the damage lands in the sent diff
        to, at = 'vm', 17 * MiB + 8192
        bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', newest)
        extra.update(rbd_restore_to=to, rbd_restore_overwrite=True)
    out = restore_with_hook(bed, tmp_path, extra, rot_argv(bed, tmp_path, pools, to, at), expect_rc=2)
    assert task_status(out, TRANSFER_TASK) == 'changed', out[-3000:]
    assert task_status(out, BACKUP_READ) == 'skipping', out[-3000:]      # the backup was not read again
    assert task_status(out, RESTORED_READ) == 'fatal', out[-3000:]
    assert 'data digest mismatch at snapshot %s' % newest in out, out[-3000:]
    assert 'now holds' not in out                                         # no report of a proven restore
    # the premise: the restored snapshot really differs from the backup's, and only by the damage
    assert bed.src.snaps(pools, to)[-1] == newest
    assert bed.src.export_sha(pools, to, newest) != bed.dst.export_sha(pools, 'vm', newest)
    assert bed.src.read(pools, to, at - 4096, 4096, snap=newest) == bed.dst.read(pools, 'vm', at - 4096, 4096,
                                                                                 snap=newest)
    assert bed.src.read(pools, to, at, 4096, snap=newest) != bed.dst.read(pools, 'vm', at, 4096, snap=newest)


def test_full_verify_reads_what_data_trusts_and_check_mode_changes_nothing(bed, pools, tmp_path):
    """An in-place restore rolls back to the common base and trusts it to equal the backup's (the nightly
    verify proved it when it was sent); data reads only the sent extents. A base damaged on the restored side
    outside them passes data - full reads both sides and finds it."""
    first, newest = two_backups(bed, pools)
    bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', newest)
    # the base `first` rots on the source (object 0 has no clone: the snapshot reads the damage)
    subprocess.run(rot_argv(bed, tmp_path, pools, 'vm', MiB), check=True)
    assert bed.src.export_sha(pools, 'vm', first) != bed.dst.export_sha(pools, 'vm', first)
    extra = dict(rbd_restore_image='vm', rbd_restore_pool=pools, rbd_restore_to='vm', rbd_restore_overwrite=True,
                 rbd_restore_snapshot=newest)

    # check mode: the plan is reported, nothing changes and nothing is read
    before = bed.src.state(pools)
    out = bed.playbook(extra=extra, playbook='ceph_rbd.backup.restore', check=True)
    assert 'would hold %s/vm@%s (incremental' % (pools, newest) in out and 'Check mode: nothing' in out, out[-3000:]
    assert task_status(out, BACKUP_READ) == 'skipping' and task_status(out, RESTORED_READ) == 'skipping'
    assert bed.src.state(pools) == before

    # data: the sent diff (16-20 MiB) reads back right; the rot at 1 MiB is outside it
    out = bed.playbook(extra=extra, playbook='ceph_rbd.backup.restore')
    assert '(incremental' in out and 'Verified (data)' in out, out[-3000:]
    assert bed.src.export_sha(pools, 'vm', newest) != bed.dst.export_sha(pools, 'vm', newest)

    # full reads both snapshots whole (the image now has `newest`: a rollback) and finds the difference
    out = bed.playbook(extra=dict(extra, rbd_restore_verify='full'), playbook='ceph_rbd.backup.restore',
                       expect_rc=2)
    assert task_status(out, BACKUP_READ) == 'ok' and task_status(out, RESTORED_READ) == 'fatal', out[-3000:]
    assert 'full digest mismatch at snapshot %s' % newest in out, out[-3000:]


def test_an_unknown_verify_method_is_refused_before_anything_changes(bed, pools):
    bed.src.create(pools, 'vm', 4 * MiB)
    bed.playbook(extra=role_vars(pools))
    out = bed.playbook(extra=dict(rbd_restore_image='vm', rbd_restore_pool=pools, rbd_restore_verify='md5'),
                       playbook='ceph_rbd.backup.restore', expect_rc=2)
    assert 'rbd_restore_verify is data, full or extents' in out
    assert bed.src.images(pools) == ['vm']
