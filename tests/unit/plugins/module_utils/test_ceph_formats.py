# -*- coding: utf-8 -*-
"""The collection's real parsers over each Ceph release's JSON (issue #10, part 5).

Fixtures: tests/unit/fixtures/ceph/<release>/<command>.json, each ``{release, command, source, stdout}``
with ``stdout`` exactly as the command prints it (README.md there says where each came from).  Every
row feeds that stdout through the same code path a module uses (``Rbd`` with a fake runner, or
``_runlock.parse_info``) and compares the parsed result with exact values, so a parser change that
breaks one release's form fails that release's row.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _runlock as L
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots as S
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'ceph')
RELEASES = ('pacific', 'quincy', 'reef', 'squid')
PREFIX = 'backup-'
UTC = datetime.timezone.utc


def fixture(release, name):
    with open(os.path.join(FIXTURES, release, name + '.json')) as f:
        doc = json.load(f)
    assert doc['release'] == release and doc['source'], 'a fixture must say where it came from'
    return doc['stdout']


def rbd_answering(stdout):
    """An Rbd whose every command prints ``stdout`` (rc 0); ``calls`` records the argv."""
    calls = []

    def runner(argv, timeout, stdin_data=None):
        calls.append(list(argv))
        return 0, stdout, ''
    client = Rbd(runner=runner)
    client.calls = calls
    return client


# What differs between the captures because each was a separate run on the test bed (not a format
# difference): the ctime of the "manual" snapshot, the watcher of ``rbd status``, the lock holders.
# quincy/reef/squid were captured from one pool, with each release's own client taking the watch
# and the locks (README.md).
NEWER_MANUAL = datetime.datetime(2026, 12, 1, 6, 53, 18, tzinfo=UTC)
CAPTURED = dict(
    pacific=dict(manual=datetime.datetime(2026, 12, 1, 6, 29, 36, tzinfo=UTC),
                 watcher=('127.0.0.1:0/3516334367', 14236, 94455219252688),
                 shared=[('client.14171', '2026-12-01T06:39:36.941928+0000'),
                         ('client.14174', '2026-12-01T06:39:36.968394+0000')]),
    quincy=dict(manual=NEWER_MANUAL,
                watcher=('127.0.0.1:0/2878573212', 23092, 94356670486864),
                shared=[('client.23149', '2026-12-01T07:07:55.119038+0000'),
                        ('client.23157', '2026-12-01T07:07:55.683329+0000')]),
    reef=dict(manual=NEWER_MANUAL,
              watcher=('127.0.0.1:0/691690635', 23258, 94017227050736),
              shared=[('client.23322', '2026-12-01T07:08:05.155669+0000'),
                      ('client.23325', '2026-12-01T07:08:05.363764+0000')]),
    squid=dict(manual=NEWER_MANUAL,
               watcher=('127.0.0.1:0/1155206147', 23398, 94133747958144),
               shared=[('client.23463', '2026-12-01T07:08:13.596024+0000'),
                       ('client.23466', '2026-12-01T07:08:14.269404+0000')]),
)


def parsed_snapshots(release, name):
    snaps = rbd_answering(fixture(release, name)).snapshots('p', 'img')
    return [(s['id'], s['name'], s['size'], s['protected'], S.snapshot_time(s, PREFIX)) for s in snaps]


def snap_rows(release):
    return [
        (4, 'backup-20260126T114059Z', 67108864, False, datetime.datetime(2026, 1, 26, 11, 40, 59, tzinfo=UTC)),
        # a foreign name: the time comes from rbd's ctime()-style timestamp, day padded with a space
        (5, 'manual', 67108864, True, CAPTURED[release]['manual']),
    ]


@pytest.mark.parametrize('release', RELEASES)
def test_list_images(release):
    assert rbd_answering(fixture(release, 'ls')).list_images('p') == ['img', 'small']


@pytest.mark.parametrize('release', RELEASES)
def test_info_size_and_object_size(release):
    info = rbd_answering(fixture(release, 'info')).info('p', 'img')
    assert (info['size'], info['object_size']) == (67108864, 4194304)
    assert isinstance(info['size'], int) and isinstance(info['object_size'], int)


@pytest.mark.parametrize('release', RELEASES)
def test_info_of_a_snapshot(release):
    info = rbd_answering(fixture(release, 'info_snap')).info('p', 'img', snap='manual')
    assert (info['size'], info['protected']) == (67108864, 'true')   # rbd info keeps the string form


@pytest.mark.parametrize('release', RELEASES)
def test_snap_ls(release):
    assert parsed_snapshots(release, 'snap_ls') == snap_rows(release)


@pytest.mark.parametrize('release', RELEASES)
def test_snap_ls_all_keeps_order_and_our_prefix_ignores_the_other_namespaces(release):
    """The modules never pass --all; this shows what the parser makes of trash/mirror/group snapshots."""
    snaps = rbd_answering(fixture(release, 'snap_ls_all')).snapshots('p', 'img')
    types = [(s['id'], s['namespace']['type']) for s in snaps]
    expected = dict(pacific=[(4, 'user'), (5, 'user'), (6, 'trash')])
    assert types == expected.get(release, [(4, 'user'), (5, 'user'), (6, 'trash'), (7, 'mirror'), (8, 'group')])
    assert [s['protected'] for s in snaps] == [False, True] + [False] * (len(snaps) - 2)
    assert [s['name'] for s in S.with_prefix(snaps, PREFIX)] == ['backup-20260126T114059Z']
    trash = snaps[2]['namespace']
    # the difference between the releases: only Squid's rbd prints original_namespace_type for a trash
    # snapshot (19.2.3 does; 16.2.15, 17.2.9 and 18.2.7 do not, against the same pool)
    assert (trash.get('original_namespace_type'), trash['original_name']) == (
        'user' if release == 'squid' else None, 'tr')


DIFFS = dict(
    diff=[(0, 1048576, True), (4194304, 1048576, True), (50331648, 4194304, True)],
    diff_from=[(50331648, 4194304, True)],
    diff_whole=[(0, 4194304, True), (4194304, 4194304, True)],
)


@pytest.mark.parametrize('release,name', [(r, n) for r in RELEASES for n in sorted(DIFFS)])
def test_diff(release, name):
    assert rbd_answering(fixture(release, name)).diff('p', 'img') == DIFFS[name]


@pytest.mark.parametrize('release', RELEASES)
def test_image_meta(release):
    assert rbd_answering(fixture(release, 'image_meta_list')).meta_list('p', 'img') == {
        'ceph_rbd_backup.hold.nightly': 'backup-20260126T114059Z'}
    # no keys: rbd prints nothing at all, not {}
    assert fixture(release, 'image_meta_list_empty') == ''
    assert rbd_answering('').meta_list('p', 'small') == {}
    assert rbd_answering(fixture(release, 'image_meta_get')).meta_get(
        'p', 'img', 'ceph_rbd_backup.hold.nightly') == 'backup-20260126T114059Z'


@pytest.mark.parametrize('release', RELEASES)
def test_status_watchers(release):
    assert rbd_answering(fixture(release, 'status')).watchers('p', 'img') == []
    watchers = rbd_answering(fixture(release, 'status_watcher')).watchers('p', 'img')
    assert [(w['address'], w['client'], w['cookie']) for w in watchers] == [CAPTURED[release]['watcher']]


@pytest.mark.parametrize('release', RELEASES)
def test_rados_lock_info(release):
    shared = L.parse_info(fixture(release, 'lock_info_shared'))
    assert (shared['type'], shared['tag'], L.run_of(shared)) == ('shared', 'run-1', 'run-1')
    (name1, exp1), (name2, exp2) = CAPTURED[release]['shared']
    assert [(x['name'], x['cookie'], x['expiration']) for x in shared['lockers']] == [
        (name1, 'run-1.aaaa', exp1), (name2, 'run-1.bbbb', exp2)]
    assert L.decide(shared, 'run-1') == L.JOIN and L.decide(shared, 'run-2') == L.REFUSE
    assert L.describe(shared) == 'run run-1 (ceph_rbd.backup host2, expires %s)' % exp2
    excl = L.parse_info(fixture(release, 'lock_info_exclusive'))
    assert (excl['type'], L.run_of(excl), excl['lockers'][0]['expiration']) == ('exclusive', 'c1', '0.000000')
    assert L.parse_info(fixture(release, 'lock_info_none')) is None


# -- forms no release above prints, that the parsers accept all the same -------------------------
# (older rbd without "protected"/"timestamp" in snap ls; booleans instead of the "true"/"false" strings)

VARIANTS = [
    ('no protected, no timestamp (pre-Mimic snap ls)',
     '[{"id":4,"name":"backup-20260126T114059Z","size":1},{"id":5,"name":"manual","size":1}]',
     [(4, 'backup-20260126T114059Z', False, datetime.datetime(2026, 1, 26, 11, 40, 59, tzinfo=UTC)),
      (5, 'manual', False, None)]),
    ('protected as a JSON boolean',
     '[{"id":5,"name":"manual","size":1,"protected":true,"timestamp":"Tue Dec  1 06:29:36 2026"}]',
     [(5, 'manual', True, datetime.datetime(2026, 12, 1, 6, 29, 36, tzinfo=UTC))]),
    ('two-digit day in the timestamp',
     '[{"id":5,"name":"manual","size":1,"protected":"false","timestamp":"Sat Dec 12 06:29:36 2026"}]',
     [(5, 'manual', False, datetime.datetime(2026, 12, 12, 6, 29, 36, tzinfo=UTC))]),
]


@pytest.mark.parametrize('label,stdout,expected', VARIANTS, ids=[v[0] for v in VARIANTS])
def test_snap_ls_variants(label, stdout, expected):
    snaps = rbd_answering(stdout).snapshots('p', 'img')
    assert [(s['id'], s['name'], s['protected'], S.snapshot_time(s, PREFIX)) for s in snaps] == expected


def test_diff_exists_as_a_boolean_or_a_string():
    out = '[{"offset":0,"length":4096,"exists":true},{"offset":4096,"length":4096,"exists":"false"}]'
    assert rbd_answering(out).diff('p', 'img') == [(0, 4096, True), (4096, 4096, False)]


def test_every_release_has_every_fixture():
    names = set(os.listdir(os.path.join(FIXTURES, 'pacific')))
    for release in RELEASES:
        assert names <= set(os.listdir(os.path.join(FIXTURES, release))), release
