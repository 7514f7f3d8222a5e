"""Each module ad hoc (ansible HOST -m ceph_rbd.backup.X) against the real clusters."""

import struct
import subprocess

from conftest import mixed_chunk, random_data

MiB = 1 << 20


def snap(bed, pool, image, name):
    return bed.src_module('rbd_snapshot', dict(pool=pool, images=[image], snapshot=name))


def transfer(bed, pool, images, **kw):
    args = dict(source_pool=pool, images=images)
    args.update(bed.pull_args())
    expect_failed = kw.pop('expect_failed', False)
    check = kw.pop('check', False)
    args.update(kw)
    return bed.dst_module('rbd_diff_transfer', args, expect_failed=expect_failed, check=check)


def verify(bed, side, pool, images, method='data', expected=None, expect_failed=False):
    args = dict(pool=pool, images=images, method=method)
    if expected is not None:
        args['expected'] = expected
    fn = bed.src_module if side == 'src' else bed.dst_module
    return fn('rbd_extent_verify', args, expect_failed=expect_failed)


def test_rbd_snapshot_adhoc_idempotent_check_and_diff(bed, pools):
    bed.src.create(pools, 'img', MiB)
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], snapshot='backup-manual'), check=True)
    assert r['changed'] and bed.src.snaps(pools, 'img') == []
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], snapshot='backup-manual'), diff=True)
    assert r['changed'] and '+        "backup-manual"' in r['_stdout'], r['_stdout']
    assert bed.src.snaps(pools, 'img') == ['backup-manual']
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], snapshot='backup-manual'))
    assert not r['changed']
    # a generated name: prefix + UTC stamp
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], prefix='nightly-'))
    assert r['snapshot'].startswith('nightly-') and r['snapshot'].endswith('Z')
    # foreign (unprefixed) snapshots are never removed
    bed.src.snap(pools, 'img', 'keepme')
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], snapshot='keepme', state='absent'),
                       expect_failed=True)
    assert 'does not start with the prefix' in r['msg']
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img'], snapshot='backup-manual', state='absent'))
    assert r['changed'] and 'backup-manual' not in bed.src.snaps(pools, 'img')
    # one missing image fails by name, the others still get their snapshot
    r = bed.src_module('rbd_snapshot', dict(pool=pools, images=['img', 'nope'], snapshot='backup-2'),
                       expect_failed=True)
    assert 'nope' in r['msg'] and r['failed_images'] == ['nope']
    assert 'backup-2' in bed.src.snaps(pools, 'img')


def test_rbd_snapshot_lists_the_pool_with_include_and_exclude(bed, pools):
    for name in ('vm-1', 'vm-2', 'vm-2-scratch', 'db'):
        bed.src.create(pools, name, MiB)
    r = bed.src_module('rbd_snapshot', dict(pool=pools, include=['vm-*'], exclude=['*-scratch'], snapshot='backup-a'),
                       check=True)
    assert r['names'] == ['vm-1', 'vm-2'] and r['changed']
    assert bed.src.snaps(pools, 'vm-1') == []                       # check mode changed nothing
    r = bed.src_module('rbd_snapshot', dict(pool=pools, include=['vm-*'], exclude=['*-scratch'], snapshot='backup-a'))
    assert r['names'] == ['vm-1', 'vm-2']
    assert [bed.src.snaps(pools, n) for n in ('vm-1', 'vm-2', 'vm-2-scratch', 'db')] == [
        ['backup-a'], ['backup-a'], [], []]
    # what the transfer is handed: the snapshot list, the previous one, and whether anything changed
    bed.src.write(pools, 'vm-2', 0, random_data(4096, seed=3))
    r = bed.src_module('rbd_snapshot', dict(pool=pools, include=['vm-*'], exclude=['*-scratch'], snapshot='backup-b'))
    by = dict((i['image'], i) for i in r['images'])
    assert by['vm-1']['previous'] == 'backup-a' and by['vm-1']['unchanged'] is True
    assert by['vm-2']['previous'] == 'backup-a' and by['vm-2']['unchanged'] is False
    assert [s['name'] for s in by['vm-1']['snapshots']] == ['backup-a', 'backup-b']
    # a missing pool fails before anything is done, and says so
    r = bed.src_module('rbd_snapshot', dict(pool=pools + '-gone', include=['*']), expect_failed=True)
    assert r['pool_exists'] is False and 'does not exist' in r['msg']
    r = bed.src_module('rbd_replication_lock', dict(pool=pools + '-gone'), expect_failed=True)
    assert r['pool_exists'] is False and 'pool %s-gone does not exist' % pools in r['msg']
    # images and include together are refused
    r = bed.src_module('rbd_snapshot', dict(pool=pools, include=['*'], images=['db']), expect_failed=True)
    assert 'mutually exclusive' in r['msg']


def test_base_is_newest_common_after_skipped_days_and_two_runs_a_day(bed, pools):
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-20261120T010000Z')
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert r['action'] == 'initial' and r['snapshot'] == 'backup-20261120T010000Z'

    # Three nights where the transfer never happened: only source snapshots.
    for day, seed in ((21, 2), (22, 3), (23, 4)):
        bed.src.write(pools, 'vm', seed * MiB, random_data(MiB, seed=seed))
        snap(bed, pools, 'vm', 'backup-202611%02dT010000Z' % day)
    r = transfer(bed, pools, ['vm'])['images'][0]
    assert (r['action'], r['base'], r['snapshot']) == \
        ('incremental', 'backup-20261120T010000Z', 'backup-20261123T010000Z')
    assert 3 * MiB <= r["data_bytes"] <= 4 * MiB   # rbd diff granularity may round up within an object

    # Two runs on one day.
    for hour, seed in ((1, 5), (13, 6)):
        bed.src.write(pools, 'vm', 10 * MiB, random_data(MiB, seed=seed))
        name = 'backup-20261124T%02d0000Z' % hour
        snap(bed, pools, 'vm', name)
        r = transfer(bed, pools, ['vm'])['images'][0]
        assert r['action'] == 'incremental' and r['snapshot'] == name
    assert r['base'] == 'backup-20261124T010000Z'
    # Again: nothing to do, and that is not a change.
    r2 = transfer(bed, pools, ['vm'])
    assert not r2['changed'] and r2['images'][0]['action'] == 'up_to_date'
    for s in bed.dst.snaps(pools, 'vm'):
        assert bed.src.export_sha(pools, 'vm', s) == bed.dst.export_sha(pools, 'vm', s)


def _first_data_byte(stream):
    """Offset in an rbd diff v1 stream of the first byte of data of the first 'w' record."""
    pos = len(b'rbd diff v1\n')
    while True:
        tag = stream[pos:pos + 1]
        if tag in (b'f', b't'):
            pos += 5 + struct.unpack('<I', stream[pos + 1:pos + 5])[0]
        elif tag == b's':
            pos += 9
        elif tag == b'z':
            pos += 17
        elif tag == b'w':
            return pos + 17
        else:
            raise AssertionError('no write record in the stream')


def test_corrupted_import_caught_by_data_not_by_extents(bed, pools):
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(2 * MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    bed.src.write(pools, 'vm', 4 * MiB, random_data(2 * MiB, seed=2))
    snap(bed, pools, 'vm', 'backup-b')

    # Import by hand a diff stream with one data byte flipped.
    stream = bed.src.run('export-diff', '--no-progress', '--pool', pools, '--image', 'vm', '--snap', 'backup-b',
                         '--from-snap', 'backup-a', '-').stdout
    at = _first_data_byte(stream) + 12345
    bad = stream[:at] + bytes([stream[at] ^ 0x01]) + stream[at + 1:]
    bed.dst.run('import-diff', '--no-progress', '--pool', pools, '--image', 'vm', '-', input=bad)
    assert bed.dst.snaps(pools, 'vm') == ['backup-a', 'backup-b']

    item = [dict(image='vm', from_snapshot='backup-a', snapshot='backup-b')]
    for method in ('data', 'extents'):
        src = verify(bed, 'src', pools, item, method=method)
        if method == 'extents':
            dst = verify(bed, 'dst', pools, item, method=method, expected=src['images'])
            assert dst['images'][0]['match'] is True      # the old script's check passes the corruption
        else:
            dst = verify(bed, 'dst', pools, item, method=method, expected=src['images'], expect_failed=True)
            assert dst['failed_images'] == ['vm']
            msg = dst['msg']
            assert 'vm' in msg and src['images'][0]['digest'] in msg and 'mismatch' in msg
    # method full sees it too
    src = verify(bed, 'src', pools, [dict(image='vm', snapshot='backup-b')], method='full')
    verify(bed, 'dst', pools, [dict(image='vm', snapshot='backup-b')], method='full', expected=src['images'],
           expect_failed=True)


def test_stream_digest_agrees_with_both_reads_and_catches_a_corrupt_copy(bed, pools):
    """digest=true: the transfer hashes what it sends; that digest equals a read of the source and of the
    destination (zero runs included), and the destination verify fails on a copy with one byte flipped."""
    bed.src.create(pools, 'vm', 32 * MiB)
    bed.src.write(pools, 'vm', 0, mixed_chunk(4 * MiB, seed=21))
    snap(bed, pools, 'vm', 'backup-a')
    first = transfer(bed, pools, ['vm'], digest='data')['images'][0]
    assert first['action'] == 'initial' and len(first['digest']) == 64 and first['extents']
    for i in range(3):
        bed.src.write(pools, 'vm', (5 + 6 * i) * MiB, mixed_chunk(3 * MiB, seed=30 + i))
    snap(bed, pools, 'vm', 'backup-b')
    sent = transfer(bed, pools, ['vm'], digest='data')['images'][0]
    assert sent['action'] == 'incremental' and sent['method'] == 'data'
    item = [dict(image='vm', from_snapshot='backup-a', snapshot='backup-b')]
    src = verify(bed, 'src', pools, item)['images'][0]
    assert src['digest'] == sent['digest']           # the stream carried exactly what the source holds
    dst = verify(bed, 'dst', pools, item, expected=[sent])['images'][0]
    assert dst['match'] is True and dst['digest'] == sent['digest']
    assert dst['bytes_read'] == sum(n for _o, n in sent['extents'])
    # digest=extents: the stream's records are the source's rbd diff list
    bed.src.write(pools, 'vm', 30 * MiB, mixed_chunk(MiB, seed=40))
    snap(bed, pools, 'vm', 'backup-c')
    sent_c = transfer(bed, pools, ['vm'], digest='extents')['images'][0]
    item_c = [dict(image='vm', from_snapshot='backup-b', snapshot='backup-c')]
    assert sent_c['method'] == 'extents' and 'extents' not in sent_c
    assert verify(bed, 'src', pools, item_c, method='extents')['images'][0]['digest'] == sent_c['digest']
    # a night that rewrote most of the image: both sides read it with one rbd export (dense), same digests
    bed.src.write(pools, 'vm', 0, mixed_chunk(24 * MiB, seed=41))
    snap(bed, pools, 'vm', 'backup-d')
    sent_d = transfer(bed, pools, ['vm'], digest='data')['images'][0]
    item_d = [dict(image='vm', from_snapshot='backup-c', snapshot='backup-d')]
    assert sum(n for _o, n in sent_d['extents']) >= 16 * MiB
    assert verify(bed, 'src', pools, item_d)['images'][0]['digest'] == sent_d['digest']
    assert verify(bed, 'dst', pools, item_d, expected=[sent_d])['images'][0]['match'] is True
    bed.dst.create(pools, 'evil2', 32 * MiB)
    bed.dst.run('import-diff', '--no-progress', '--pool', pools, '--image', 'evil2', '-', input=bed.src.run(
        'export-diff', '--no-progress', '--pool', pools, '--image', 'vm', '--snap', 'backup-c', '-').stdout)
    stream = bed.src.run('export-diff', '--no-progress', '--pool', pools, '--image', 'vm', '--snap', 'backup-d',
                         '--from-snap', 'backup-c', '-').stdout
    at = _first_data_byte(stream) + 3 * MiB + 17
    bed.dst.run('import-diff', '--no-progress', '--pool', pools, '--image', 'evil2', '-',
                input=stream[:at] + bytes([stream[at] ^ 0x04]) + stream[at + 1:])
    verify(bed, 'dst', pools, [dict(image='evil2', snapshot='backup-d')], expected=[dict(sent_d, image='evil2')],
           expect_failed=True)

    # A destination copy with one data byte flipped (hand-imported) fails against the stream's digest.
    bed.dst.create(pools, 'evil', 32 * MiB)
    full = bed.src.run('export-diff', '--no-progress', '--pool', pools, '--image', 'vm', '--snap', 'backup-a',
                       '-').stdout
    bed.dst.run('import-diff', '--no-progress', '--pool', pools, '--image', 'evil', '-', input=full)
    stream = bed.src.run('export-diff', '--no-progress', '--pool', pools, '--image', 'vm', '--snap', 'backup-b',
                         '--from-snap', 'backup-a', '-').stdout
    at = _first_data_byte(stream) + 4321
    bed.dst.run('import-diff', '--no-progress', '--pool', pools, '--image', 'evil', '-',
                input=stream[:at] + bytes([stream[at] ^ 0x10]) + stream[at + 1:])
    evil = dict(sent, image='evil')
    bad = verify(bed, 'dst', pools, [dict(image='evil', snapshot='backup-b')], expected=[evil], expect_failed=True)
    assert bad['failed_images'] == ['evil'] and sent['digest'] in bad['msg']


def test_data_verify_passes_where_extent_lists_differ(bed, pools):
    """import-diff re-sparsifies zeros: extent lists differ, data is identical."""
    bed.src.create(pools, 'vm', 32 * MiB)
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    for i in range(4):
        bed.src.write(pools, 'vm', i * 4 * MiB, mixed_chunk(4 * MiB, seed=10 + i))
    snap(bed, pools, 'vm', 'backup-b')
    transfer(bed, pools, ['vm'])
    item = [dict(image='vm', from_snapshot='backup-a', snapshot='backup-b')]
    src = verify(bed, 'src', pools, item, method='data')
    dst = verify(bed, 'dst', pools, item, method='data', expected=src['images'])
    assert dst['images'][0]['match'] is True
    assert src['images'][0]['bytes_read'] == 16 * MiB
    assert bed.src.export_sha(pools, 'vm', 'backup-b') == bed.dst.export_sha(pools, 'vm', 'backup-b')
    own_src = verify(bed, 'src', pools, item, method='extents')['images'][0]
    own_dst = verify(bed, 'dst', pools, item, method='extents')['images'][0]
    # The old script's check would have raised a false alarm here.
    assert own_src['digest'] != own_dst['digest']


def test_destination_modified_is_refused_then_rolled_back_when_allowed(bed, pools):
    bed.src.create(pools, 'vm', 16 * MiB)
    bed.src.write(pools, 'vm', 0, random_data(MiB, seed=1))
    snap(bed, pools, 'vm', 'backup-a')
    transfer(bed, pools, ['vm'])
    bed.dst.write(pools, 'vm', 2 * MiB, random_data(MiB, seed=99))    # someone mapped and wrote the backup
    bed.src.write(pools, 'vm', 5 * MiB, random_data(MiB, seed=2))
    snap(bed, pools, 'vm', 'backup-b')
    r = transfer(bed, pools, ['vm'], expect_failed=True)
    assert 'modified since its snapshot backup-a' in r['msg'] and 'allow_rollback' in r['msg']
    assert bed.dst.snaps(pools, 'vm') == ['backup-a']
    r = transfer(bed, pools, ['vm'], allow_rollback=True)
    assert r['images'][0]['rolled_back'] is True
    assert bed.src.export_sha(pools, 'vm', 'backup-b') == bed.dst.export_sha(pools, 'vm', 'backup-b')


def test_prune_adhoc_keeps_exactly_the_policy_and_the_base(bed, pools):
    bed.src.create(pools, 'vm', MiB)
    names = ['backup-20260901T010000Z', 'backup-20261001T010000Z', 'backup-20261101T010000Z',
             'backup-20261118T010000Z', 'backup-20261119T010000Z', 'backup-20261119T130000Z',
             'backup-20261120T010000Z', 'backup-20261121T010000Z', 'backup-20261122T010000Z']
    for n in names:
        bed.src.snap(pools, 'vm', n)
    bed.src.snap(pools, 'vm', 'foreign-snap')
    args = dict(pool=pools, images=[dict(image='vm', keep=['backup-20260901T010000Z'])],
                retention=dict(last=2, daily=3, monthly=3))
    r = bed.src_module('rbd_snapshot_prune', args, check=True)
    # last 2: 22nd, 21st; daily 3: 22nd, 21st, 20th; monthly 3: newest of Nov (22nd), Oct, Sep; keep: Sep.
    expected_removed = ['backup-20261101T010000Z', 'backup-20261118T010000Z', 'backup-20261119T010000Z',
                        'backup-20261119T130000Z']
    assert r['images'][0]['removed'] == expected_removed
    assert len(bed.src.snaps(pools, 'vm')) == len(names) + 1        # check mode removed nothing
    r = bed.src_module('rbd_snapshot_prune', args, diff=True)
    assert r['changed'] and r['images'][0]['removed'] == expected_removed
    assert '-        "backup-20261118T010000Z"' in r['_stdout'], r['_stdout']
    assert bed.src.snaps(pools, 'vm') == [n for n in names if n not in expected_removed] + ['foreign-snap']
    r = bed.src_module('rbd_snapshot_prune', args)
    assert not r['changed']
    bad = bed.src_module('rbd_snapshot_prune', dict(args, retention=dict(last=-1)), expect_failed=True)
    assert 'must not be negative' in bad['msg']


def test_image_info_and_transfer_check_mode(bed, pools):
    bed.src.create(pools, 'vm1', 8 * MiB)
    bed.src.create(pools, 'scratch', MiB)
    r = bed.src_module('rbd_image_info', dict(pool=pools, exclude=['scratch']))
    assert r['names'] == ['vm1'] and r['pool_exists']
    r = bed.src_module('rbd_image_info', dict(pool='no-such-pool'))
    assert r['pool_exists'] is False
    bed.src.write(pools, 'vm1', 0, random_data(3 * MiB, seed=5))
    snap(bed, pools, 'vm1', 'backup-a')
    before = bed.dst.images(pools)
    r = transfer(bed, pools, ['vm1'], check=True)
    i = r['images'][0]
    assert r['changed'] and i['action'] == 'initial' and i['bytes'] == 3 * MiB and i['estimated']
    assert bed.dst.images(pools) == before == []


def test_no_shell_reaches_hostile_names(bed, pools):
    name = 'a;b $(id>pwned2) `id>pwned2` \'"|&'
    bed.src.create(pools, name, MiB)
    bed.src.write(pools, name, 0, random_data(4096, seed=1))
    snap(bed, pools, name, 'backup-x')
    for mode_args in (bed.pull_args(), bed.push_args()):
        args = dict(source_pool=pools, images=[name])
        args.update(mode_args)
        if args.get('mode') == 'push':
            bed.src_module('rbd_diff_transfer', args)
        else:
            bed.dst_module('rbd_diff_transfer', args)
    assert bed.dst.images(pools) == [name]
    assert bed.src.export_sha(pools, name, 'backup-x') == bed.dst.export_sha(pools, name, 'backup-x')
    found = subprocess.run(['find', '/root', '/tmp', '-maxdepth', '2', '-name', 'pwned2'], capture_output=True,
                           text=True, check=False).stdout
    assert found == ''
