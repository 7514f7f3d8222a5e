#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_replication_lock
short_description: Take or release the per-pool lock that keeps two replication runs apart
version_added: 1.0.0
description:
  - Takes an exclusive RADOS advisory lock, with an expiry, on the object C(ceph_rbd_backup.lock) in the
    source pool, so that a second replication run against the same pool refuses at once instead of
    racing the first. The lock lives in the cluster, so it also separates runs started from different
    controllers.
  - A lock left by a killed run expires after O(ttl) seconds; O(break_lock=true) breaks it at once.
author:
  - ceph_rbd.backup contributors (!UNKNOWN)
extends_documentation_fragment:
  - ceph_rbd.backup.rbd
attributes:
  check_mode:
    support: full
    description: Reports whether the lock is free; takes or breaks nothing.
  diff_mode:
    support: none
    description: Not supported.
options:
  pool:
    description: The pool to lock.
    type: str
    required: true
  state:
    description: V(locked) takes the lock, V(unlocked) releases the lock taken with O(cookie).
    type: str
    choices: [locked, unlocked]
    default: locked
  cookie:
    description: Identifies this run's lock; required with O(state=unlocked).
    type: str
  ttl:
    description: Seconds after which the lock expires on its own (a killed run's lock).
    type: int
    default: 21600
  break_lock:
    description: Break a lock held by another run before taking it (only when that run is known dead).
    type: bool
    default: false
  description:
    description: Recorded with the lock and shown to a run that finds it taken.
    type: str
    default: ""
'''

EXAMPLES = r'''
- name: Take the lock for tonight's run
  ceph_rbd.backup.rbd_replication_lock:
    pool: rbd
    cookie: "{{ run_id }}"
    description: "AWX job {{ tower_job_id | default('manual') }}"

- name: Release it
  ceph_rbd.backup.rbd_replication_lock:
    pool: rbd
    cookie: "{{ run_id }}"
    state: unlocked
'''

RETURN = r'''
cookie:
  description: The cookie of this run's lock.
  returned: always
  type: str
holder:
  description: The lock as found before this call (name, cookie, description, expiration), if any.
  returned: always
  type: dict
pool_exists:
  description: V(false) when the module failed because the pool does not exist.
  returned: on failure, when the pool does not exist
  type: bool
'''

import json
import os
import socket
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import CLIENT_ARGUMENT_SPEC, Rbd, RbdError

LOCK_OBJECT = 'ceph_rbd_backup.lock'
LOCK_NAME = 'replicate'


class PoolMissing(RbdError):
    """The pool to lock does not exist (the result then says pool_exists: false)."""


def holder_of(rados, pool):
    """The current holder of the lock (a dict as `rados lock info` prints it), or None."""
    argv = rados.argv('--pool', pool, '--format', 'json', 'lock', 'info', LOCK_OBJECT, LOCK_NAME)
    rc, out, err = rados.runner(argv, rados.timeout)
    if rc != 0:
        if 'lock_info(): (2)' in err:      # no lock object yet: nobody holds it
            return None
        if 'error opening pool' in err and '(2)' in err:
            raise PoolMissing('pool %s does not exist' % pool, cmd=argv, rc=rc, stderr=err, image='pool ' + pool)
        raise RbdError('rados lock info failed', cmd=argv, rc=rc, stderr=err, image='pool ' + pool)
    lockers = (json.loads(out) if out.strip() else {}).get('lockers') or []
    return lockers[0] if lockers else None


def main():
    spec = dict(CLIENT_ARGUMENT_SPEC)
    spec.update(
        pool=dict(type='str', required=True),
        state=dict(type='str', choices=['locked', 'unlocked'], default='locked'),
        cookie=dict(type='str'),
        ttl=dict(type='int', default=21600),
        break_lock=dict(type='bool', default=False),
        description=dict(type='str', default=''),
    )
    module = AnsibleModule(argument_spec=spec, required_if=[('state', 'unlocked', ['cookie'])],
                           supports_check_mode=True)
    p = module.params
    if p['ttl'] < 1:
        module.fail_json(msg='ttl must be at least 1 second, got %d' % p['ttl'])
    rados = Rbd.from_params(p)
    rados.binary = 'rados'
    cookie = p['cookie'] or uuid.uuid4().hex
    try:
        holder = holder_of(rados, p['pool'])
        if p['state'] == 'unlocked':
            mine = holder is not None and holder.get('cookie') == cookie
            if mine and not module.check_mode:
                rados.run('--pool', p['pool'], 'lock', 'break', LOCK_OBJECT, LOCK_NAME, holder['name'],
                          '--lock-cookie', cookie)
            module.exit_json(changed=mine, cookie=cookie, holder=holder or {})
        if holder is not None and holder.get('cookie') != cookie:
            if not p['break_lock']:
                module.fail_json(
                    msg='another replication run holds the lock on pool %s (%s, expires %s); it refuses to run '
                        'concurrently. If that run is dead, wait for the expiry or rerun with break_lock=true '
                        '(role: rbd_replicate_break_lock: true)' % (
                            p['pool'], holder.get('description') or holder.get('name'), holder.get('expiration')),
                    holder=holder, cookie=cookie)
            if not module.check_mode:
                rados.run('--pool', p['pool'], 'lock', 'break', LOCK_OBJECT, LOCK_NAME, holder['name'],
                          '--lock-cookie', holder.get('cookie', ''))
        if holder is not None and holder.get('cookie') == cookie:
            module.exit_json(changed=False, cookie=cookie, holder=holder)
        if not module.check_mode:
            desc = p['description'] or 'ceph_rbd.backup on %s pid %d' % (socket.gethostname(), os.getpid())
            rc, _out, err = rados.runner(rados.argv('--pool', p['pool'], 'lock', 'get', LOCK_OBJECT, LOCK_NAME,
                                                    '--lock-cookie', cookie, '--lock-duration', str(p['ttl']),
                                                    '--lock-description', desc), rados.timeout)
            if rc != 0:
                now = holder_of(rados, p['pool']) or {}
                module.fail_json(msg='could not take the replication lock on pool %s: %s (held by %s, expires %s)'
                                 % (p['pool'], err.strip(), now.get('description'), now.get('expiration')),
                                 holder=now, cookie=cookie)
        module.exit_json(changed=True, cookie=cookie, holder=holder or {})
    except RbdError as e:
        extra = dict(pool_exists=False) if isinstance(e, PoolMissing) else {}
        module.fail_json(**dict(e.as_dict(), **extra))


if __name__ == '__main__':
    main()
