#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_snapshot_prune
short_description: Remove old prefixed RBD snapshots under a retention policy
version_added: 1.0.0
description:
  - Applies a retention policy to the snapshots whose name starts with O(prefix), on every listed image,
    concurrently. Snapshots without the prefix are never touched.
  - A snapshot is kept if any rule keeps it - C(last) keeps the newest N; C(hourly), C(daily), C(weekly),
    C(monthly) and C(yearly) keep the newest snapshot of each of the N newest such periods (UTC) that
    have one. Every snapshot named in O(keep) (the replication base) is kept whatever the policy says.
  - A protected snapshot (it may have clones) is never removed; it is reported in RV(images[].skipped).
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.attributes.SNAPSHOTS,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.POOL, ceph_rbd.backup.rbd.IMAGES]
options:
  images:
    description:
      - The images to prune. Each element is an image name, or a dict with C(image) and C(keep)
        (a list of snapshot names that must be kept for that image only).
    type: list
    elements: raw
    required: true
  prefix:
    description: The prefix that marks the snapshots this collection owns.
    type: str
    default: backup-
  retention:
    description:
      - 'The policy, for example V({last: 3, daily: 7, weekly: 4, monthly: 6}).'
      - Keys are C(last), C(hourly), C(daily), C(weekly), C(monthly) and C(yearly); values are
        non-negative whole numbers.
    type: dict
    required: true
  keep:
    description: Snapshot names to keep on every image (for example the newest common snapshot).
    type: list
    elements: str
    default: []
  record_hold:
    description:
      - Record, in the image-meta key C(ceph_rbd_backup.hold.<record_hold>) of each image, that the image's first
        C(keep) snapshot is the base of this destination (for example V(backup-host/rbd)).
      - Every snapshot named by any C(ceph_rbd_backup.hold.*) key is kept, so that a source replicated to
        several destinations never loses the base of one while pruning for another.
    type: str
'''

EXAMPLES = r'''
- name: Keep two snapshots on the source, never the base
  ceph_rbd.backup.rbd_snapshot_prune:
    pool: rbd
    images: [vm-101-disk-0]
    retention: {last: 2}
    keep: [backup-20261126T010000Z]

- name: Grandfather-father-son on the backup cluster
  ceph_rbd.backup.rbd_snapshot_prune:
    pool: rbd
    images:
      - image: vm-101-disk-0
        keep: [backup-20261126T010000Z]
    retention: {last: 3, daily: 7, weekly: 4, monthly: 6}
'''

RETURN = r'''
images:
  description: What the policy removed, kept and skipped on each image.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image name.
      type: str
    removed:
      description: Snapshots removed (in check mode, that would be removed), oldest first.
      type: list
      elements: str
    kept:
      description: Each kept snapshot with the rules that keep it.
      type: dict
    skipped:
      description: Snapshots the policy would remove but that are protected.
      type: list
      elements: str
    holds:
      description: The bases of destinations recorded on the image (destination -> snapshot); all are kept.
      type: dict
failed_images:
  description: The images whose snapshots could not be listed or removed.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _retention, _snapshots
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    check_ranges, finish, image_items, pool_argument_spec, run_images,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import META_HOLD_PREFIX, RbdError, image_label


def main():
    module = AnsibleModule(
        argument_spec=pool_argument_spec(
            images=dict(type='list', elements='raw', required=True),
            prefix=dict(type='str', default='backup-'),
            retention=dict(type='dict', required=True),
            keep=dict(type='list', elements='str', default=[]),
            record_hold=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    check_ranges(module)
    p = module.params
    policy, problem = _retention.validate_policy(p['retention'])
    if problem:
        module.fail_json(msg=problem)
    if not p['prefix']:
        module.fail_json(msg='prefix must not be empty: it is what keeps foreign snapshots safe')
    items = image_items(module, fields=('keep',))
    rbd = librbd_client(p)
    before, after = {}, {}

    def work(item):
        image = item['image']
        label = image_label(p['pool'], image, p['namespace'])
        snaps = rbd.snapshots_or_none(p['pool'], image, p['namespace'])
        if snaps is None:
            raise RbdError('the image does not exist', image=label)
        own = _snapshots.with_prefix(snaps, p['prefix'])
        timed = [(s['name'], _snapshots.snapshot_time(s, p['prefix'])) for s in own]
        own_keep = list(item.get('keep') or []) + list(p['keep'])
        if p['record_hold'] and own_keep and not module.check_mode:
            rbd.meta_set(p['pool'], image, META_HOLD_PREFIX + p['record_hold'], own_keep[0], p['namespace'])
        holds = dict((k[len(META_HOLD_PREFIX):], v) for k, v in rbd.meta_list(p['pool'], image, p['namespace']).items()
                     if k.startswith(META_HOLD_PREFIX))
        if p['record_hold'] and own_keep:
            holds[p['record_hold']] = own_keep[0]
        kept, removable = _retention.select(timed, policy, own_keep + sorted(set(holds.values())))
        protected = set(s['name'] for s in own if s['protected'])
        skipped = [n for n in removable if n in protected]
        remove = [n for n in removable if n not in protected]
        if not module.check_mode:
            for name in remove:
                rbd.snap_remove(p['pool'], image, name, p['namespace'])
        before[image] = [s['name'] for s in own]
        after[image] = [s['name'] for s in own if s['name'] not in remove]
        return dict(image=image, changed=bool(remove), removed=remove, kept=kept, skipped=skipped, holds=holds)

    finish(module, run_images(module, items, work), 'rbd_snapshot_prune', diff=dict(before=before, after=after))


if __name__ == '__main__':
    main()
