# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots as S

UTC = datetime.timezone.utc
P = 'backup-'


def snap(sid, name, timestamp=None):
    d = dict(id=sid, name=name)
    if timestamp is not None:
        d['timestamp'] = timestamp
    return d


# -- make_name / parse_stamp -------------------------------------------------

def test_make_name_fixed_utc_datetime():
    now = datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)
    assert S.make_name(P, now) == 'backup-20261126T114059Z'


def test_make_name_converts_other_timezone_to_utc():
    cet = datetime.timezone(datetime.timedelta(hours=1))
    now = datetime.datetime(2026, 11, 26, 12, 40, 59, tzinfo=cet)
    assert S.make_name(P, now) == 'backup-20261126T114059Z'


def test_make_name_naive_is_taken_as_utc():
    assert S.make_name('x-', datetime.datetime(2026, 1, 2, 3, 4, 5)) == 'x-20260102T030405Z'


def test_make_name_default_is_now():
    before = S.utcnow()
    name = S.make_name(P)
    after = S.utcnow()
    t = S.parse_stamp(name, P)
    assert before <= t <= after


def test_parse_stamp_round_trip():
    now = datetime.datetime(2026, 2, 28, 23, 59, 58, tzinfo=UTC)
    name = S.make_name(P, now)
    assert S.parse_stamp(name, P) == now
    assert S.parse_stamp(name, P).tzinfo == UTC


@pytest.mark.parametrize('name', [
    'other-20261126T114059Z',          # foreign prefix
    'backup-20261126T114059',          # no Z
    'backup-20261126T114059Z.old',     # trailing text
    'backup-x20261126T114059Z',        # text between prefix and stamp
    'backup-20261126T114059Z\n',       # trailing newline ($ would match before it)
    'backup-',                         # nothing after prefix
    'backup-20261326T114059Z',         # month 13: right shape, invalid date
    'backup-20260230T000000Z',         # Feb 30
    'manual',
])
def test_parse_stamp_rejects(name):
    assert S.parse_stamp(name, P) is None


def test_parse_stamp_empty_prefix():
    assert S.parse_stamp('20261126T114059Z', '') == datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)


# -- snapshot_time --------------------------------------------------------------

def test_snapshot_time_prefers_name_over_rbd_timestamp():
    s = snap(1, 'backup-20261126T114059Z', 'Mon Jan  5 01:02:03 2026')
    assert S.snapshot_time(s, P) == datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)


def test_snapshot_time_falls_back_to_rbd_timestamp():
    s = snap(1, 'manual-snap', 'Thu Nov 26 11:40:59 2026')
    assert S.snapshot_time(s, P) == datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)


def test_snapshot_time_rbd_timestamp_single_digit_day_with_two_spaces():
    s = snap(1, 'manual', 'Thu Nov  5 01:02:03 2026')
    assert S.snapshot_time(s, P) == datetime.datetime(2026, 11, 5, 1, 2, 3, tzinfo=UTC)


def test_snapshot_time_prefixed_but_malformed_name_uses_timestamp():
    s = snap(1, 'backup-manual', 'Thu Nov 26 11:40:59 2026')
    assert S.snapshot_time(s, P) == datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)


@pytest.mark.parametrize('ts', [None, '', 'not a date', '2026-11-26 11:40:59'])
def test_snapshot_time_none_when_unknown(ts):
    assert S.snapshot_time(snap(1, 'manual', ts), P) is None


# -- with_prefix / newest ------------------------------------------------------------

def test_with_prefix_sorted_by_id_and_filtered():
    snaps = [snap(9, 'backup-b'), snap(2, 'manual'), snap(4, 'backup-z'), snap(3, 'backup-a')]
    assert [s['name'] for s in S.with_prefix(snaps, P)] == ['backup-a', 'backup-z', 'backup-b']


def test_newest_by_id_not_name():
    snaps = [snap(10, 'backup-20260101T000000Z'), snap(5, 'backup-20270101T000000Z'), snap(11, 'manual')]
    assert S.newest(snaps, P) == 'backup-20260101T000000Z'
    assert S.newest([snap(1, 'manual')], P) is None
    assert S.newest([], P) is None


# -- choose_base -----------------------------------------------------------------------

def test_choose_base_newest_common_by_id_not_by_name():
    # Name order says "…0103" is the newest, but id (creation) order says "…0101" was created last.
    source = [
        snap(1, 'backup-20260102T000000Z'),
        snap(2, 'backup-20260103T000000Z'),
        snap(3, 'backup-20260101T000000Z'),
        snap(4, 'backup-20260104T000000Z'),   # the target
    ]
    dest = ['backup-20260102T000000Z', 'backup-20260103T000000Z', 'backup-20260101T000000Z']
    assert S.choose_base(source, dest, P, target='backup-20260104T000000Z') == 'backup-20260101T000000Z'
    # the input order of the source list does not matter either
    assert S.choose_base(list(reversed(source)), dest, P, target='backup-20260104T000000Z') == \
        'backup-20260101T000000Z'


def test_choose_base_ignores_non_prefixed_common():
    source = [snap(1, 'backup-a'), snap(2, 'manual'), snap(3, 'backup-target')]
    assert S.choose_base(source, ['backup-a', 'manual'], P, target='backup-target') == 'backup-a'
    assert S.choose_base(source, ['manual'], P, target='backup-target') is None


def test_choose_base_ignores_snapshots_at_or_after_target():
    source = [snap(1, 'backup-a'), snap(2, 'backup-b'), snap(3, 'backup-target'), snap(4, 'backup-later')]
    dest = ['backup-a', 'backup-later', 'backup-target']
    assert S.choose_base(source, dest, P, target='backup-target') == 'backup-a'
    # only later ones in common -> nothing usable
    assert S.choose_base(source, ['backup-later', 'backup-target'], P, target='backup-target') is None


def test_choose_base_without_target_takes_newest_common():
    source = [snap(1, 'backup-a'), snap(2, 'backup-b'), snap(3, 'backup-c')]
    assert S.choose_base(source, ['backup-a', 'backup-b'], P) == 'backup-b'
    assert S.choose_base(source, [], P) is None


def test_choose_base_dest_names_may_be_generator():
    source = [snap(1, 'backup-a'), snap(2, 'backup-b'), snap(3, 'backup-t')]
    assert S.choose_base(source, (n for n in ['backup-b']), P, 'backup-t') == 'backup-b'


# -- plan_transfer ------------------------------------------------------------------------

SRC = [snap(1, 'backup-1'), snap(2, 'backup-2'), snap(3, 'manual'), snap(4, 'backup-3')]


def test_plan_initial_when_no_destination_image():
    assert S.plan_transfer(SRC, None, P, 'backup-3') == dict(action='initial', base=None)


def test_plan_up_to_date():
    dest = [snap(7, 'backup-2'), snap(8, 'backup-3')]
    assert S.plan_transfer(SRC, dest, P, 'backup-3') == dict(action='up_to_date', base='backup-3')


def test_plan_incremental_from_newest_common():
    dest = [snap(7, 'backup-1'), snap(8, 'backup-2')]
    assert S.plan_transfer(SRC, dest, P, 'backup-3') == dict(action='incremental', base='backup-2')


def test_plan_rebuild_when_nothing_in_common():
    assert S.plan_transfer(SRC, [], P, 'backup-3') == dict(action='rebuild', base=None)
    # a common *non-prefixed* snapshot does not count
    assert S.plan_transfer(SRC, [snap(1, 'manual')], P, 'backup-3') == dict(action='rebuild', base=None)
    # nor does a destination snapshot missing on the source
    assert S.plan_transfer(SRC, [snap(1, 'backup-0')], P, 'backup-3') == dict(action='rebuild', base=None)


def test_plan_constants():
    assert (S.ACTION_INITIAL, S.ACTION_INCREMENTAL, S.ACTION_UP_TO_DATE, S.ACTION_REBUILD) == \
        ('initial', 'incremental', 'up_to_date', 'rebuild')


# -- validate_snapshot_name / aside / rebuild ------------------------------------------------

@pytest.mark.parametrize('name', ['', None, 'a@b', 'a/b', '@', '/', 'tab\there', 'nl\n', 'nul\x00'])
def test_validate_snapshot_name_rejects(name):
    err = S.validate_snapshot_name(name)
    assert isinstance(err, str) and err


@pytest.mark.parametrize('name', ['backup-20261126T114059Z', 'with space', "quote'd", '$(x);', 'ünï'])
def test_validate_snapshot_name_accepts(name):
    assert S.validate_snapshot_name(name) is None


def test_aside_and_rebuild_names():
    now = datetime.datetime(2026, 11, 26, 11, 40, 59, tzinfo=UTC)
    assert S.aside_name('vm-1', now) == 'vm-1.replaced-20261126T114059Z'
    assert S.rebuild_name('vm-1') == 'vm-1.rebuilding'
