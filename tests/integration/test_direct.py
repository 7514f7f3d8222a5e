"""transport: direct (#13) - both rbd ends on the backup host, each against its own cluster, a local pipe.

The source cluster is read with a read-only cephx user (mon 'profile rbd', osd 'profile rbd-read-only
pool=...') whose keyring lives on the backup host; on the test bed both "hosts" are this machine.
"""

import os
import subprocess

from conftest import random_data, role_vars
from test_modules import snap
from test_replicate import assert_replicated

MiB = 1 << 20


def _direct_ro_user(bed, pool):
    """client.direct-ro on the source cluster, its keyring in a directory standing for the backup host's."""
    where = os.path.join(bed.dir, 'backup', 'direct')
    os.makedirs(where, exist_ok=True)
    keyring = os.path.join(where, 'source.client.direct-ro.%s.keyring' % pool)
    user = 'direct-ro-%s' % pool
    out = bed.src.run('auth', 'get-or-create', 'client.' + user, 'mon', 'profile rbd',
                      'osd', 'profile rbd-read-only pool=%s' % pool, tool='ceph').stdout
    with open(keyring, 'wb') as f:
        f.write(out)
    return dict(conf=bed.src.conf, user=user, keyring=keyring)


def _drop_user(bed, ro):
    bed.src.run('auth', 'rm', 'client.' + ro['user'], tool='ceph', check=False)


def test_module_direct_first_incremental_check_and_digest(bed, pools):
    ro = _direct_ro_user(bed, pools)
    try:
        bed.src.create(pools, 'vm', 32 * MiB)
        bed.src.write(pools, 'vm', 0, random_data(3 * MiB))
        snap(bed, pools, 'vm', 'backup-a')
        # no remote: nothing is reached over ssh; the source is read with the read-only user
        args = dict(mode='direct', source_ceph=ro, source_pool=pools, images=['vm'], digest='data',
                    run_lock=dict(pool=pools, run='direct-test', renew=False))
        r = bed.dst_module('rbd_diff_transfer', args)
        img = r['images'][0]
        assert img['action'] == 'initial' and img['snapshot'] == 'backup-a' and img['digest']
        assert bed.src.export_sha(pools, 'vm', 'backup-a') == bed.dst.export_sha(pools, 'vm', 'backup-a')

        bed.src.write(pools, 'vm', 20 * MiB, random_data(MiB))
        snap(bed, pools, 'vm', 'backup-b')
        before = (bed.src.state(pools), bed.dst.state(pools))
        r = bed.dst_module('rbd_diff_transfer', args, check=True)
        assert r['images'][0]['action'] == 'incremental' and r['images'][0]['base'] == 'backup-a'
        assert (bed.src.state(pools), bed.dst.state(pools)) == before          # check mode changed nothing

        r = bed.dst_module('rbd_diff_transfer', args)
        img = r['images'][0]
        assert img['action'] == 'incremental' and img['base'] == 'backup-a'
        assert MiB <= img['data_bytes'] < 1.1 * MiB, img
        assert bed.src.export_sha(pools, 'vm', 'backup-b') == bed.dst.export_sha(pools, 'vm', 'backup-b')
        # the in-stream digest is what the destination's snapshot holds
        item = dict(image='vm', snapshot='backup-b', from_snapshot='backup-a')
        v = bed.dst_module('rbd_extent_verify', dict(pool=pools, images=[item], method='data', expected=[img]))
        assert not v['failed_images'], v
    finally:
        _drop_user(bed, ro)


def test_direct_without_source_cluster_is_refused(bed, pools):
    bed.src.create(pools, 'vm', 4 * MiB)
    r = bed.dst_module('rbd_diff_transfer', dict(mode='direct', source_pool=pools, images=['vm']), expect_failed=True)
    assert 'source_ceph' in r['msg'], r['msg']
    # the backup cluster's own options as the source, same pool: the images would be imported into themselves
    r = bed.dst_module('rbd_diff_transfer', dict(mode='direct', source_ceph=bed.dst.ceph_args(), source_pool=pools,
                                                 images=['vm']), expect_failed=True)
    assert 'imported into themselves' in r['msg'], r['msg']


def test_role_direct_read_only_source_byte_identical_and_check(bed, pools):
    ro = _direct_ro_user(bed, pools)
    try:
        bed.src.create(pools, 'disk-a', 64 * MiB)
        bed.src.create(pools, 'disk-b', 16 * MiB)
        bed.src.write(pools, 'disk-a', 0, random_data(4 * MiB))
        bed.src.write(pools, 'disk-b', MiB, random_data(2 * MiB))
        extra = role_vars(pools, rbd_replicate_transport='direct', rbd_replicate_direct_ceph=ro,
                          rbd_replicate_lock_renew=False)

        out = bed.playbook(extra=extra)
        assert 'failed=0' in out
        assert 'Send what changed (direct)' in out
        for name in ('disk-a', 'disk-b'):
            assert len(assert_replicated(bed, pools, name)) == 1

        # a change of unique random data: only it is sent, and both sides export the same bytes
        bed.src.write(pools, 'disk-a', 32 * MiB, random_data(2 * MiB))
        out = bed.playbook(extra=extra)
        line = [x for x in out.splitlines() if '/disk-a:' in x and 'incremental' in x][0]
        # export-diff may round a partly written object up to its end (4 MiB objects)
        assert 2 * MiB <= int(line.split(' bytes')[0].split()[-1]) <= 4.1 * MiB, line
        assert ' verified' in line, line
        for name in ('disk-a', 'disk-b'):
            common = assert_replicated(bed, pools, name)
            assert len(common) == 2
            head_snap = common[-1]
            assert bed.src.export_sha(pools, name, head_snap) == bed.dst.export_sha(pools, name, head_snap)

        # --check changes nothing on either cluster
        bed.src.write(pools, 'disk-b', 0, random_data(MiB))
        before = (bed.src.state(pools), bed.dst.state(pools))
        out = bed.playbook(extra=extra, check=True)
        assert 'failed=0' in out
        assert (bed.src.state(pools), bed.dst.state(pools)) == before

        # the read-only user the transfer read with cannot write to the source
        base = ['rbd', '--conf', ro['conf'], '--id', ro['user'], '--keyring', ro['keyring']]
        snaps = bed.src.snaps(pools, 'disk-a')
        denied = subprocess.run(base + ['snap', 'create', '--pool', pools, '--image', 'disk-a', '--snap', 'evil'],
                                capture_output=True, text=True, timeout=120, check=False)
        assert denied.returncode != 0 and bed.src.snaps(pools, 'disk-a') == snaps, denied.stderr
        diff = subprocess.run(base + ['export-diff', '--no-progress', '--pool', pools, '--image', 'disk-a', '--snap',
                                      snaps[-1], '-'], capture_output=True, timeout=120, check=True).stdout
        head = bed.src.export_sha(pools, 'disk-a')
        write = subprocess.run(base + ['import-diff', '--no-progress', '-', '%s/disk-a' % pools], input=diff,
                               capture_output=True, timeout=120, check=False)
        assert write.returncode != 0, write.stderr
        assert bed.src.export_sha(pools, 'disk-a') == head and bed.src.snaps(pools, 'disk-a') == snaps
    finally:
        _drop_user(bed, ro)


def test_role_direct_needs_the_source_cluster(bed, pools):
    bed.src.create(pools, 'vm', 4 * MiB)
    out = bed.playbook(extra=role_vars(pools, rbd_replicate_transport='direct'), expect_rc=2)
    assert 'rbd_replicate_direct_ceph' in out
    assert bed.dst.images(pools) == []
