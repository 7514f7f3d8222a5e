#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_image_info
short_description: List the RBD images of a pool, optionally with their snapshots
version_added: 1.0.0
description:
  - Lists the images of a pool (filtered by shell-style patterns) and, with O(snapshots=true), each image's
    snapshots, concurrently. Reports whether the pool exists instead of failing when it does not.
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.attributes.READ_ONLY,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.POOL, ceph_rbd.backup.rbd.IMAGES]
options:
  include:
    description: Shell-style patterns; an image is listed if it matches one. Default is every image.
    type: list
    elements: str
    default: ['*']
  exclude:
    description: Shell-style patterns of images not to list.
    type: list
    elements: str
    default: []
  snapshots:
    description: Also list each image's snapshots.
    type: bool
    default: false
  prefix:
    description: With O(snapshots=true), also return each image's newest snapshot with this prefix.
    type: str
    default: backup-
  fail_on_missing_pool:
    description:
      - Fail, saying how to create it, when O(pool) (or O(namespace)) does not exist. By default the module
        reports RV(pool_exists=false) and lists nothing.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: The images the nightly run will replicate
  ceph_rbd.backup.rbd_image_info:
    pool: rbd
    exclude: ['*-scratch']
  register: pool_images
'''

RETURN = r'''
pool_exists:
  description: Whether the pool (and namespace) exists.
  returned: always
  type: bool
names:
  description: The image names, sorted.
  returned: always
  type: list
  elements: str
images:
  description: One entry per image (with O(snapshots=true), its snapshots and newest prefixed snapshot).
  returned: always
  type: list
  elements: dict
failed_images:
  description: Images whose snapshots could not be listed.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    check_ranges, finish, pool_argument_spec, run_images, select_names,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import RbdError


SPEC = pool_argument_spec(
    include=dict(type='list', elements='str', default=['*']),
    exclude=dict(type='list', elements='str', default=[]),
    snapshots=dict(type='bool', default=False),
    prefix=dict(type='str', default='backup-'),
    fail_on_missing_pool=dict(type='bool', default=False),
)


def main():
    module = AnsibleModule(argument_spec=SPEC, supports_check_mode=True)
    check_ranges(module)
    p = module.params
    rbd = librbd_client(p)
    try:
        if not rbd.pool_exists(p['pool'], p['namespace']):
            missing = dict(changed=False, pool_exists=False, names=[], images=[], failed_images=[])
            if p['fail_on_missing_pool']:
                where = p['pool'] + ('/' + p['namespace'] if p['namespace'] else '')
                how = 'ceph osd pool create %s && rbd pool init %s' % (p['pool'], p['pool'])
                if p['namespace']:
                    how += ' && rbd namespace create %s' % where
                module.fail_json(msg='the pool %s does not exist on this cluster: create it first (%s)' % (where, how),
                                 **missing)
            module.exit_json(**missing)
        names = select_names(rbd.list_images(p['pool'], p['namespace']), p['include'], p['exclude'])
    except RbdError as e:
        module.fail_json(**e.as_dict())

    def work(item):
        out = dict(image=item['image'], changed=False)
        if p['snapshots']:
            snaps = rbd.snapshots(p['pool'], item['image'], p['namespace'])
            out['snapshots'] = snaps
            out['newest'] = _snapshots.newest(snaps, p['prefix'])
        return out

    items = [dict(image=n) for n in names]
    outcomes = run_images(module, items, work) if p['snapshots'] else [(i, dict(i, changed=False), None) for i in items]
    finish(module, outcomes, 'rbd_image_info', pool_exists=True, names=names)


if __name__ == '__main__':
    main()
