"""Restore, status and deep verify, proven on the real clusters."""

import time

from conftest import mixed_chunk, random_data, role_vars

MiB = 1 << 20


def restore(bed, pools, expect_rc=0, **extra):
    v = dict(rbd_restore_image='vm', rbd_restore_pool=pools)
    v.update(extra)
    return bed.playbook(extra=v, playbook='ceph_rbd.backup.restore', expect_rc=expect_rc)


def task_status(out, name):
    """'ok', 'changed', 'skipping', 'failed' or 'fatal': how the task called ``name`` ended (its first run)."""
    lines = out.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith('TASK [') and name in line][0]
    for line in lines[at + 1:]:
        for status in ('ok', 'changed', 'skipping', 'failed', 'fatal'):
            if line.startswith(status + ':'):
                return status
    return None


BACKUP_READ = 'Digest the snapshot on the backup'
RESTORED_READ = 'Prove the restored image holds the same bytes'


def data_verified(out):
    """How many bytes the default verify (data) read back on the restored side; asserts that it ran and that
    the backup was not read a second time."""
    assert task_status(out, BACKUP_READ) == 'skipping', out[-3000:]
    assert task_status(out, RESTORED_READ) == 'ok', out[-3000:]
    assert 'Verified (data): the ' in out, out[-3000:]
    return int(out.split('Verified (data): the ')[1].split(' bytes')[0])


def test_restore_to_new_image_and_in_place(bed, pools):
    bed.src.create(pools, 'vm', 32 * MiB)
    bed.src.write(pools, 'vm', 0, mixed_chunk(8 * MiB, seed=1))
    bed.playbook(extra=role_vars(pools))
    first = bed.dst.snaps(pools, 'vm')[-1]
    time.sleep(1.1)
    bed.src.write(pools, 'vm', 16 * MiB, random_data(4 * MiB, seed=2))
    bed.playbook(extra=role_vars(pools))
    newest = bed.dst.snaps(pools, 'vm')[-1]

    # 1. default: the newest snapshot into a new image <image>-restored, byte-identical; the default verify
    #    (data) reads back what the stream wrote on the restored side only, against the stream's digest
    out = restore(bed, pools)
    assert 'holds %s/vm@%s' % (pools, newest) in out and '(initial' in out
    read = data_verified(out)
    assert 4 * MiB <= read <= 32 * MiB, read          # the allocated extents (4 MiB random + 4 MiB zeros, 4 MiB)
    assert 'the rest of the image is unwritten' in out
    assert bed.src.export_sha(pools, 'vm-restored') == bed.dst.export_sha(pools, 'vm', newest)

    # 2. an existing image is refused unless overwrite is allowed
    v = dict(rbd_restore_image='vm', rbd_restore_pool=pools, rbd_restore_snapshot=first)
    out = bed.playbook(extra=v, playbook='ceph_rbd.backup.restore', expect_rc=2)
    assert 'refusing to overwrite' in out

    # 3. in place, to an older snapshot that the source image no longer has: incremental from the nearest one;
    #    only the extents of that diff are read back (the damage at 0 is undone by the rollback to `first`)
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=3))     # damage after the last backup
    bed.src.run('snap', 'rm', '--pool', pools, '--image', 'vm', '--snap', newest)
    v = dict(rbd_restore_image='vm', rbd_restore_pool=pools, rbd_restore_to='vm', rbd_restore_overwrite=True,
             rbd_restore_snapshot=newest)
    out = bed.playbook(extra=v, playbook='ceph_rbd.backup.restore')
    assert '(incremental' in out, out[-2000:]
    sent = int(out.split('(incremental, ')[1].split(' bytes')[0])
    assert sent < 6 * MiB                 # only the diff from the nearest common snapshot travelled
    assert data_verified(out) == 4 * MiB  # ... and only its 4 MiB were read back
    assert 'the rest of the image is its snapshot %s, equal to the backup' % first in out
    assert bed.src.export_sha(pools, 'vm') == bed.dst.export_sha(pools, 'vm', newest)

    # 4. in place, to a snapshot the image still has: a local rollback; no byte came from the backup, so
    #    data reads nothing and says so
    v['rbd_restore_snapshot'] = first
    out = bed.playbook(extra=v, playbook='ceph_rbd.backup.restore')
    assert '(rollback, 0 bytes' in out
    assert task_status(out, BACKUP_READ) == 'skipping' and task_status(out, RESTORED_READ) == 'skipping'
    assert 'Not read (data): rolled back to its own snapshot %s' % first in out
    assert bed.src.export_sha(pools, 'vm') == bed.dst.export_sha(pools, 'vm', first)

    # 5. rbd_restore_verify=full still reads both sides in full (here after the same rollback)
    out = bed.playbook(extra=dict(v, rbd_restore_verify='full'), playbook='ceph_rbd.backup.restore')
    assert '(rollback, 0 bytes' in out
    assert task_status(out, BACKUP_READ) == 'ok' and task_status(out, RESTORED_READ) == 'ok'
    assert 'Verified (full): equal digests of the snapshot on both clusters (%d bytes read' % (32 * MiB) in out


def test_status_reports_age_and_counts_and_fails_when_stale(bed, pools, tmp_path):
    bed.src.create(pools, 'fresh', 4 * MiB)
    bed.src.create(pools, 'never', 4 * MiB)
    bed.playbook(extra=role_vars(pools, rbd_replicate_images=['fresh']))
    textfile = '/tmp/rbd-status-%s.prom' % pools
    v = role_vars(pools, rbd_status_textfile=textfile)
    out = bed.playbook(extra=v, playbook='ceph_rbd.backup.status', expect_rc=2)
    assert '1 of 2 image(s) critical' in out and 'never: no backup image' in out
    metrics = open(textfile).read()
    assert 'ceph_rbd_backup_state{pool="%s",dest_pool="%s",image="never"} 2' % (pools, pools) in metrics
    assert 'ceph_rbd_backup_state{pool="%s",dest_pool="%s",image="fresh"} 0' % (pools, pools) in metrics
    args = dict(source_pool=pools, include=['fresh'], warn_age='0', crit_age='1d')
    args.update(bed.pull_args())
    r = bed.dst_module('rbd_replication_status', args)
    i = r['images'][0]
    assert i['state'] == 'warning' and i['source_snapshots'] == 1 and i['dest_snapshots'] == 1
    assert 0 <= i['age_seconds'] < 600 and i['newest_common'] == bed.dst.snaps(pools, 'fresh')[-1]


def test_deep_verify_finds_a_silently_corrupted_old_snapshot(bed, pools):
    for name in ('a', 'b'):
        bed.src.create(pools, name, 8 * MiB)
        bed.src.write(pools, name, 0, random_data(2 * MiB))
    bed.playbook(extra=role_vars(pools))
    bed.playbook(extra=role_vars(pools, rbd_replicate_images=[]))
    out = bed.playbook(extra=role_vars(pools), playbook='ceph_rbd.backup.verify_deep')
    assert 'failed=0' in out
    # rot one old backup snapshot: rewrite it by hand (remove, change, re-create with the same name)
    oldest = bed.dst.snaps(pools, 'b')[0]
    for s in bed.dst.snaps(pools, 'b')[1:]:
        bed.dst.run('snap', 'rm', '--pool', pools, '--image', 'b', '--snap', s)
    bed.dst.run('snap', 'rm', '--pool', pools, '--image', 'b', '--snap', oldest)
    bed.dst.write(pools, 'b', 100, b'x')
    bed.dst.snap(pools, 'b', oldest)
    out = bed.playbook(extra=role_vars(pools), playbook='ceph_rbd.backup.verify_deep', expect_rc=2)
    assert 'full digest mismatch' in out and '/b@' in out and 'failed for 1 of 2' in out
