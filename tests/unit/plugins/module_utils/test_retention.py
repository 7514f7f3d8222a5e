# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _retention as R

UTC = datetime.timezone.utc


def t(y, mo, d, h=0, mi=0):
    return datetime.datetime(y, mo, d, h, mi, tzinfo=UTC)


def daily_series(days, hour=1):
    """[(name, time)] for the given days of Jan 2026, oldest first."""
    return [('s%02d' % d, t(2026, 1, d, hour)) for d in days]


# -- validate_policy ------------------------------------------------------------------

def test_validate_policy_accepts_and_normalizes():
    pol, err = R.validate_policy({'last': 3, 'daily': '7', 'weekly': ' 4 ', 'monthly': None})
    assert err is None
    assert pol == {'last': 3, 'daily': 7, 'weekly': 4}


def test_validate_policy_zero_is_allowed():
    assert R.validate_policy({'daily': 0, 'last': 1}) == ({'daily': 0, 'last': 1}, None)


@pytest.mark.parametrize('policy, needle', [
    (None, 'required'),
    ([1, 2], 'must be a dict'),
    ('last=3', 'must be a dict'),
    ({}, 'keeps nothing'),
    ({'last': None}, 'keeps nothing'),
    ({'last': 3, 'dayly': 2}, 'unknown retention rule(s) dayly'),
    ({'minutely': 1, 'zz': 1}, 'unknown retention rule(s) minutely, zz'),
    ({'last': -1}, 'must not be negative'),
    ({'daily': '-2'}, 'must not be negative'),
    ({'last': True}, 'whole number'),
    ({'last': False}, 'whole number'),
    ({'last': 2.5}, 'whole number'),
    ({'last': 3.0}, 'whole number'),
    ({'last': 'three'}, 'whole number'),
    ({'last': ''}, 'whole number'),
    ({'last': '   '}, 'whole number'),
    ({'last': '-'}, 'whole number'),
    ({'last': '3.5'}, 'whole number'),
    ({'last': [3]}, 'whole number'),
])
def test_validate_policy_errors(policy, needle):
    pol, err = R.validate_policy(policy)
    assert pol is None
    assert needle in err


@pytest.mark.parametrize('value', ['--5', '\u00b2'])
def test_validate_policy_odd_digit_strings_return_error_not_raise(value):
    pol, err = R.validate_policy({'last': value})
    assert pol is None and 'whole number' in err


# -- bucket_key ------------------------------------------------------------------------

def test_bucket_key_values():
    w = t(2026, 12, 31, 13, 5)
    assert R.bucket_key(w, 'hourly') == (2026, 12, 31, 13)
    assert R.bucket_key(w, 'daily') == (2026, 12, 31)
    assert R.bucket_key(w, 'weekly') == (2026, 53)
    assert R.bucket_key(t(2027, 1, 1), 'weekly') == (2026, 53)    # ISO week crosses the year
    assert R.bucket_key(w, 'monthly') == (2026, 12)
    assert R.bucket_key(w, 'yearly') == (2026,)
    with pytest.raises(ValueError):
        R.bucket_key(w, 'last')


# -- select ----------------------------------------------------------------------------

def test_select_last_only():
    snaps = daily_series([1, 2, 3, 4, 5])
    kept, removed = R.select(snaps, {'last': 2})
    assert kept == {'s05': ['last'], 's04': ['last']}
    assert removed == ['s01', 's02', 's03']


def test_select_last_zero_and_more_than_available():
    snaps = daily_series([1, 2])
    assert R.select(snaps, {'last': 0}) == ({}, ['s01', 's02'])
    kept, removed = R.select(snaps, {'last': 10})
    assert sorted(kept) == ['s01', 's02'] and removed == []


def test_select_daily_across_skipped_days():
    # days 1, 2, 5, 9, 10 (gaps): daily 3 keeps the 3 newest *days that have a snapshot*
    snaps = daily_series([1, 2, 5, 9, 10])
    kept, removed = R.select(snaps, {'daily': 3})
    assert kept == {'s10': ['daily'], 's09': ['daily'], 's05': ['daily']}
    assert removed == ['s01', 's02']


def test_select_daily_two_on_one_day_keeps_newest_of_that_day():
    snaps = [
        ('d1', t(2026, 1, 1, 1)),
        ('d2-early', t(2026, 1, 2, 1)),
        ('d2-late', t(2026, 1, 2, 23)),
        ('d3', t(2026, 1, 3, 1)),
    ]
    kept, removed = R.select(snaps, {'daily': 2})
    assert kept == {'d3': ['daily'], 'd2-late': ['daily']}
    assert removed == ['d1', 'd2-early']


def test_select_hourly():
    snaps = [('a', t(2026, 1, 1, 10, 0)), ('b', t(2026, 1, 1, 10, 30)),
             ('c', t(2026, 1, 1, 11, 0)), ('d', t(2026, 1, 1, 12, 59))]
    kept, removed = R.select(snaps, {'hourly': 2})
    assert set(kept) == {'d', 'c'} and removed == ['a', 'b']


def test_select_weekly():
    # ISO weeks of 2026: Jan 5 (Mon) .. Jan 11 is week 2; Jan 12.. is week 3
    snaps = [('w1', t(2026, 1, 2)), ('w2a', t(2026, 1, 5)), ('w2b', t(2026, 1, 11)),
             ('w3a', t(2026, 1, 12)), ('w3b', t(2026, 1, 14))]
    kept, removed = R.select(snaps, {'weekly': 2})
    assert kept == {'w3b': ['weekly'], 'w2b': ['weekly']}
    assert removed == ['w1', 'w2a', 'w3a']


def test_select_weekly_across_year_boundary_is_one_bucket():
    snaps = [('dec31', t(2026, 12, 31)), ('jan1', t(2027, 1, 1))]
    kept, removed = R.select(snaps, {'weekly': 2})
    assert kept == {'jan1': ['weekly']} and removed == ['dec31']
    kept, removed = R.select(snaps, {'monthly': 2})
    assert kept == {'jan1': ['monthly'], 'dec31': ['monthly']} and removed == []


def test_select_monthly_and_yearly():
    snaps = [('2025-11', t(2025, 11, 30)), ('2025-12a', t(2025, 12, 1)), ('2025-12b', t(2025, 12, 31)),
             ('2026-01', t(2026, 1, 15)), ('2026-03', t(2026, 3, 1))]
    kept, removed = R.select(snaps, {'monthly': 3})
    assert set(kept) == {'2026-03', '2026-01', '2025-12b'}
    assert removed == ['2025-11', '2025-12a']
    kept, removed = R.select(snaps, {'yearly': 5})
    assert kept == {'2026-03': ['yearly'], '2025-12b': ['yearly']}
    assert removed == ['2025-11', '2025-12a', '2026-01']


def test_select_keep_protects_an_old_snapshot_and_ignores_unknown_names():
    snaps = daily_series([1, 2, 3, 4])
    kept, removed = R.select(snaps, {'last': 1}, keep=['s01', 'not-there'])
    assert kept == {'s04': ['last'], 's01': ['keep']}
    assert removed == ['s02', 's03']
    assert 'not-there' not in kept


def test_select_union_semantics_lists_every_reason():
    snaps = [('a', t(2026, 1, 1)), ('b', t(2026, 1, 2)), ('c', t(2026, 2, 1)), ('d', t(2026, 2, 2))]
    kept, removed = R.select(snaps, {'last': 1, 'daily': 2, 'monthly': 2}, keep=['a'])
    assert kept == {
        'd': ['last', 'daily', 'monthly'],
        'c': ['daily'],
        'b': ['monthly'],
        'a': ['keep'],
    }
    assert removed == []
    # without keep, 'a' goes; removal order is oldest first
    kept, removed = R.select(snaps, {'last': 1, 'monthly': 1})
    assert set(kept) == {'d'} and removed == ['a', 'b', 'c']


def test_select_time_none_only_kept_by_last_or_keep():
    snaps = [('old-none', None), ('a', t(2026, 1, 1)), ('mid-none', None), ('b', t(2026, 1, 2)),
             ('new-none', None)]
    kept, removed = R.select(snaps, {'daily': 10, 'monthly': 10, 'yearly': 10})
    assert set(kept) == {'a', 'b'}
    assert removed == ['old-none', 'mid-none', 'new-none']
    kept, removed = R.select(snaps, {'last': 1, 'daily': 10}, keep=['old-none'])
    assert kept == {'new-none': ['last'], 'b': ['daily'], 'a': ['daily'], 'old-none': ['keep']}
    assert removed == ['mid-none']


def test_select_empty():
    assert R.select([], {'last': 3, 'daily': 3}) == ({}, [])
