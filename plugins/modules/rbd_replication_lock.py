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
  - Takes a shared RADOS advisory lock tagged with the run id (O(cookie)), with an expiry, on the object
    C(ceph_rbd_backup.lock) in the source pool, so that a second replication run against the same pool
    refuses at once instead of racing the first. The lock lives in the cluster, so it also separates runs
    started from different controllers.
  - Taking the lock again with the same run id renews it (any host, any process of the run can); a run
    with another id is refused while the lock has not expired. M(ceph_rbd.backup.rbd_diff_transfer) renews
    it while it works when given O(ceph_rbd.backup.rbd_diff_transfer#module:run_lock), so a run may last
    longer than O(ttl).
  - A lock left by a killed run expires O(ttl) seconds after its last renewal; O(break_lock=true) breaks
    it at once.
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.rbd]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the lock is free; takes or breaks nothing.
  diff_mode:
    support: none
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
    description:
      - The run id (the lock's tag); required with O(state=unlocked). Every host and step of one run must
        use the same id.
    type: str
    aliases: [run]
  ttl:
    description:
      - Seconds after the last renewal after which the lock expires on its own (a killed run's lock).
      - From 1 to 604800 (a week).
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
  member:
    description:
      - This host's name in the run. The hosts of one run that take a pool's lock with the same O(cookie)
        and each its own O(member) share that pool's images (the C(ceph_rbd.backup.rbd_replicate) role passes
        C(inventory_hostname)); RV(members) lists them.
      - With O(state=unlocked) only this member's entries are released, so the lock stays with the run until
        its last member is done. Without it every entry of the run is released.
    type: str
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
  description:
    - The lock as found before this call, if held - C(run) (its run id), C(type), C(name), C(cookie),
      C(description) and C(expiration) of its newest entry, C(entries).
  returned: always
  type: dict
fsid:
  description: The source cluster's fsid (with O(state=locked)). The role shares a pool's images among the hosts
    of the play that report the same fsid and pool.
  returned: success, with O(state=locked)
  type: str
pool:
  description: The pool (as given).
  returned: always
  type: str
members:
  description:
    - The members of this run that hold the lock after this call (with O(state=locked)), sorted. Taken again
      once every host of the run has joined, it names the hosts that share the pool.
  returned: success
  type: list
  elements: str
  sample: [ceph-mon-1, ceph-mon-2]
pool_exists:
  description: V(false) when the module failed because the pool does not exist.
  returned: on failure, when the pool does not exist
  type: bool
'''

import os
import socket
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import check_ranges
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import CLIENT_ARGUMENT_SPEC, Rbd, RbdError
from ansible_collections.ceph_rbd.backup.plugins.module_utils._runlock import (
    BREAK, JOIN, REFUSE, PoolMissing, RunLock, decide, describe, members, run_of,
)


def holder_dict(info):
    """The holder as returned to the caller: run id, lock type, and its newest entry."""
    if info is None:
        return {}
    last = max(info['lockers'], key=lambda locker: locker.get('expiration') or '')
    return dict(run=run_of(info), type=info['type'], name=last.get('name'), cookie=last.get('cookie'),
                description=last.get('description'), expiration=last.get('expiration'),
                entries=len(info['lockers']))


def main():
    spec = dict(CLIENT_ARGUMENT_SPEC)
    spec.update(
        pool=dict(type='str', required=True),
        state=dict(type='str', choices=['locked', 'unlocked'], default='locked'),
        cookie=dict(type='str', aliases=['run']),
        ttl=dict(type='int', default=21600),
        break_lock=dict(type='bool', default=False),
        description=dict(type='str', default=''),
        member=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=spec, required_if=[('state', 'unlocked', ['cookie'])],
                           supports_check_mode=True)
    check_ranges(module)
    p = module.params
    run = p['cookie'] or uuid.uuid4().hex
    lock = RunLock(Rbd.from_params(p), p['pool'])
    try:
        info = lock.info()
        holder = holder_dict(info)
        if p['state'] == 'unlocked':
            mine = run_of(info) == run and info['type'] == 'shared'
            if mine and not module.check_mode:
                lock.break_all(info, only_run=run, only_member=p['member'] or '')
            module.exit_json(changed=mine, cookie=run, holder=holder, pool=p['pool'])
        verdict = decide(info, run, p['break_lock'])
        if verdict == REFUSE:
            module.fail_json(
                msg='another replication run holds the lock on pool %s: %s; it refuses to run concurrently. '
                    'If that run is dead, wait for the expiry or rerun with break_lock=true '
                    '(role: rbd_replicate_break_lock: true)' % (p['pool'], describe(info)),
                holder=holder, cookie=run)
        if not module.check_mode:
            if verdict == BREAK:
                lock.break_all(info)
            desc = p['description'] or 'ceph_rbd.backup on %s pid %d' % (socket.gethostname(), os.getpid())
            try:
                lock.join(run, p['ttl'], desc, p['member'] or '')
            except RbdError as e:
                now = lock.info()
                module.fail_json(msg='could not take the replication lock on pool %s: %s (held by %s)'
                                 % (p['pool'], e.stderr or e, describe(now)), holder=holder_dict(now), cookie=run)
        # joining a lock this run holds renews it: not a change of who holds it
        now = info if module.check_mode else lock.info()
        module.exit_json(changed=verdict != JOIN, cookie=run, holder=holder, pool=p['pool'], fsid=lock.fsid(),
                         members=members(now, run) or ([p['member']] if p['member'] else []))
    except RbdError as e:
        extra = dict(pool_exists=False) if isinstance(e, PoolMissing) else {}
        module.fail_json(**dict(e.as_dict(), **extra))


if __name__ == '__main__':
    main()
