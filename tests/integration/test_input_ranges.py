"""Bad numbers are refused before anything changes (issue #22): every numeric option of every module and every
numeric variable of the role, out of its range, is one error naming it - and neither cluster changed.

One pool pair for the whole table, in a state where each call, with good numbers, would change something: the
source has a snapshot the backup has not got (a transfer would send it, a prune with last: 0 would remove the
older one), a new snapshot name is free, the run lock is free, and the freeze hook of the groups rows writes an
image-meta key of the source image. What is compared after each row: both sides' images, snapshots, head
digests, image-meta, rbd locks, every RADOS object of the pool (the run lock's object appears when the lock is
taken) and the run lock.
"""

import os

import pytest

from conftest import random_data, role_vars
from test_modules import snap, transfer

MiB = 1 << 20
IMAGE = 'vm-7-disk-0'
OLD, NEW, FREE = 'backup-20260101T000000Z', 'backup-20260102T000000Z', 'backup-20260103T000000Z'
WORKDIR = '/tmp/rbd-file-restore.input-ranges-%d' % os.getpid()


@pytest.fixture(scope='module')
def pool(bed):
    """One pool pair for every row: IMAGE replicated at OLD, then written and snapshotted at NEW on the source."""
    name = 't%d-input-ranges' % (os.getpid() % 10000)
    for cluster in (bed.src, bed.dst):
        cluster.create_pool(name)
    try:
        bed.src.create(name, IMAGE, 4 * MiB)
        bed.src.write(name, IMAGE, 0, random_data(MiB, seed=22))
        snap(bed, name, IMAGE, OLD)
        transfer(bed, name, [IMAGE])
        bed.src.write(name, IMAGE, MiB, random_data(MiB, seed=23))
        snap(bed, name, IMAGE, NEW)
        yield name
    finally:
        for cluster in (bed.src, bed.dst):
            cluster.remove_pool(name)


def _side(cluster, pool):
    images = cluster.images(pool)
    lock = cluster.run('--pool', pool, '--format', 'json', 'lock', 'info', 'ceph_rbd_backup.lock', 'replicate',
                       tool='rados', check=False)
    return dict(state=cluster.state(pool),
                meta=dict((i, cluster.meta(pool, i)) for i in images),
                locks=dict((i, cluster.rbd_json('lock', 'ls', '--pool', pool, '--image', i)) for i in images),
                objects=sorted(cluster.run('--pool', pool, 'ls', tool='rados').stdout.decode().split()),
                run_lock=(lock.returncode, lock.stdout.decode()))


def _everything(bed, pool):
    return dict(source=_side(bed.src, pool), backup=_side(bed.dst, pool))


@pytest.fixture(scope='module')
def before(bed, pool):
    state = _everything(bed, pool)
    assert state['source']['state'][IMAGE][0] == [OLD, NEW] and state['backup']['state'][IMAGE][0] == [OLD]
    assert state['source']['run_lock'][0] != 0 and 'ceph_rbd_backup.lock' not in state['source']['objects']
    return state


def _hook(bed, pool):
    """A freeze hook that leaves a trace on the source image (image-meta 'hooked'), if it ever ran."""
    return ['rbd'] + bed.src.args() + ['image-meta', 'set', '--pool', pool, '--image', IMAGE, 'hooked', 'yes']


def _group(bed, pool, **extra):
    return [dict(dict(match=r'vm-(?P<vmid>\d+)-disk-\d+', freeze=_hook(bed, pool)), **extra)]


def _pull(bed, **remote):
    args = bed.pull_args()
    args['remote'].update(remote)
    return args


# (what runs, the bad option(s) as a function of (bed, pool), the words the error must hold)
MODULE_ROWS = [
    ('rbd_snapshot', lambda b, p: dict(timeout=0), 'timeout must be a whole number of seconds, from 1 to 86400; got 0'),
    ('rbd_snapshot', lambda b, p: dict(parallel=0), 'parallel must be a whole number, from 1 to 1024; got 0'),
    ('rbd_snapshot', lambda b, p: dict(groups=_group(b, p, timeout=0)),
     'groups[0].timeout must be a whole number of seconds, from 1 to 3600; got 0'),
    ('rbd_snapshot', lambda b, p: dict(groups=_group(b, p, remote=dict(host='127.0.0.1', port=0))),
     'groups[0].remote.port must be a TCP port, from 1 to 65535; got 0'),
    ('rbd_diff_transfer', lambda b, p: dict(max_streams=0), 'max_streams must be a whole number, from 1 to 64; got 0'),
    ('rbd_diff_transfer', lambda b, p: dict(compression='zstd', compression_level=-1),
     'compression_level must be a zstd level, from 1 to 19; got -1'),
    ('rbd_diff_transfer', lambda b, p: dict(compression_level=20),
     'compression_level must be a zstd level, from 1 to 19; got 20'),
    ('rbd_diff_transfer', lambda b, p: dict(live_import_wait=-1),
     'live_import_wait must be a whole number of seconds, from 0 to 3600; got -1'),
    ('rbd_diff_transfer', lambda b, p: dict(bwlimit='0'), "bwlimit must be bytes per second (like 50M), at least 1; got '0'"),
    ('rbd_diff_transfer', lambda b, p: dict(timeout=0), 'timeout must be a whole number of seconds, from 1 to 86400; got 0'),
    ('rbd_diff_transfer', lambda b, p: dict(parallel=0), 'parallel must be a whole number, from 1 to 1024; got 0'),
    ('rbd_diff_transfer', lambda b, p: dict(run_lock=dict(pool=p, run='bad-ttl', ttl=0)),
     'run_lock.ttl must be a whole number of seconds, from 1 to 604800; got 0'),
    ('rbd_diff_transfer', lambda b, p: dict(_pull(b, port=0)), 'remote.port must be a TCP port, from 1 to 65535; got 0'),
    ('rbd_snapshot_prune', lambda b, p: dict(parallel=0), 'parallel must be a whole number, from 1 to 1024; got 0'),
    ('rbd_snapshot_prune', lambda b, p: dict(timeout=86401),
     'timeout must be a whole number of seconds, from 1 to 86400; got 86401'),
    ('rbd_extent_verify', lambda b, p: dict(parallel=1025), 'parallel must be a whole number, from 1 to 1024; got 1025'),
    ('rbd_extent_verify', lambda b, p: dict(timeout=-1), 'timeout must be a whole number of seconds, from 1 to 86400; got -1'),
    ('rbd_image_info', lambda b, p: dict(parallel=0), 'parallel must be a whole number, from 1 to 1024; got 0'),
    ('rbd_replication_lock', lambda b, p: dict(ttl=0), 'ttl must be a whole number of seconds, from 1 to 604800; got 0'),
    ('rbd_replication_lock', lambda b, p: dict(ttl=604801),
     'ttl must be a whole number of seconds, from 1 to 604800; got 604801'),
    ('rbd_replication_lock', lambda b, p: dict(timeout=0), 'timeout must be a whole number of seconds, from 1 to 86400; got 0'),
    ('rbd_replication_status', lambda b, p: dict(warn_age='-1h'),
     "warn_age must be an age (seconds, or like 26h), at least 0; got '-1h'"),
    ('rbd_replication_status', lambda b, p: dict(crit_age='soon'),
     "crit_age must be an age (seconds, or like 26h), at least 0; got 'soon'"),
    ('rbd_replication_status', lambda b, p: dict(_pull(b, port=70000)),
     'remote.port must be a TCP port, from 1 to 65535; got 70000'),
    ('rbd_file_restore', lambda b, p: dict(partition=-1), 'partition must be a partition number, from 0 to 256; got -1'),
    ('rbd_file_restore', lambda b, p: dict(timeout=0), 'timeout must be a whole number of seconds, from 1 to 86400; got 0'),
]


def _good_args(bed, name, pool):
    """Arguments with which ``name`` would change something (or read, for the read-only ones)."""
    return dict(
        rbd_snapshot=lambda: ('source', dict(pool=pool, images=[IMAGE], snapshot=FREE, groups=_group(bed, pool))),
        rbd_diff_transfer=lambda: ('backup', dict(bed.pull_args(), source_pool=pool, images=[IMAGE])),
        rbd_snapshot_prune=lambda: ('source', dict(pool=pool, images=[IMAGE], retention=dict(last=0))),
        rbd_extent_verify=lambda: ('backup', dict(pool=pool, images=[IMAGE], snapshot=OLD)),
        rbd_image_info=lambda: ('backup', dict(pool=pool, snapshots=True)),
        rbd_replication_lock=lambda: ('source', dict(pool=pool, cookie='bad-input')),
        rbd_replication_status=lambda: ('backup', dict(bed.pull_args(), source_pool=pool)),
        rbd_file_restore=lambda: ('backup', dict(pool=pool, image=IMAGE, paths=['/etc/hosts'], workdir=WORKDIR,
                                                 archive=WORKDIR + '/files.tar')),
    )[name]()


@pytest.mark.parametrize('name, bad, message', MODULE_ROWS,
                         ids=['%s-%s' % (r[0], r[2].split(' ')[0]) for r in MODULE_ROWS])
def test_a_module_refuses_a_number_out_of_range_before_anything_changes(bed, pool, before, name, bad, message):
    side, args = _good_args(bed, name, pool)
    args.update(bad(bed, pool))
    run = bed.src_module if side == 'source' else bed.dst_module
    r = run(name, args, expect_failed=True)
    assert r['msg'] == message, r['msg']
    assert _everything(bed, pool) == before
    if name == 'rbd_file_restore':
        assert bed.host_sh('backup', 'sh', '-c', 'test -e %s && echo there || echo absent' % WORKDIR).strip() == 'absent'


ROLE_ROWS = [
    (dict(rbd_replicate_timeout=0), 'rbd_replicate_timeout must be a whole number of seconds, from 1 to 86400; got 0'),
    (dict(rbd_replicate_parallel=0), 'rbd_replicate_parallel must be a whole number, from 1 to 1024; got 0'),
    (dict(rbd_replicate_streams=0), 'rbd_replicate_streams must be a whole number, from 1 to 64; got 0'),
    (dict(rbd_replicate_streams=65), 'rbd_replicate_streams must be a whole number, from 1 to 64; got 65'),
    (dict(rbd_replicate_compression='zstd', rbd_replicate_compression_level=-1),
     'rbd_replicate_compression_level must be a zstd level, from 1 to 19; got -1'),
    (dict(rbd_replicate_bwlimit='0'), "rbd_replicate_bwlimit must be bytes per second (like 50M), at least 1; got '0'"),
    (dict(rbd_replicate_lock_ttl=0), 'rbd_replicate_lock_ttl must be a whole number of seconds, from 1 to 604800; got 0'),
    (dict(rbd_replicate_ssh_port=70000), 'rbd_replicate_ssh_port must be a TCP port'),
    ('groups', 'rbd_replicate_consistency_groups[0].timeout must be a whole number of seconds, from 1 to 3600; got 0'),
]


@pytest.mark.parametrize('bad, message', ROLE_ROWS, ids=[r[1].split(' ')[0] for r in ROLE_ROWS])
def test_the_role_refuses_a_number_out_of_range_before_anything_changes(bed, pool, before, bad, message):
    if bad == 'groups':      # with a freeze hook that would leave its trace
        bad = dict(rbd_replicate_consistency_groups=_group(bed, pool, timeout=0))
    out = bed.playbook(extra=role_vars(pool, **bad), expect_rc=2)
    assert message in out, out[-3000:]
    assert 'Check the numbers before anything changes' in out and 'Take the replication lock' not in out, out[-3000:]
    assert _everything(bed, pool) == before
