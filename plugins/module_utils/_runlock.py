# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run lock: one replication run per source pool at a time, for as long as that run works.

A *shared* RADOS advisory lock on the object ``ceph_rbd_backup.lock`` of the source pool, tagged with
the run id.  Every process of the run (any host, any time) joins it by taking the shared lock with the
same tag and a fresh expiry: that is how the run renews it, without knowing which client took it first
(a RADOS lock belongs to the client instance that took it, so an exclusive lock cannot be renewed by
the next ``rados`` process).  A run with another tag is refused (EBUSY) while one of our entries has not
expired; expired entries vanish on their own, so a killed run's lock ends ``ttl`` seconds after its
last renewal.

The decisions (:func:`decide`) are pure; :class:`RunLock` runs ``rados`` through any runner (local or
over ssh), and :class:`Keeper` renews in a thread while a long step works.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import threading
import uuid
from typing import Any, Dict, List, Optional

from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError

LOCK_OBJECT = 'ceph_rbd_backup.lock'
LOCK_NAME = 'replicate'

# what decide() answers
TAKE, JOIN, REFUSE, BREAK = 'take', 'join', 'refuse', 'break'


class PoolMissing(RbdError):
    """The pool to lock does not exist."""


def parse_info(text: str) -> Optional[Dict[str, Any]]:
    """Pure: ``rados lock info --format json`` -> dict(type, tag, lockers), or None when nobody holds it."""
    info = json.loads(text) if text and text.strip() else {}
    lockers = info.get('lockers') or []
    if not lockers:
        return None
    return dict(type=info.get('type') or '', tag=info.get('tag') or '', lockers=lockers)


def run_of(info: Optional[Dict[str, Any]]) -> Optional[str]:
    """Pure: the run id a held lock belongs to (its tag; an exclusive lock of an older release: its cookie)."""
    if info is None:
        return None
    if info['type'] == 'shared':
        return info['tag']
    return info['lockers'][0].get('cookie')


def decide(info: Optional[Dict[str, Any]], run: str, break_lock: bool = False) -> str:
    """Pure: what taking the lock for ``run`` means, given the current holder ``info``.

    TAKE: free; JOIN: held by this run (renew); REFUSE: another run holds it; BREAK: another run holds
    it and the caller asked to break it (then TAKE).
    """
    if info is None:
        return TAKE
    if info['type'] == 'shared' and info['tag'] == run:
        return JOIN
    return BREAK if break_lock else REFUSE


def members(info: Optional[Dict[str, Any]], run: str) -> List[str]:
    """Pure: the members (hosts) of ``run`` that hold an entry of the lock, sorted; see :func:`cookie`."""
    if info is None or run_of(info) != run:
        return []
    return sorted(set(m for m in (member_of_cookie(lk.get('cookie') or '', run) for lk in info['lockers']) if m))


def cookie(run: str, member: str = '') -> str:
    """A fresh entry's cookie: ``<run>.<member>.<random>`` (``<run>.<random>`` without a member)."""
    return '.'.join([run] + ([member] if member else []) + [uuid.uuid4().hex[:8]])


def member_of_cookie(value: str, run: str) -> str:
    """Pure: the member named in a run-lock cookie ``<run>.<member>.<random>`` ('' for another run or
    a cookie without a member, as older releases wrote ``<run>.<random>``)."""
    prefix = run + '.'
    if not value.startswith(prefix):
        return ''
    rest = value[len(prefix):]
    return rest.rsplit('.', 1)[0] if '.' in rest else ''


def describe(info: Optional[Dict[str, Any]]) -> str:
    """Pure: a holder for messages: run, who and until when."""
    if info is None:
        return 'nobody'
    last = max(info['lockers'], key=lambda locker: locker.get('expiration') or '')
    return 'run %s (%s, expires %s)' % (run_of(info), last.get('description') or last.get('name'),
                                        last.get('expiration'))


class RunLock:
    """The run lock of one pool, through ``rados`` with an Rbd client's options and runner."""

    def __init__(self, rbd, pool):
        self.rados = Rbd(timeout=rbd.timeout, runner=rbd.runner, binary='rados')
        self.rados.global_args = list(rbd.global_args)
        self.pool = pool

    def _run(self, *args):
        argv = self.rados.argv('--pool', self.pool, *args)
        rc, out, err = self.rados.runner(argv, self.rados.timeout)
        return argv, rc, out, err

    def fsid(self) -> str:
        """The cluster's fsid (``ceph fsid``; the monitors' C(profile rbd) allows it): the hosts of a run that
        see the same fsid and pool share its images."""
        argv = ['ceph'] + self.rados.global_args + ['--format', 'json', 'fsid']
        rc, out, err = self.rados.runner(argv, self.rados.timeout)
        try:
            fsid = json.loads(out).get('fsid') if rc == 0 else None
        except ValueError:
            fsid = None
        if not fsid:
            raise RbdError('ceph fsid failed', cmd=argv, rc=rc, stderr=err, image='pool ' + self.pool)
        return fsid

    def info(self) -> Optional[Dict[str, Any]]:
        """The current holder (see :func:`parse_info`), or None."""
        argv, rc, out, err = self._run('--format', 'json', 'lock', 'info', LOCK_OBJECT, LOCK_NAME)
        if rc != 0:
            if 'lock_info(): (2)' in err:      # no lock object yet: nobody holds it
                return None
            if 'error opening pool' in err and '(2)' in err:
                raise PoolMissing('pool %s does not exist' % self.pool, cmd=argv, rc=rc, stderr=err,
                                  image='pool ' + self.pool)
            raise RbdError('rados lock info failed', cmd=argv, rc=rc, stderr=err, image='pool ' + self.pool)
        try:
            return parse_info(out)
        except ValueError:
            raise RbdError('rados lock info printed no JSON: %r' % out[:200], cmd=argv, image='pool ' + self.pool)

    def join(self, run: str, ttl: int, description: str = '', member: str = '') -> None:
        """Take the shared lock for ``run`` (first time or renewal) as ``member``; raise RbdError when refused."""
        argv, rc, _out, err = self._run('lock', 'get', LOCK_OBJECT, LOCK_NAME, '--lock-type', 'shared',
                                        '--lock-tag', run, '--lock-cookie', cookie(run, member),
                                        '--lock-duration', str(int(ttl)), '--lock-description', description)
        if rc != 0:
            raise RbdError('could not take the replication lock for run %s' % run, cmd=argv, rc=rc, stderr=err,
                           image='pool ' + self.pool)

    def break_all(self, info: Optional[Dict[str, Any]], only_run: Optional[str] = None, only_member: str = '') -> int:
        """Break every entry of ``info`` (only those of ``only_run``, and of its ``only_member``, when given);
        returns how many."""
        n = 0
        if info is None or (only_run is not None and run_of(info) != only_run):
            return 0
        for locker in info['lockers']:
            if only_member and member_of_cookie(locker.get('cookie') or '', only_run or run_of(info)) != only_member:
                continue
            argv, rc, _out, err = self._run('lock', 'break', LOCK_OBJECT, LOCK_NAME, locker['name'],
                                            '--lock-cookie', locker.get('cookie', ''))
            if rc != 0 and '(2)' not in err:      # an entry that expired meanwhile is gone already
                raise RbdError('rados lock break failed', cmd=argv, rc=rc, stderr=err, image='pool ' + self.pool)
            n += rc == 0
        return n


class Keeper:
    """Renews ``run``'s lock every ``ttl / 3`` s in a thread while a step works; use as a context manager.

    A failed renewal does not stop the step (the import marks keep another run's hands off a live import,
    see :mod:`_transfer`); it is recorded in ``problems`` for the step's result.  On exit the lock is
    renewed once more, so the next steps of the run start with a whole ``ttl``.
    """

    def __init__(self, lock, run, ttl, description='', member=''):
        self.lock, self.run, self.ttl, self.description, self.member = lock, run, ttl, description, member
        self.interval = max(1.0, ttl / 3.0)
        self.renewals = 0
        self.problems = []
        self._stop = threading.Event()
        self._thread = None

    def renew(self):
        try:
            self.lock.join(self.run, self.ttl, self.description, member=self.member)
            self.renewals += 1
        except RbdError as e:
            self.problems.append(str(e))

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.renew()

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, name='run-lock-keeper', daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.renew()
        return False

    def report(self):
        return dict(run=self.run, renewals=self.renewals, problems=self.problems[-5:])
