"""The fault matrix: every fault ends in a correct copy or one clear error, never in mixed data.

"Nothing lost": for every snapshot on both sides, rbd export | sha256sum is equal, and the source is untouched.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import random_data, role_vars
from test_modules import snap, transfer
from test_replicate import assert_replicated

MiB = 1 << 20


def _pids(pattern):
    out = subprocess.run(['pgrep', '-f', pattern], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def test_interrupted_transfer_leaves_no_snapshot_and_next_run_recovers(bed, pools):
    bed.src.create(pools, 'vm', 256 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(4 * MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    for i in range(8):
        bed.src.write(pools, 'vm', (16 + 8 * i) * MiB, random_data(8 * MiB, seed=10 + i))
    snap(bed, pools, 'vm', 'backup-b')
    before_src = bed.src.export_sha(pools, 'vm', 'backup-b')

    # A slow stream (bwlimit) so that the import can be killed in the middle.
    args = dict(source_pool=pools, images=['vm'], bwlimit='8M')   # 64 MiB: ~8 s of stream, killed ~2 s in
    args.update(bed.pull_args())
    args.setdefault('ceph', bed.dst.ceph_args())

    proc = subprocess.Popen(['ansible', 'backup', '-i', bed.inventory, '-m', 'ceph_rbd.backup.rbd_diff_transfer',
                             '-a', json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=bed.ansible_env(), text=True)
    pattern = 'rbd .*import-diff .*--pool %s ' % pools
    deadline = time.time() + 60
    while time.time() < deadline and not _pids(pattern):
        time.sleep(0.2)
    time.sleep(2)                               # let some data land
    victims = _pids(pattern)
    assert victims, 'the import never started'
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0, out
    assert 'rbd import-diff failed' in out and 'vm' in out, out
    assert bed.dst.snaps(pools, 'vm') == ['backup-a']                 # no new snapshot
    mark = json.loads(bed.dst.meta(pools, 'vm').get('ceph_rbd_backup.importing'))
    assert mark['snapshot'] == 'backup-b' and mark['run'] is None        # an ad hoc transfer has no run id

    # the killed import's watch lingers for up to ~30 s: the next transfer waits for it to end, then recovers
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert r['action'] == 'incremental' and r['base'] == 'backup-a' and r['recovered'] is True
    assert bed.dst.meta(pools, 'vm').get('ceph_rbd_backup.importing') is None
    assert_replicated(bed, pools, 'vm')
    assert bed.src.export_sha(pools, 'vm', 'backup-b') == before_src


def test_base_deleted_uses_next_newest_then_rebuilds_when_none_left(bed, pools):
    bed.src.create(pools, 'vm', 32 * MiB)
    for i, name in enumerate(['backup-a', 'backup-b', 'backup-c']):
        bed.src.write(pools, 'vm', i * 4 * MiB, random_data(MiB, seed=i))
        snap(bed, pools, 'vm', name)
        transfer(bed, pools, ['vm'])
    # the base (backup-c) deleted on the source; and backup-b deleted on the destination
    bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', 'backup-c')
    bed.dst.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', 'backup-b')
    bed.src.write(pools, 'vm', 20 * MiB, random_data(MiB, seed=9))
    snap(bed, pools, 'vm', 'backup-d')
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert (r['action'], r['base']) == ('incremental', 'backup-a')
    assert_replicated(bed, pools, 'vm')

    # no common snapshot left at all: the destination is rebuilt, the old image kept aside
    for s in ('backup-a', 'backup-d'):
        bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', s)
    bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', 'backup-b')
    bed.src.write(pools, 'vm', 0, b'\0' * (8 * MiB))     # holes where the old copy has data
    snap(bed, pools, 'vm', 'backup-e')
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert r['action'] == 'rebuild' and r['replaced_image'].startswith('vm.replaced-')
    assert sorted(bed.dst.images(pools)) == sorted(['vm', r['replaced_image']])
    assert bed.dst.snaps(pools, 'vm') == ['backup-e']
    assert bed.src.export_sha(pools, 'vm', 'backup-e') == bed.dst.export_sha(pools, 'vm', 'backup-e')
    assert 'backup-a' in bed.dst.snaps(pools, r['replaced_image'])      # nothing of the old copy lost


def test_newest_backup_snapshot_deleted_by_hand_is_not_taken_for_a_foreign_write(bed, pools):
    """Found by the soak: the backup's newest snapshot deleted, with writes between it and the one before. Its data is
    still on the head, so the head differs from the remaining base. When the source's hold says that snapshot was
    this destination's newest and the diff from the base rewrites every differing extent, it is sent as is. A write
    outside them is still refused, and so is any change without the hold (a foreign write: the soak's check)."""
    bed.src.create(pools, 'vm', 32 * MiB)
    for i, name in enumerate(['backup-a', 'backup-b']):
        bed.src.write(pools, 'vm', i * 8 * MiB, random_data(2 * MiB, seed=40 + i))
        snap(bed, pools, 'vm', name)
        transfer(bed, pools, ['vm'])
    bed.dst.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', 'backup-b')
    bed.src.write(pools, 'vm', 20 * MiB, random_data(MiB, seed=42))
    snap(bed, pools, 'vm', 'backup-c')
    # without the source's hold (which names backup-b as this destination's newest) it is a foreign write
    r = transfer(bed, pools, ['vm'], expect_failed=True)
    assert 'modified since its snapshot backup-a' in r['msg'], r['msg']
    # the role's prune records the hold; with it, the deleted snapshot is recognised
    bed.src.run('image-meta', 'set', '--pool', pools, '--image', 'vm', 'ceph_rbd_backup.hold.backup/' + pools,
                'backup-b')
    r = transfer(bed, pools, ['vm'], hold_key='backup/' + pools)['images'][0]
    assert (r['action'], r['base'], r['head_rewritten'], r['rolled_back']) == ('incremental', 'backup-a', True, False)
    assert_replicated(bed, pools, 'vm')
    assert bed.src.export_sha(pools, 'vm', 'backup-c') == bed.dst.export_sha(pools, 'vm', 'backup-c')

    # the same, plus a write to the backup where the next diff does not reach: refused as before
    bed.dst.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', 'backup-c')
    bed.dst.write(pools, 'vm', 28 * MiB, random_data(4096, seed=43))
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=44))
    snap(bed, pools, 'vm', 'backup-d')
    bed.src.run('image-meta', 'set', '--pool', pools, '--image', 'vm', 'ceph_rbd_backup.hold.backup/' + pools,
                'backup-c')
    r = transfer(bed, pools, ['vm'], hold_key='backup/' + pools, expect_failed=True)
    assert 'modified since its snapshot backup-a' in r['msg'], r['msg']


def test_resize_grow_and_shrink(bed, pools):
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 12 * MiB, random_data(4 * MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    bed.src.run('resize', '--pool', pools, '--image', 'vm', '--size', '64M')
    bed.src.write(pools, 'vm', 60 * MiB, random_data(4 * MiB, seed=2))
    snap(bed, pools, 'vm', 'backup-b')
    transfer(bed, pools, ['vm'])
    bed.src.run('resize', '--pool', pools, '--image', 'vm', '--size', '10M', '--allow-shrink')
    snap(bed, pools, 'vm', 'backup-c')
    transfer(bed, pools, ['vm'])
    bed.src.run('resize', '--pool', pools, '--image', 'vm', '--size', '20M')    # grow again: zeros, not old data
    snap(bed, pools, 'vm', 'backup-d')
    transfer(bed, pools, ['vm'])
    assert [bed.dst.size(pools, 'vm', s) for s in ('backup-a', 'backup-b', 'backup-c', 'backup-d')] == \
        [16 * MiB, 64 * MiB, 10 * MiB, 20 * MiB]
    assert len(assert_replicated(bed, pools, 'vm')) == 4


def test_clone_replicates_with_its_parent_data(bed, pools):
    bed.src.create(pools, 'golden', 16 * MiB)
    bed.src.write(pools, 'golden', 0, random_data(8 * MiB, seed=1))
    bed.src.snap(pools, 'golden', 'base')
    bed.src.run('snap', 'protect', '--pool', pools, '--image', 'golden', '--snap', 'base')
    bed.src.run('clone', '--pool', pools, '--image', 'golden', '--snap', 'base', '--dest-pool', pools,
                '--dest', 'child')
    bed.src.write(pools, 'child', 4 * MiB, random_data(MiB, seed=2))
    snap(bed, pools, 'child', 'backup-a')
    transfer(bed, pools, ['child'])
    assert bed.src.export_sha(pools, 'child', 'backup-a') == bed.dst.export_sha(pools, 'child', 'backup-a')
    assert bed.dst.read(pools, 'child', 0, MiB, snap='backup-a') == random_data(8 * MiB, seed=1)[:MiB]
    # the copy is a standalone image
    assert 'parent' not in bed.dst.rbd_json('info', '--pool', pools, '--image', 'child')


def test_deleted_source_image_is_reported_orphaned_and_kept(bed, pools):
    for name in ('keep', 'gone'):
        bed.src.create(pools, name, 4 * MiB)
        bed.src.write(pools, name, 0, random_data(MiB))
    bed.playbook(extra=role_vars(pools))
    bed.src.run('snap', 'purge', '--pool', pools, '--image', 'gone')
    bed.src.run('rm', '--pool', pools, '--image', 'gone')
    out = bed.playbook(extra=role_vars(pools))
    assert '/gone: orphaned' in out, out[-3000:]
    assert bed.dst.images(pools) == ['gone', 'keep']


def test_new_image_and_image_without_prefixed_snapshots_get_a_full_sync(bed, pools):
    bed.src.create(pools, 'old', 4 * MiB)
    bed.src.write(pools, 'old', 0, random_data(MiB, seed=1))
    bed.playbook(extra=role_vars(pools))
    bed.src.create(pools, 'new', 8 * MiB)
    bed.src.write(pools, 'new', MiB, random_data(2 * MiB, seed=2))
    bed.src.snap(pools, 'new', 'manual-not-ours')
    out = bed.playbook(extra=role_vars(pools))
    assert '/new: initial' in out and '/old: incremental' in out
    assert_replicated(bed, pools, 'new')
    assert bed.dst.snaps(pools, 'new') == [bed.src.snaps(pools, 'new')[-1]]   # foreign snapshots stay home


def test_concurrent_run_refuses_quickly_and_stale_lock_is_recoverable(bed, pools):
    bed.src.create(pools, 'vm', 4 * MiB)
    # a run that was killed left its lock behind
    held = bed.src_module('rbd_replication_lock', dict(pool=pools, cookie='killed-run', ttl=3600))
    assert held['changed']
    t0 = time.time()
    out = bed.playbook(extra=role_vars(pools), expect_rc=2)
    assert time.time() - t0 < 30
    assert 'another replication run holds the lock on pool %s' % pools in out
    assert bed.src.snaps(pools, 'vm') == []                      # refused before any change
    out = bed.playbook(extra=role_vars(pools, rbd_replicate_break_lock=True))
    assert '/vm: initial' in out
    # the lock was released at the end: a plain run goes through
    bed.playbook(extra=role_vars(pools))
    # and while a run holds it, a second one refuses (the first is not disturbed)
    bed.src.write(pools, 'vm', 0, random_data(2 * MiB))
    first = subprocess.Popen(['ansible-playbook', '-i', bed.inventory, 'ceph_rbd.backup.replicate',
                              '-e', __import__('json').dumps(role_vars(pools, rbd_replicate_bwlimit='128k'))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=bed.ansible_env(), text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not _pids('export-diff .*--pool %s ' % pools):
        time.sleep(0.2)
    second = bed.playbook(extra=role_vars(pools), expect_rc=2)
    assert 'another replication run holds the lock' in second
    out = first.communicate(timeout=300)[0]
    assert first.returncode == 0, out[-3000:]
    assert_replicated(bed, pools, 'vm')


def test_namespaces_replicate(bed, pools):
    for c in (bed.src, bed.dst):
        c.run('namespace', 'create', '--pool', pools, '--namespace', 'tenant1')
    bed.src.run('create', '--size', '8M', '--pool', pools, '--namespace', 'tenant1', '--image', 'vm')
    extra = dict(rbd_replicate_pools=[dict(pool=pools, namespace='tenant1')])
    bed.playbook(extra=extra)
    out = bed.playbook(extra=extra)
    assert '%s/vm: incremental' % pools in out
    src = bed.src.rbd_json('snap', 'ls', '--pool', pools, '--namespace', 'tenant1', '--image', 'vm')
    dst = bed.dst.rbd_json('snap', 'ls', '--pool', pools, '--namespace', 'tenant1', '--image', 'vm')
    assert [s['name'] for s in src] == [s['name'] for s in dst][-2:]
    assert bed.dst.images(pools) == []        # nothing landed outside the namespace


@pytest.mark.parametrize('extra,message', [
    (dict(rbd_replicate_pools=[dict(pool='no-such-pool')]), 'pool no-such-pool does not exist'),
    (dict(rbd_replicate_dest_host='nohost'), "rbd_replicate_dest_host must name hosts of the inventory"),
    (dict(rbd_replicate_retention_source=dict(last=-1)), 'rbd_replicate_retention_source: retention last must not be negative'),
    (dict(rbd_replicate_retention_dest=dict(dayly=3)), 'unknown retention rule(s) dayly'),
    (dict(rbd_replicate_verify='md5'), 'rbd_replicate_verify'),
    (dict(rbd_replicate_parallel='many'), 'rbd_replicate_parallel'),
])
def test_bad_input_is_one_clear_error_before_any_change(bed, pools, extra, message):
    bed.src.create(pools, 'vm', MiB)
    v = role_vars(pools)
    v.update(extra)
    out = bed.playbook(extra=v, expect_rc=2)
    assert message in out, out[-3000:]
    assert bed.src.snaps(pools, 'vm') == [] and bed.dst.images(pools) == []


def test_unreachable_cluster_fails_fast_with_a_clear_error(bed, pools, tmp_path):
    dead = tmp_path / 'dead.conf'
    dead.write_text('[global]\nmon host = 127.0.0.9:3300\n')
    for host in ('source', 'backup'):
        pass
    v = role_vars(pools, rbd_replicate_timeout=8,
                  rbd_replicate_source_ceph=dict(conf=str(dead), keyring=bed.src.keyring, user='admin'))
    t0 = time.time()
    out = bed.playbook(extra=v, expect_rc=2)
    assert time.time() - t0 < 60
    assert 'rbd ls failed' in out or 'timed out' in out, out[-3000:]


def test_prune_skips_protected_snapshots_with_children_and_keeps_bases(bed, pools):
    bed.src.create(pools, 'vm', 4 * MiB)
    for n in ('backup-20261101T010000Z', 'backup-20261102T010000Z', 'backup-20261103T010000Z'):
        bed.src.snap(pools, 'vm', n)
    bed.src.run('snap', 'protect', '--pool', pools, '--image', 'vm', '--snap', 'backup-20261101T010000Z')
    bed.src.run('clone', '--pool', pools, '--image', 'vm', '--snap', 'backup-20261101T010000Z',
                '--dest-pool', pools, '--dest', 'kid')
    r = bed.src_module('rbd_snapshot_prune', dict(pool=pools, images=['vm'], retention=dict(last=1),
                                                  keep=['backup-20261102T010000Z']))
    i = r['images'][0]
    assert i['skipped'] == ['backup-20261101T010000Z'] and i['removed'] == []
    assert bed.src.snaps(pools, 'vm') == ['backup-20261101T010000Z', 'backup-20261102T010000Z',
                                          'backup-20261103T010000Z']


def test_prune_for_one_destination_never_removes_the_base_of_another(bed, pools):
    """One source pool replicated to two destination pools: each keeps its own base on the source."""
    other = pools + '-b'
    bed.dst.create_pool(other)
    try:
        bed.src.create(pools, 'vm', 4 * MiB)
        tight = dict(rbd_replicate_retention_source=dict(last=1))
        to_a = role_vars(pools, **tight)
        to_b = dict(rbd_replicate_pools=[dict(pool=pools, dest_pool=other)], **tight)
        bed.playbook(extra=to_a)
        base_a = bed.dst.snaps(pools, 'vm')[-1]
        time.sleep(1.1)
        bed.src.write(pools, 'vm', 0, random_data(MiB))
        bed.playbook(extra=to_b)             # last: 1 alone would remove base_a from the source
        assert base_a in bed.src.snaps(pools, 'vm')
        time.sleep(1.1)
        out = bed.playbook(extra=to_a)
        assert '/vm: incremental %s..' % base_a in out, out[-2000:]
        assert_replicated(bed, pools, 'vm')
    finally:
        bed.dst.remove_pool(other)
