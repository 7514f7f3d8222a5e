#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_snapshot
short_description: Create or remove a snapshot on one or many RBD images
version_added: 1.0.0
description:
  - Creates (or removes) one snapshot, with the same name, on every listed image of a pool,
    concurrently.
  - Names are O(prefix) followed by the UTC time to the second (for example C(backup-20261126T114059Z))
    unless O(snapshot) is given. Creating a snapshot that already exists is not a change.
  - Snapshots whose name does not start with O(prefix) are never removed.
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.attributes.SNAPSHOTS,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.POOL, ceph_rbd.backup.rbd.IMAGES]
options:
  images:
    description: The images to snapshot; one of O(images) and O(include) is required.
    type: list
    elements: str
    aliases: [image]
  include:
    description:
      - Instead of O(images), snapshot every image of the pool whose name equals or matches (shell-style) one
        of these patterns, like C(zfs snapshot -r). The module lists the pool first and fails, changing
        nothing, when the pool does not exist. RV(names) returns what matched.
    type: list
    elements: str
  exclude:
    description: With O(include), names or patterns to leave out.
    type: list
    elements: str
    default: []
  snapshot:
    description:
      - The snapshot name. Default is O(prefix) plus the current UTC time, computed once for all images.
      - Required with O(state=absent).
    type: str
  prefix:
    description: The prefix that marks the snapshots this collection owns.
    type: str
    default: backup-
  state:
    description: Whether the snapshot should exist.
    type: str
    choices: [present, absent]
    default: present
  share:
    description:
      - Work only on this host's part of the images, when several hosts of one run share the pool. Every
        image goes to exactly one member by rendezvous hashing of its name, so adding or removing a member
        moves only that member's part.
      - The C(ceph_rbd.backup.rbd_replicate) role passes the hosts of the play that reach the same source
        cluster (the same fsid and pool in M(ceph_rbd.backup.rbd_replication_lock)'s result).
    type: dict
    suboptions:
      members:
        description: The hosts that share the images.
        type: list
        elements: str
        required: true
      member:
        description: This host's name among O(share.members).
        type: str
        required: true
'''

EXAMPLES = r'''
- name: Snapshot three images with a timestamped name
  ceph_rbd.backup.rbd_snapshot:
    pool: rbd
    images: [vm-101-disk-0, vm-102-disk-0, vm-103-disk-0]

- name: Snapshot every image of a pool but the scratch ones
  ceph_rbd.backup.rbd_snapshot:
    pool: rbd
    include: ['*']
    exclude: ['*-scratch']

- name: Remove one named snapshot (only a prefixed one can be removed)
  ceph_rbd.backup.rbd_snapshot:
    pool: rbd
    images: vm-101-disk-0
    snapshot: backup-20261126T010000Z
    state: absent

# Ad hoc:
# ansible source -m ceph_rbd.backup.rbd_snapshot -a 'pool=rbd images=vm-101-disk-0'
'''

RETURN = r'''
snapshot:
  description: The snapshot name used for every image.
  returned: always
  type: str
  sample: backup-20261126T114059Z
images:
  description: One result per image, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image.
      type: str
    changed:
      description: Whether this image's snapshot was created (or removed).
      type: bool
    snapshot:
      description: The snapshot name.
      type: str
    snapshots:
      description:
        - With O(state=present), the image's snapshots afterwards (C(id), C(name), C(size)), oldest first.
        - Hand them to M(ceph_rbd.backup.rbd_diff_transfer) (filter P(ceph_rbd.backup.transfer_item#filter)) so
          that it need not ask the source again.
      type: list
      elements: dict
      returned: success, with O(state=present)
    previous:
      description: With O(state=present), the snapshot with O(prefix) just before this one (null if none).
      type: str
      returned: success, with O(state=present)
    unchanged:
      description:
        - With O(state=present), true when nothing was written to the image between RV(images[].previous)
          and this snapshot and its size is the same; null when unknown (no previous snapshot, or check mode).
      type: bool
      returned: success, with O(state=present)
    failed:
      description: Whether this image failed.
      type: bool
    msg:
      description: Why this image failed.
      type: str
      returned: on failure
names:
  description:
    - The images worked on (with O(include), the names that matched), sorted as given or listed; with O(share),
      the part of them this host carries.
  returned: always
  type: list
  elements: str
listed:
  description: The images named or matched, before O(share) took this host's part.
  returned: always
  type: list
  elements: str
failed_images:
  description: The images on which the snapshot could not be created or removed.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _share, _snapshots
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    finish, image_items, image_name_problem, pool_argument_spec, run_images, select_names,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import RbdError, image_label
from ansible_collections.ceph_rbd.backup.plugins.module_utils._transfer import source_hints


def _listed_items(module, rbd, p):
    """The images of the pool that match include/exclude (like zfs snapshot -r); fails when the pool is gone."""
    try:
        if not rbd.pool_exists(p['pool'], p['namespace']):
            module.fail_json(msg='pool %s does not exist' % (p['pool'] + ('/' + p['namespace'] if p['namespace']
                                                                          else '')), pool_exists=False)
        listed = rbd.list_images(p['pool'], p['namespace'])
    except RbdError as e:
        module.fail_json(**e.as_dict())
    if p['parallel'] < 1:
        module.fail_json(msg='parallel must be at least 1, got %d' % p['parallel'])
    return [dict(image=n) for n in select_names(listed, p['include'], p['exclude'])]


def _items(module, rbd, p):
    """The images named or listed, and (with share) the part of them this host carries."""
    items = _listed_items(module, rbd, p) if p['include'] is not None else image_items(module)
    listed = [i['image'] for i in items]
    if p['share']:
        mine = set(_share.share(listed, p['share']['members'], p['share']['member']))
        items = [i for i in items if i['image'] in mine]
    return items, listed


def main():
    module = AnsibleModule(
        argument_spec=pool_argument_spec(
            images=dict(type='list', elements='str', aliases=['image']),
            include=dict(type='list', elements='str'),
            exclude=dict(type='list', elements='str', default=[]),
            snapshot=dict(type='str'),
            prefix=dict(type='str', default='backup-'),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            share=dict(type='dict', options=dict(members=dict(type='list', elements='str', required=True),
                                                 member=dict(type='str', required=True))),
        ),
        required_if=[('state', 'absent', ['snapshot'])],
        required_one_of=[('images', 'include')],
        mutually_exclusive=[('images', 'include')],
        supports_check_mode=True,
    )
    p = module.params
    rbd = librbd_client(p)
    items, listed = _items(module, rbd, p)
    name = p['snapshot'] or _snapshots.make_name(p['prefix'])
    problem = _snapshots.validate_snapshot_name(name)
    if problem:
        module.fail_json(msg=problem)
    if p['state'] == 'absent' and not name.startswith(p['prefix']):
        module.fail_json(msg='refusing to remove snapshot %s: it does not start with the prefix %r'
                         % (name, p['prefix']))
    before, after = {}, {}

    def work(item):
        image = item['image']
        if image_name_problem(image):    # a listed image the rbd CLI of the next steps could not take safely
            raise RbdError(image_name_problem(image), image=image_label(p['pool'], image, p['namespace']))
        snaps = rbd.snapshots_or_none(p['pool'], image, p['namespace'])
        if snaps is None:
            raise RbdError('the image does not exist', image=image_label(p['pool'], image, p['namespace']))
        names = [s['name'] for s in _snapshots.with_prefix(snaps, p['prefix'])]
        before[image] = names
        exists = name in [s['name'] for s in snaps]
        changed = exists != (p['state'] == 'present')
        if changed and not module.check_mode:
            if p['state'] == 'present':
                rbd.snap_create(p['pool'], image, name, p['namespace'])
            else:
                if [s for s in snaps if s['name'] == name and s['protected']]:
                    raise RbdError('snapshot %s is protected (it may have clones); unprotect it first' % name,
                                   image=image_label(p['pool'], image, p['namespace']))
                rbd.snap_remove(p['pool'], image, name, p['namespace'])
        after[image] = (names + [name]) if changed and p['state'] == 'present' else \
            [n for n in names if not (changed and n == name)]
        result = dict(image=image, changed=changed, snapshot=name)
        if p['state'] == 'present':
            # what the transfer would otherwise ask this host for over ssh (see rbd_diff_transfer's images)
            result.update(source_hints(rbd, p['pool'], image, p['namespace'], p['prefix'], name))
        return result

    outcomes = run_images(module, items, work)
    finish(module, outcomes, 'rbd_snapshot', diff=dict(before=before, after=after), snapshot=name,
           names=[i['image'] for i in items], listed=listed)


if __name__ == '__main__':
    main()
