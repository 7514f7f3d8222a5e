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
    assert 'The destination pool no-such-pool does not exist on backup' in out
    assert bed.src.snaps(pools, 'x') == []   # nothing was changed before the error
