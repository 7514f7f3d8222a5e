# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock's decisions (pure) and the rados calls it makes (fake runner; the real thing: tests/integration)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _runlock as L
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError


def shared(tag, *cookies):
    return dict(type='shared', tag=tag, lockers=[dict(name='client.%d' % (10 + i), cookie=c,
                                                      expiration='2026-12-01T0%d:00:00' % i, description='d%d' % i)
                                                 for i, c in enumerate(cookies)])


EXCLUSIVE_OLD = dict(type='exclusive', tag='', lockers=[dict(name='client.9', cookie='old-run', expiration='x')])


@pytest.mark.parametrize('info, run, break_lock, expected', [
    (None, 'r1', False, L.TAKE),                         # free
    (shared('r1', 'r1.a'), 'r1', False, L.JOIN),         # ours: renew
    (shared('r1', 'r1.a', 'r1.b'), 'r1', False, L.JOIN),
    (shared('r2', 'r2.a'), 'r1', False, L.REFUSE),       # another run
    (shared('r2', 'r2.a'), 'r1', True, L.BREAK),
    (EXCLUSIVE_OLD, 'r1', False, L.REFUSE),               # a lock of an older release is another run's
    (EXCLUSIVE_OLD, 'old-run', False, L.REFUSE),          # ... even with the same cookie: it cannot be joined
    (EXCLUSIVE_OLD, 'r1', True, L.BREAK),
])
def test_decide(info, run, break_lock, expected):
    assert L.decide(info, run, break_lock) == expected


def test_parse_info_and_run_of():
    assert L.parse_info('') is None
    assert L.parse_info('{"name":"replicate","type":"shared","tag":"r1","lockers":[]}') is None   # all expired
    info = L.parse_info(json.dumps(dict(name='replicate', type='shared', tag='r1',
                                        lockers=[dict(name='client.1', cookie='r1.x')])))
    assert info['tag'] == 'r1' and L.run_of(info) == 'r1'
    assert L.run_of(EXCLUSIVE_OLD) == 'old-run' and L.run_of(None) is None


def test_describe_names_the_run_and_the_latest_expiry():
    text = L.describe(shared('r2', 'r2.a', 'r2.b'))
    assert 'run r2' in text and '2026-12-01T01:00:00' in text and 'd1' in text
    assert L.describe(None) == 'nobody'


class Runner:
    def __init__(self, answer=(0, '', '')):
        self.calls = []
        self.answer = answer

    def __call__(self, argv, timeout, stdin_data=None):
        self.calls.append(argv)
        return self.answer(argv) if callable(self.answer) else self.answer


def test_join_takes_a_shared_lock_tagged_with_the_run_and_a_fresh_cookie():
    runner = Runner()
    lock = L.RunLock(Rbd(conf='/etc/ceph/c.conf', user='backup', runner=runner, timeout=30), 'rbd')
    lock.join('r1', 600, 'night')
    lock.join('r1', 600, 'night')
    a, b = runner.calls
    assert a[0] == 'rados' and '--conf' in a and a[a.index('--id') + 1] == 'backup'
    tail = a[a.index('lock'):]
    assert tail[:4] == ['lock', 'get', L.LOCK_OBJECT, L.LOCK_NAME]
    assert tail[tail.index('--lock-type') + 1] == 'shared' and tail[tail.index('--lock-tag') + 1] == 'r1'
    assert tail[tail.index('--lock-duration') + 1] == '600'
    # every renewal is a new entry of the same tag (a RADOS lock entry belongs to the client that took it)
    assert a[a.index('--lock-cookie') + 1] != b[b.index('--lock-cookie') + 1]
    assert a[a.index('--lock-cookie') + 1].startswith('r1.')


def test_join_refused_raises_naming_the_pool():
    lock = L.RunLock(Rbd(runner=Runner((16, '', 'failed locking: (16) Device or resource busy'))), 'rbd')
    with pytest.raises(RbdError) as e:
        lock.join('r1', 60)
    assert 'pool rbd' in str(e.value) and 'rc=16' in str(e.value)


def test_break_all_breaks_only_the_given_runs_entries():
    runner = Runner()
    lock = L.RunLock(Rbd(runner=runner), 'rbd')
    assert lock.break_all(shared('r2', 'r2.a'), only_run='r1') == 0 and runner.calls == []
    assert lock.break_all(shared('r1', 'r1.a', 'r1.b'), only_run='r1') == 2
    assert [c[c.index('break') + 3] for c in runner.calls] == ['client.10', 'client.11']


def test_info_missing_object_is_free_and_missing_pool_is_named():
    assert L.RunLock(Rbd(runner=Runner((1, '', 'rados_lock_get_lock_info(): (2) No such file'))), 'p').info() is None
    with pytest.raises(L.PoolMissing):
        L.RunLock(Rbd(runner=Runner((1, '', 'error opening pool p: (2) No such file or directory'))), 'p').info()


class FakeLock:
    def __init__(self, fail_after=None):
        self.joins = []
        self.fail_after = fail_after

    def join(self, run, ttl, description='', member=''):
        if self.fail_after is not None and len(self.joins) >= self.fail_after:
            raise RbdError('could not take the replication lock for run %s' % run, rc=16)
        self.joins.append((run, ttl))
        self.members = getattr(self, 'members', []) + [member]


def test_keeper_renews_while_the_step_works_and_once_at_its_end():
    lock = FakeLock()
    keeper = L.Keeper(lock, 'r1', ttl=3)
    keeper.interval = 0.05
    with keeper:
        time.sleep(0.4)
    assert len(lock.joins) >= 4 and set(lock.joins) == {('r1', 3)}
    assert keeper.report()['renewals'] == len(lock.joins) and keeper.problems == []


def test_keeper_records_failed_renewals_and_does_not_stop_the_step():
    lock = FakeLock(fail_after=1)
    keeper = L.Keeper(lock, 'r1', ttl=3)
    keeper.interval = 0.05
    with keeper:
        time.sleep(0.3)
    assert keeper.renewals == 1 and keeper.problems and 'r1' in keeper.problems[0]


def _shared(*cookies, tag='run1'):
    return dict(type='shared', tag=tag, lockers=[dict(name='client.%d' % i, cookie=c, expiration='2026-12-01')
                                                 for i, c in enumerate(cookies)])


def test_members_are_the_hosts_of_this_run_that_hold_an_entry():
    info = _shared('run1.src-b.aaaa1111', 'run1.src-a.bbbb2222', 'run1.src-a.cccc3333', 'run1.dddd4444')
    assert L.members(info, 'run1') == ['src-a', 'src-b']
    assert L.members(info, 'run2') == []
    assert L.members(None, 'run1') == []


def test_a_cookie_names_the_run_and_the_member():
    c = L.cookie('run1', 'src-a')
    assert c.startswith('run1.src-a.') and L.members(_shared(c), 'run1') == ['src-a']
    assert L.cookie('run1').count('.') == 1


class RecordingRunner:
    def __init__(self):
        self.calls = []

    def __call__(self, argv, timeout):
        self.calls.append(argv)
        return 0, '', ''


def test_releasing_as_a_member_breaks_only_that_members_entries():
    runner = RecordingRunner()
    lock = L.RunLock(Rbd(runner=runner), 'rbd')
    info = _shared('run1.src-a.aaaa1111', 'run1.src-b.bbbb2222', 'run1.src-a.cccc3333')
    assert lock.break_all(info, only_run='run1', only_member='src-a') == 2
    broken = [argv[argv.index('--lock-cookie') + 1] for argv in runner.calls]
    assert broken == ['run1.src-a.aaaa1111', 'run1.src-a.cccc3333']
    assert lock.break_all(info, only_run='run1') == 3          # without a member: the whole run


@pytest.mark.parametrize('cookie,expected', [
    ('run1.src-a.1a2b3c4d', 'src-a'),
    ('run1.src.example.com.1a2b3c4d', 'src.example.com'),     # a member name with dots
    ('run1.1a2b3c4d', ''),                                     # an older release's cookie: no member
    ('run2.src-a.1a2b3c4d', ''),                               # another run
])
def test_member_of_cookie(cookie, expected):
    assert L.member_of_cookie(cookie, 'run1') == expected
