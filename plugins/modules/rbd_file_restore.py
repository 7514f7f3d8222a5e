#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_file_restore
short_description: Bring files back from one backup snapshot of an RBD image (file-level restore)
version_added: 1.0.0
description:
  - Exports one snapshot of an image (C(rbd export), into a sparse file in O(workdir); a snapshot is read-only
    and nothing is written to the cluster), finds its partitions (GPT, MBR, or a file system without a partition
    table) and their file systems (C(blkid)), mounts every supported one read-only on a read-only loop device
    (ext3/ext4 with C(noload) and xfs with C(norecovery), so no journal is replayed), and copies the requested
    paths out with C(tar), keeping content, mode, owner and mtime.
  - Everything it mounted, attached or exported is removed again before it returns, also when it fails.
    O(state=absent) removes a work directory and anything still mounted or attached from it (after a run that
    was killed); the C(ceph_rbd.backup.restore_files) playbook calls it in its C(always) section.
  - Requested paths are relative to the file system's root and may not contain C(..); symlinks on the way are
    resolved inside the file system (an absolute symlink means the guest's root), so nothing outside the
    mounted file system can be read. A symlink named as the last component is restored as a symlink.
  - Needs root on the host (loop devices, mount), C(util-linux) (C(sfdisk) from C(fdisk) on Debian 12),
    C(tar), and the kernel's file system drivers.
extends_documentation_fragment: [ceph_rbd.backup.attributes, ceph_rbd.backup.rbd]
attributes:
  check_mode:
    support: full
    details:
      - Resolves the snapshot, checks the paths and the free space, and reports what it would export; exports
        and mounts nothing.
  diff_mode:
    support: none
options:
  pool:
    description: The pool that holds the backup image. Required with O(state=restored).
    type: str
  namespace:
    description: The RBD namespace inside O(pool), if any.
    type: str
  image:
    description: The backup image. Required with O(state=restored).
    type: str
  snapshot:
    description:
      - The snapshot (the night) to restore from, by name, or V(newest) for the newest snapshot whose name
        starts with O(prefix).
    type: str
    default: newest
  prefix:
    description: With O(snapshot=newest), the prefix of the backup snapshots.
    type: str
    default: backup-
  paths:
    description: Files or directories to bring back, relative to the root of the file system (C(/etc/hosts) and
      C(etc/hosts) are the same).
    type: list
    elements: str
    default: []
  partition:
    description:
      - The partition number to restore from (as in C(sfdisk); V(0) is a file system without a partition
        table). Default - the only supported file system, else the only one that holds every path in O(paths).
      - From 0 to 256 (Linux's most partitions on a disk).
    type: int
  dest:
    description:
      - Directory on this host to restore into (created if missing); a path P lands at O(dest)/P.
      - Existing files there are refused unless O(overwrite=true).
    type: path
  archive:
    description:
      - Also write the restored paths as a tar archive to this file (for example to copy it to another host).
        Must be inside O(workdir).
    type: path
  overwrite:
    description: Replace files that already exist in O(dest).
    type: bool
    default: false
  workdir:
    description:
      - Private work directory for the export and the mount points. Its name must start with
        C(rbd-file-restore.) (O(state=absent) removes it); it needs free space for the snapshot's allocated bytes.
    type: path
    required: true
  state:
    description:
      - V(restored) - export, mount, copy, tear down. V(absent) - only remove O(workdir) and unmount and detach
        anything below it.
    type: str
    choices: [restored, absent]
    default: restored
requirements:
  - C(fdisk) (C(sfdisk)), C(util-linux) (C(losetup), C(blkid), C(mount)), GNU C(tar), root.
'''

EXAMPLES = r'''
- name: /etc/fstab as it was in the snapshot of the night of 20 November
  ceph_rbd.backup.rbd_file_restore:
    pool: rbd-backup
    image: vm-101-disk-0
    snapshot: backup-20261120T010000Z
    paths: [/etc/fstab, /home/alice/notes]
    dest: /srv/restore/vm-101
    workdir: /var/tmp/rbd-file-restore.vm-101
  register: restored
'''

RETURN = r'''
snapshot:
  description: The snapshot restored from.
  returned: state=restored
  type: str
filesystems:
  description: Every region of the image (number, start, size, type, fstype, label, mounted, problem).
  returned: state=restored and not check mode
  type: list
  elements: dict
filesystem:
  description: The file system the paths came from.
  returned: state=restored and not check mode
  type: dict
files:
  description:
    - Per requested path - C(request), C(path) (where it is in the file system after resolving symlinks on the
      way, and where it lands below O(dest)), C(type), C(mode), C(mtime), C(size), C(sha256) of a file,
      C(target) of a symlink.
  returned: state=restored and not check mode
  type: list
  elements: dict
export_seconds:
  description: How long the export took.
  returned: state=restored and not check mode
  type: float
teardown:
  description: What was unmounted, detached and removed.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _filerestore as fr
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import check_ranges, image_name_problem
from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import CommandError, run
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    CLIENT_ARGUMENT_SPEC, Rbd, RbdError, image_args, image_label,
)

SPEC = dict(CLIENT_ARGUMENT_SPEC)
SPEC.update(
    pool=dict(type='str'),
    namespace=dict(type='str'),
    image=dict(type='str'),
    snapshot=dict(type='str', default='newest'),
    prefix=dict(type='str', default='backup-'),
    paths=dict(type='list', elements='str', default=[]),
    partition=dict(type='int'),
    dest=dict(type='path'),
    archive=dict(type='path'),
    overwrite=dict(type='bool', default=False),
    workdir=dict(type='path', required=True),
    state=dict(type='str', choices=['restored', 'absent'], default='restored'),
)


def inputs(module):
    """The checked request: path components, or fail_json naming what is wrong."""
    p = module.params
    problem = fr.workdir_problem(p['workdir'])
    if problem:
        module.fail_json(msg=problem)
    if p['state'] == 'absent':
        return []
    for key in ('pool', 'image'):
        if not p[key]:
            module.fail_json(msg='%s is required with state=restored' % key)
    problem = image_name_problem(p['image'])
    if problem:
        module.fail_json(msg=problem)
    if not p['paths']:
        module.fail_json(msg='paths: name at least one file or directory to restore')
    if not p['dest'] and not p['archive']:
        module.fail_json(msg='set dest (a directory on this host) or archive (a tar file), or both')
    if p['archive'] and not os.path.dirname(p['archive']).startswith(p['workdir'].rstrip('/')):
        module.fail_json(msg='archive %s must be inside workdir %s' % (p['archive'], p['workdir']))
    try:
        return [fr.request_components(path) for path in p['paths']]
    except fr.RestoreError as e:
        module.fail_json(msg=str(e))


def choose_snapshot(module, rbd, label):
    p = module.params
    snaps = rbd.snapshots(p['pool'], p['image'], p['namespace'])
    if p['snapshot'] == 'newest':
        name = _snapshots.newest(snaps, p['prefix'])
        if not name:
            module.fail_json(msg='image %s has no snapshot starting with %r to restore from' % (label, p['prefix']))
        return name
    if p['snapshot'] not in [s['name'] for s in snaps]:
        module.fail_json(msg='image %s has no snapshot %r; it has: %s'
                         % (label, p['snapshot'], ', '.join(s['name'] for s in snaps) or 'none'))
    return p['snapshot']


def allocated(rbd, p, snap):
    """Bytes the sparse export will occupy (the snapshot's allocated extents)."""
    return sum(length for _offset, length, exists in rbd.diff(p['pool'], p['image'], p['namespace'], snap=snap)
               if exists)


def lookups(root):
    def lstat_mode(rel):
        try:
            return os.lstat(os.path.join(root, rel) if rel else root).st_mode
        except OSError:
            return None

    def readlink(rel):
        return os.readlink(os.path.join(root, rel))
    return lstat_mode, readlink


def resolve_all(root, requests):
    lstat_mode, readlink = lookups(root)
    return [fr.resolve_in_root(parts, lstat_mode, readlink) for parts in requests]


def missing_paths(requests):
    """For choose_filesystem: the requested paths (as given, joined) that a mounted file system lacks."""
    def missing(fs):
        lstat_mode, readlink = lookups(fs['mountpoint'])
        lacks = []
        for parts in requests:
            try:
                fr.resolve_in_root(parts, lstat_mode, readlink)
            except fr.RestoreError:
                lacks.append('/'.join(parts))
        return lacks
    return missing


def copy_out(module, exposure, fs, requests):
    """tar the resolved paths out of the mount into the archive and/or dest; the facts of each."""
    p = module.params
    root = fs['mountpoint']
    resolved = resolve_all(root, requests)
    files = []
    for request, rel in zip(p['paths'], resolved):
        facts = fr.file_facts(root, rel)
        facts['request'] = request
        files.append(facts)
    archive = p['archive'] or os.path.join(p['workdir'], 'files.tar')
    exposure.run(['tar', '--create', '--file', archive, '--directory', root, '--numeric-owner', '--xattrs',
                  '--null', '--verbatim-files-from', '--files-from', '-'],
                 'archiving the restored paths', stdin_data='\0'.join(resolved) + '\0')
    if p['dest']:
        if not p['overwrite']:
            present = [rel for rel in resolved if os.path.lexists(os.path.join(p['dest'], rel))]
            if present:
                raise fr.RestoreError('already present in %s: %s; set overwrite=true to replace them'
                                      % (p['dest'], ', '.join(present)))
        if not os.path.isdir(p['dest']):
            os.makedirs(p['dest'], mode=0o700)
        exposure.run(['tar', '--extract', '--file', archive, '--directory', p['dest'], '--same-permissions',
                      '--same-owner', '--numeric-owner', '--xattrs'], 'extracting into ' + p['dest'])
        for facts in files:
            if facts['type'] == 'file':
                got = fr.file_facts(p['dest'], facts['path'])
                if got.get('sha256') != facts['sha256'] or got['mode'] != facts['mode']:
                    raise fr.RestoreError('%s: the copy in %s differs from the snapshot (%s)'
                                          % (facts['path'], p['dest'], got))
    if not p['archive']:
        os.unlink(archive)
    return files


def main():
    module = AnsibleModule(argument_spec=SPEC, supports_check_mode=True,
                           required_if=[('state', 'restored', ('pool', 'image'))])
    check_ranges(module)
    p = module.params
    requests = inputs(module)
    timeout = p['timeout']
    if p['state'] == 'absent':
        if module.check_mode:
            module.exit_json(changed=os.path.lexists(p['workdir']), teardown=[])
        try:
            done = fr.cleanup(p['workdir'], run, timeout)
        except (CommandError, fr.RestoreError, OSError) as e:
            module.fail_json(msg='cleaning up %s failed: %s' % (p['workdir'], e), teardown=[])
        module.exit_json(changed=bool(done), teardown=done)

    label = image_label(p['pool'], p['image'], p['namespace'])
    rbd = Rbd.from_params(p)
    try:
        snap = choose_snapshot(module, rbd, label)
        needed = allocated(rbd, p, snap)
    except RbdError as e:
        module.fail_json(**e.as_dict())
    snap_label = image_label(p['pool'], p['image'], p['namespace'], snap)
    free_dir = p['workdir'] if os.path.isdir(p['workdir']) else os.path.dirname(p['workdir'].rstrip('/'))
    st = os.statvfs(free_dir)
    problem = fr.space_problem(needed, st.f_bavail * st.f_frsize, free_dir)
    if problem:
        module.fail_json(msg='image %s: %s' % (snap_label, problem), snapshot=snap, teardown=[])
    if module.check_mode:
        module.exit_json(changed=True, snapshot=snap, allocated_bytes=needed, teardown=[],
                         msg='would export %s (%d bytes allocated) into %s and restore %s'
                         % (snap_label, needed, p['workdir'], ', '.join(p['paths'])))

    if not os.path.isdir(p['workdir']):
        os.makedirs(p['workdir'], mode=0o700)
    exposure = fr.Exposure(p['workdir'], run, timeout)
    result = dict(snapshot=snap, teardown=[], filesystems=[])
    error = None
    try:
        argv = rbd.argv('export', '--no-progress', *image_args(p['pool'], p['image'], p['namespace'], snap)) + \
            [exposure.image_file]
        result['export_seconds'] = round(fr.export_snapshot(argv, exposure.image_file, timeout), 3)
        exposure.probe()
        exposure.mount_all()
        fs = fr.choose_filesystem(exposure.filesystems, p['partition'], missing_paths(requests))
        result['files'] = copy_out(module, exposure, fs, requests)
        result['filesystem'] = public(fs)
    except (CommandError, fr.RestoreError, OSError, ValueError) as e:
        error = e
    finally:
        result['filesystems'] = [public(f) for f in exposure.filesystems]
        try:
            result['teardown'] = exposure.teardown()
        except (CommandError, fr.RestoreError, OSError) as e:
            error = error or e
            result['teardown_error'] = str(e)
    if error is not None:
        cmd = getattr(error, 'cmd', None)
        module.fail_json(msg='image %s: %s' % (snap_label, error), cmd=cmd, **result)
    module.exit_json(changed=True, **result)


def public(fs):
    return dict((k, v) for k, v in fs.items() if k not in ('options',))


if __name__ == '__main__':
    main()
