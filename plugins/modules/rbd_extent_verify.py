#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_extent_verify
short_description: Prove that the RBD snapshots of two clusters hold the same bytes (digests)
version_added: 1.0.0
description:
  - Computes, for each image, a digest of a snapshot - and, given O(expected) digests computed on the
    other cluster, fails on any mismatch, naming the image and both digests.
  - V(data) (default) hashes the snapshot size and the bytes of every extent that changed between
    O(from_snapshot) and O(snapshot) on the source. On the destination the source's extent list (from
    O(expected)) is read, so re-sparsified zeros do not matter but every data byte does.
  - V(extents) hashes only the extent list (the old script's check). It is cheap, cannot see a flipped
    data byte, and can differ on identical data where C(import-diff) re-sparsified zeros.
  - V(full) hashes the whole snapshot (C(rbd export)).
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.attributes.READ_ONLY,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.POOL, ceph_rbd.backup.rbd.IMAGES]
requirements:
  - python3-rbd and python3-rados for fast reads with V(data) (without them it streams C(rbd export)). They
    read in a child process; if it crashes or stalls, the image is read again with C(rbd export).
options:
  images:
    description:
      - The images. Each element is a name, or a dict with C(image) and optional C(snapshot) and
        C(from_snapshot) that override the module-level options for that image.
    type: list
    elements: raw
    required: true
  snapshot:
    description: The snapshot to verify (per image overridable).
    type: str
  from_snapshot:
    description: The older snapshot; the extents changed since it are verified (V(data), V(extents)).
      Without it the whole allocated image is.
    type: str
  method:
    description: What to compare.
    type: str
    choices: [data, extents, full]
    default: data
  expected:
    description:
      - The RV(images) list returned by this module on the other cluster. Each image's digest is compared
        with the element of the same C(image); for V(data) its C(extents) are the ones read here.
    type: list
    elements: dict
'''

EXAMPLES = r'''
- name: Digest on the source
  ceph_rbd.backup.rbd_extent_verify:
    pool: rbd
    images:
      - {image: vm-101-disk-0, from_snapshot: backup-20261125T010000Z, snapshot: backup-20261126T010000Z}
  register: source_digest

- name: Compare on the backup cluster
  ceph_rbd.backup.rbd_extent_verify:
    pool: rbd
    images: "{{ source_digest.images }}"
    expected: "{{ source_digest.images }}"
  delegate_to: backup-host
'''

RETURN = r'''
images:
  description: The digest of each image, and whether it matched O(expected).
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image (as named in O(images)).
      type: str
    digest:
      description: The SHA-256 digest (hex).
      type: str
    expected:
      description: The digest from O(expected), when given.
      type: str
    match:
      description: Whether digest equals expected (null without O(expected)).
      type: bool
    extents:
      description: The extents read, as [offset, length, exists] (V(data) and V(extents)).
      type: list
    bytes_read:
      description: Bytes read and hashed.
      type: int
    fallback:
      description:
        - Present when the python3-rbd reader (a child process) died, stalled or failed on this image, and
          the image was read again with C(rbd export); says what happened. The digest is unaffected.
      type: str
      sample: "librbd reader died with SIGABRT: terminate called after throwing an instance of
        'std::system_error' / what():  Invalid argument; read again with rbd export"
    seconds:
      description: Time taken.
      type: float
failed_images:
  description: The images that failed or did not match.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _verify
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    check_ranges, finish, image_items, pool_argument_spec, run_images,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import LibRbd, client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import RbdError, image_label


def _expected_for(expected, image, snapshot, method, label):
    """The other side's result for this image, checked to be for the same method and snapshot (None: no
    ``expected`` was given)."""
    if expected is None:
        return None
    other = expected.get(image)
    if other is None:
        raise RbdError('no expected digest was given for this image', image=label)
    if other.get('method', method) != method or other.get('snapshot', snapshot) != snapshot:
        raise RbdError('the expected digest is for %s@%s, not %s@%s' % (
            other.get('method'), other.get('snapshot'), method, snapshot), image=label)
    return other


def main():
    module = AnsibleModule(
        argument_spec=pool_argument_spec(
            images=dict(type='list', elements='raw', required=True),
            snapshot=dict(type='str'),
            from_snapshot=dict(type='str'),
            method=dict(type='str', choices=list(_verify.METHODS), default='data'),
            expected=dict(type='list', elements='dict'),
        ),
        supports_check_mode=True,
    )
    check_ranges(module)
    p = module.params
    items = image_items(module, fields=('snapshot', 'from_snapshot'))
    expected = None
    if p['expected'] is not None:
        expected = dict((e.get('image'), e) for e in p['expected'] if not e.get('failed'))
    # Queries (info, diff) and the data reads go through python3-rbd, which crashed or hung the process that
    # used it, in child processes: a query whose child fails is done again with the rbd CLI; an image whose
    # reader dies or stalls is read again with rbd export and its result says so (fallback). This process
    # never loads librados. (Per image the CLI's info cost ~0.06 s of CPU, a child's call ~0.007 s.)
    rbd = librbd_client(p)
    reader = None
    if p['method'] == 'data' and _verify.HAS_LIBRBD:
        # (the connection options as the clients read them from the module's options)
        reader = _verify.WorkerReader(LibRbd.from_params(p).conn, timeout=p['timeout'])

    def work(item):
        snapshot = item.get('snapshot') or p['snapshot']
        label = image_label(p['pool'], item['image'], p['namespace'], snapshot)
        if not snapshot:
            raise RbdError('no snapshot given to verify', image=label)
        other = _expected_for(expected, item['image'], snapshot, p['method'], label)
        extents = other.get('extents') if other is not None and p['method'] == 'data' else None
        result = _verify.digest_image(rbd, p['pool'], p['namespace'], item['image'], snapshot, p['method'],
                                      from_snapshot=item.get('from_snapshot') or p['from_snapshot'],
                                      extents=extents, reader=reader)
        result.update(changed=False, match=None)
        if other is not None:
            result.update(expected=other.get('digest'), match=result['digest'] == other.get('digest'))
            if not result['match']:
                raise RbdError('%s digest mismatch at snapshot %s: expected (other side) %s, found here %s'
                               % (p['method'], snapshot, other.get('digest'), result['digest']), image=label)
        return result

    try:
        # queries in parallel; the reader takes one image at a time
        outcomes = run_images(module, items, work)
    finally:
        if reader is not None:
            reader.close()
    for _item, result, _error in outcomes:
        if result and result.get('fallback'):
            label = image_label(p['pool'], result['image'], p['namespace'], result['snapshot'])
            module.warn('image %s: %s' % (label, result['fallback']))
    finish(module, outcomes, 'rbd_extent_verify')


if __name__ == '__main__':
    main()
