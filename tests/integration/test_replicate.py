"""The whole nightly path through the role and playbook, on the two real clusters."""

import os

from conftest import REPO, mixed_chunk, random_data, role_vars

MiB = 1 << 20


def assert_replicated(bed, pool, image):
    """Every snapshot on both sides holds the same bytes (rbd export | sha256sum) and size."""
    src_snaps = bed.src.snaps(pool, image)
    dst_snaps = bed.dst.snaps(pool, image)
    common = [s for s in src_snaps if s in dst_snaps]
    assert common, (src_snaps, dst_snaps)
    for snap in common:
        assert bed.src.size(pool, image, snap) == bed.dst.size(pool, image, snap), snap
        assert bed.src.export_sha(pool, image, snap) == bed.dst.export_sha(pool, image, snap), (image, snap)
    return common


def test_first_run_copies_everything_second_sends_only_changes(bed, pools):
    names = ['disk-a', 'disk-b', 'disk with spaces', "q'uote\"$(touch pwned-rbd);x`touch pwned-rbd`"]
    for i, name in enumerate(names):
        bed.src.create(pools, name, 64 * MiB)
        # unique random data and zero runs: rbd bench's constant bytes would prove nothing
        bed.src.write(pools, name, 0, mixed_chunk(4 * MiB, seed=i))
        bed.src.write(pools, name, 40 * MiB, random_data(MiB, seed=100 + i))

    out = bed.playbook(extra=role_vars(pools))
    assert 'failed=0' in out
    for name in names:
        assert name in bed.dst.images(pools)
        common = assert_replicated(bed, pools, name)
        assert len(common) == 1
    first_snap = bed.dst.snaps(pools, 'disk-a')[-1]
    for where in ('/root', str(REPO), '/'):
        assert not os.path.exists(os.path.join(where, 'pwned-rbd'))

    # Change 1 MiB of one image only.
    bed.src.write(pools, 'disk-a', 8 * MiB, random_data(MiB, seed=7))
    out = bed.playbook(extra=role_vars(pools))
    summary = [line for line in out.splitlines() if 'incremental' in line]
    # disk-a sent ~1 MiB of data, the unchanged ones sent almost nothing.
    a_line = [line for line in summary if '/disk-a:' in line][0]
    sent_a = int(a_line.split(' bytes')[0].split()[-1])
    assert MiB <= sent_a < 1.2 * MiB, a_line
    b_line = [line for line in summary if '/disk-b:' in line][0]
    sent_b = int(b_line.split(' bytes')[0].split()[-1])
    assert sent_b < 4096, b_line
    # nothing written to disk-b: its snapshot was made without a stream, so there is nothing to verify
    assert ' unchanged' in b_line and ' verified' not in b_line, b_line
    assert ' verified' in a_line and ' unchanged' not in a_line, a_line
    for name in names:
        common = assert_replicated(bed, pools, name)
        assert first_snap in common and len(common) == 2
    assert bed.dst.read(pools, 'disk-a', 8 * MiB, MiB, snap=bed.dst.snaps(pools, 'disk-a')[-1]) == \
        random_data(MiB, seed=7)


def test_push_mode_and_zstd(bed, pools):
    bed.src.create(pools, 'pushed', 32 * MiB)
    bed.src.write(pools, 'pushed', 0, mixed_chunk(8 * MiB, seed=3))
    extra = role_vars(pools, rbd_replicate_transport='push', rbd_replicate_compression='zstd')
    bed.playbook(extra=extra)
    bed.src.write(pools, 'pushed', 16 * MiB, random_data(MiB, seed=4))
    out = bed.playbook(extra=extra)
    assert 'incremental' in out
    assert len(assert_replicated(bed, pools, 'pushed')) == 2


def test_missing_destination_pool_is_a_clear_error(bed, pools):
    bed.src.create(pools, 'x', MiB)
    extra = dict(rbd_replicate_pools=[dict(pool=pools, dest_pool='no-such-pool')])
    out = bed.playbook(extra=extra, expect_rc=2)
    assert 'the pool no-such-pool does not exist on this cluster: create it first' in out and 'backup' in out
    assert bed.src.snaps(pools, 'x') == []   # nothing was changed before the error


def test_check_mode_changes_nothing_and_reports(bed, pools):
    bed.src.create(pools, 'vm', 32 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(2 * MiB, seed=1))
    bed.src.create(pools, 'new', 8 * MiB)
    bed.src.write(pools, 'new', 0, random_data(MiB, seed=2))
    bed.playbook(extra=role_vars(pools, rbd_replicate_images=['vm']))
    bed.src.write(pools, 'vm', 4 * MiB, random_data(3 * MiB, seed=3))
    before = (bed.src.state(pools), bed.dst.state(pools))
    out = bed.playbook(extra=role_vars(pools), check=True)
    after = (bed.src.state(pools), bed.dst.state(pools))
    assert before == after
    lines = out.splitlines()
    vm = [line for line in lines if '/vm: incremental' in line]
    new = [line for line in lines if '/new: initial' in line]
    assert vm and new, out[-3000:]
    assert ' %d bytes' % (3 * MiB) in vm[0], vm[0]
    assert ' %d bytes' % MiB in new[0], new[0]


def test_retention_through_the_role_keeps_exactly_and_never_the_base(bed, pools):
    import time
    bed.src.create(pools, 'vm', 8 * MiB)
    extra = role_vars(pools, rbd_replicate_retention_source=dict(last=2),
                      rbd_replicate_retention_dest=dict(last=3))
    made = []
    for i in range(5):
        bed.src.write(pools, 'vm', 0, random_data(MiB, seed=20 + i))
        bed.playbook(extra=extra)
        made.append(bed.dst.snaps(pools, 'vm')[-1])
        time.sleep(1.1)    # names are stamped to the second
    assert len(set(made)) == 5
    assert bed.src.snaps(pools, 'vm') == made[-2:]
    assert bed.dst.snaps(pools, 'vm') == made[-3:]
    assert_replicated(bed, pools, 'vm')
    # A retention of last: 0 still never removes the newest common snapshot (the next base).
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=30))
    bed.playbook(extra=role_vars(pools, rbd_replicate_retention_source=dict(last=0),
                                 rbd_replicate_retention_dest=dict(last=0)))
    newest = bed.dst.snaps(pools, 'vm')
    assert len(newest) == 1 and bed.src.snaps(pools, 'vm') == newest


def test_one_failing_image_does_not_stop_the_others(bed, pools):
    bed.src.create(pools, 'good', 4 * MiB)
    bed.src.create(pools, 'bad', 4 * MiB)
    bed.src.write(pools, 'good', 0, random_data(MiB, seed=1))
    bed.playbook(extra=role_vars(pools))
    # Make 'bad' fail: someone wrote to its backup copy.
    bed.dst.write(pools, 'bad', 0, random_data(4096, seed=9))
    bed.src.write(pools, 'good', MiB, random_data(MiB, seed=2))
    out = bed.playbook(extra=role_vars(pools), expect_rc=2)
    assert '1 image(s) failed' in out and '/bad' in out and 'allow_rollback' in out
    assert len(bed.dst.snaps(pools, 'good')) == 2
    assert_replicated(bed, pools, 'good')


def test_unchanged_source_but_grown_destination_is_streamed_not_just_snapshotted(bed, pools):
    """rbd diff shows no write for a grow: a snapshot made on that head would be the wrong size."""
    bed.src.create(pools, 'grown', 8 * MiB)
    bed.src.write(pools, 'grown', 0, random_data(MiB, seed=11))
    bed.playbook(extra=role_vars(pools))
    bed.dst.run('resize', '--size', '16M', '--pool', pools, '--image', 'grown')
    assert bed.dst.rbd_json('diff', '--pool', pools, '--image', 'grown',
                            '--from-snap', bed.dst.snaps(pools, 'grown')[-1]) == []
    out = bed.playbook(extra=role_vars(pools))
    line = [x for x in out.splitlines() if '/grown:' in x][0]
    assert ' unchanged' not in line and ' verified' in line, line
    common = assert_replicated(bed, pools, 'grown')
    assert len(common) == 2 and bed.dst.size(pools, 'grown') == 8 * MiB


def _task_status(out, name):
    """'ok', 'changed', 'skipping' or 'failed' for the first run of the task called ``name``."""
    lines = out.splitlines()
    at = [i for i, line in enumerate(lines) if line.startswith('TASK [') and name in line][0]
    for line in lines[at + 1:]:
        for status in ('ok', 'changed', 'skipping', 'failed', 'fatal'):
            if line.startswith(status + ':'):
                return status
    return None


def test_verify_variants_through_the_role(bed, pools):
    """extents and data against the stream's digest (no source task), data with a second source read."""
    bed.src.create(pools, 'vm', 16 * MiB)
    runs = [dict(rbd_replicate_verify='extents'), dict(rbd_replicate_verify='data'),
            dict(rbd_replicate_verify='data', rbd_replicate_verify_source='read')]
    for n, extra in enumerate(runs):
        bed.src.write(pools, 'vm', n * 4 * MiB, random_data(2 * MiB, seed=50 + n))
        out = bed.playbook(extra=role_vars(pools, **extra))
        line = [x for x in out.splitlines() if '/vm:' in x][0]
        assert ' verified' in line, (extra, line)
        source_task = _task_status(out, 'Digest the sent snapshots on the source')
        assert source_task == ('ok' if extra.get('rbd_replicate_verify_source') == 'read' else 'skipping'), extra
        assert _task_status(out, 'Compare them on the destination') == 'ok', extra
    assert len(assert_replicated(bed, pools, 'vm')) >= 2


def _rot_backup_object(bed, pool, image, offset):
    """Damage the backup's data the way bit rot or a hand edit would: overwrite 4 KiB of a RADOS object of
    the image with no snapshot context. No clone is made, so the image's snapshots read the damage too,
    and no object map changes: `rbd diff --from-snap` stays empty, nothing in rbd can see it."""
    prefix = bed.dst.rbd_json('info', '--pool', pool, '--image', image)['block_name_prefix']
    obj = '%s.%016x' % (prefix, offset // (4 * MiB))
    junk = os.path.join(bed.dir, 'rot-%s' % pool)
    with open(junk, 'wb') as f:
        f.write(random_data(4096, seed=99))
    bed.dst.run('--pool', pool, 'put', obj, junk, '--offset', str(offset % (4 * MiB)), tool='rados')


def test_full_verify_catches_damage_to_a_backup_that_had_no_change(bed, pools):
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(6 * MiB, seed=11))
    bed.playbook(extra=role_vars(pools, rbd_replicate_verify='full'))
    base = bed.dst.snaps(pools, 'vm')[-1]
    _rot_backup_object(bed, pools, 'vm', 5 * MiB)
    assert bed.src.export_sha(pools, 'vm', base) != bed.dst.export_sha(pools, 'vm', base)

    # data proves what was sent; nothing was written on the source, so nothing is sent nor read back
    out = bed.playbook(extra=role_vars(pools, rbd_replicate_verify='data'))
    line = [x for x in out.splitlines() if '/vm:' in x][0]
    assert ' unchanged' in line and 'FAILED' not in line, line
    # full reads the whole new snapshot on both sides every night, sent or not, and finds the damage
    out = bed.playbook(extra=role_vars(pools, rbd_replicate_verify='full'), expect_rc=2)
    line = [x for x in out.splitlines() if '/vm:' in x and 'FAILED' in x][0]
    assert 'full digest mismatch' in line, line
    assert '1 image(s) failed: %s/vm' % pools in out, out[-3000:]
