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
  groups:
    description:
      - Images that belong together (the disks of one VM, a database and its log) get one point in time - per
        group, O(groups[].freeze) runs, every image of the group is snapshotted at once, and O(groups[].thaw)
        runs, always (also when a snapshot failed or the freeze failed or timed out).
      - A freeze that fails leaves the group's snapshots crash-consistent - taken anyway and said so in
        RV(images[].consistency) and RV(images[].freeze_error) - unless O(groups[].on_freeze_failure=skip).
      - The first spec an image belongs to wins; other images are snapshotted on their own. With O(share) a
        group is never split between hosts. In check mode no hook runs.
      - Hooks are argv lists (no shell); each word may name the captures of O(groups[].match) as C({name}),
        and C({group}) (the captures joined by C(-), or the rbd group's name). Ceph's own group snapshots
        (C(rbd group snap create)) cannot be sent with C(export-diff) by name on Pacific, so a group is one
        freeze window around concurrent snapshots.
    type: list
    elements: dict
    default: []
    suboptions:
      match:
        description:
          - A regular expression a whole image name must match; images with equal captures form one group,
            for example a pattern that captures the VM id of Proxmox disk names (see the examples).
          - One of O(groups[].match) and O(groups[].rbd_group).
        type: str
      rbd_group:
        description: The name of an rbd group of O(pool) (C(rbd group create)) whose images form one group.
        type: str
      freeze:
        description: The command to run before the group's snapshots, for example V([qm, guest, cmd, '{vmid}', fsfreeze-freeze]).
        type: list
        elements: str
        default: []
      thaw:
        description: The command to run after them, for example V([qm, guest, cmd, '{vmid}', fsfreeze-thaw]).
        type: list
        elements: str
        default: []
      remote:
        description: Run the hooks over ssh on this host. Default - the host the module runs on.
        type: dict
        suboptions:
          host:
            description: The address of the host.
            type: str
            required: true
          user:
            description: The user to log in as.
            type: str
          port:
            description: The ssh port, from 1 to 65535.
            type: int
          key:
            description: The private key to log in with (default - ssh's own default keys).
            type: path
          options:
            description: Extra ssh arguments.
            type: list
            elements: str
            default: []
      timeout:
        description: Seconds after which a hook is killed (and counts as failed), from 1 to 3600.
        type: int
        default: 30
      on_freeze_failure:
        description: V(snapshot) takes crash-consistent snapshots when the freeze fails; V(skip) takes none (the images fail).
        type: str
        choices: [snapshot, skip]
        default: snapshot
'''

EXAMPLES = r'''
- name: Snapshot every disk of each Proxmox VM at one point in time, inside a guest fsfreeze
  ceph_rbd.backup.rbd_snapshot:
    pool: rbd
    include: ['*']
    groups:
      - match: 'vm-(?P<vmid>[0-9]+)-disk-[0-9]+'
        freeze: [qm, guest, cmd, '{vmid}', fsfreeze-freeze]
        thaw: [qm, guest, cmd, '{vmid}', fsfreeze-thaw]
        remote: {host: pve-1.example.com, user: root}
        timeout: 20

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
    object_size:
      description:
        - With O(state=present), on the image's first night (no previous snapshot), its object size in bytes -
          what M(ceph_rbd.backup.rbd_diff_transfer) creates the destination image with, without asking again.
      type: int
      returned: success, with O(state=present), when RV(images[].previous) is null
      version_added: 1.1.0
    consistency:
      description:
        - With O(groups), for an image of a group - V(frozen) (the freeze hook succeeded), V(crash-consistent) (it
          failed; see C(freeze_error)), V(grouped) (no freeze hook - snapshotted at once with its group), or in
          check mode C(would freeze (<group>)).
      type: str
      returned: for images of a group
    group:
      description: The group's key (for example C(spec0:101)).
      type: str
      returned: for images of a group, not in check mode
    group_images:
      description: The images snapshotted in the same freeze window.
      type: list
      elements: str
      returned: for images of a group, not in check mode
    freeze_error:
      description:
        - Why the freeze hook failed (the snapshot is only crash-consistent; the module also warns, naming the
          group's images and the error).
      type: str
      returned: when the freeze hook failed
    thaw_error:
      description: Why the thaw hook failed (the module also warns - the guest may still be frozen).
      type: str
      returned: when the thaw hook failed
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

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _hooks, _share, _snapshots
from ansible_collections.ceph_rbd.backup.plugins.module_utils._parallel import run_all
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    check_ranges, finish, image_items, image_name_problem, pool_argument_spec, select_names,
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
    return [dict(image=n) for n in select_names(listed, p['include'], p['exclude'])]


def _groups(module, rbd, p):
    """The images named or listed, in consistency groups (an image alone is a group of its own), and with
    share the groups this host carries (a group is never split between hosts); and every name listed."""
    items = _listed_items(module, rbd, p) if p['include'] is not None else image_items(module)
    listed = [i['image'] for i in items]
    specs = p['groups'] or []
    problems = [_hooks.spec_problem(s) for s in specs]
    if any(problems):
        module.fail_json(msg='groups: ' + '; '.join(x for x in problems if x))
    try:
        members = dict((s['rbd_group'], rbd.group_images(p['pool'], s['rbd_group'], p['namespace']))
                       for s in specs if s.get('rbd_group'))
    except RbdError as e:
        module.fail_json(**e.as_dict())
    groups = _hooks.group_images(listed, specs, members)
    if p['share']:
        key = dict((i, g.key) for g in groups for i in g.images)
        mine = set(_share.share(listed, p['share']['members'], p['share']['member'], key))
        groups = [g for g in groups if g.images[0] in mine]
    return groups, listed


def _run_groups(module, groups, work):
    """Each group frozen, snapshotted and thawed (see _hooks.run_group), ``parallel`` groups at a time;
    one outcome per image."""
    outcomes = []
    for group, out, error in run_all(groups, lambda g: _hooks.run_group(g, work, module.check_mode),
                                     module.params['parallel']):
        out = out if error is None else [(i, None, error) for i in group.images]
        outcomes += [(dict(image=i), r, e) for i, r, e in out]
    p = module.params
    for message in _hooks.hook_warnings([r for _i, r, _e in outcomes],
                                        lambda image: image_label(p['pool'], image, p['namespace'])):
        module.warn(message)
    return outcomes


SPEC = pool_argument_spec(
    images=dict(type='list', elements='str', aliases=['image']),
    include=dict(type='list', elements='str'),
    exclude=dict(type='list', elements='str', default=[]),
    snapshot=dict(type='str'),
    prefix=dict(type='str', default='backup-'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    share=dict(type='dict', options=dict(members=dict(type='list', elements='str', required=True),
                                         member=dict(type='str', required=True))),
    groups=dict(type='list', elements='dict', default=[], options=dict(
        match=dict(type='str'), rbd_group=dict(type='str'),
        freeze=dict(type='list', elements='str', default=[]), thaw=dict(type='list', elements='str', default=[]),
        remote=dict(type='dict', options=_hooks.REMOTE_SPEC), timeout=dict(type='int', default=30),
        on_freeze_failure=dict(type='str', choices=['snapshot', 'skip'], default='snapshot'))),
)


def main():
    module = AnsibleModule(
        argument_spec=SPEC,
        required_if=[('state', 'absent', ['snapshot'])],
        required_one_of=[('images', 'include')],
        mutually_exclusive=[('images', 'include')],
        supports_check_mode=True,
    )
    check_ranges(module)
    p = module.params
    rbd = librbd_client(p)
    groups, listed = _groups(module, rbd, p)
    name = p['snapshot'] or _snapshots.make_name(p['prefix'])
    problem = _snapshots.validate_snapshot_name(name)
    if problem:
        module.fail_json(msg=problem)
    if p['state'] == 'absent' and not name.startswith(p['prefix']):
        module.fail_json(msg='refusing to remove snapshot %s: it does not start with the prefix %r'
                         % (name, p['prefix']))
    before, after = {}, {}

    def work(image):
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

    outcomes = _run_groups(module, groups, work)
    finish(module, outcomes, 'rbd_snapshot', diff=dict(before=before, after=after), snapshot=name,
           names=[i for g in groups for i in g.images], listed=listed)


if __name__ == '__main__':
    main()
