#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_diff_transfer
short_description: Bring destination RBD images up to a source snapshot with export-diff/import-diff (ssh or local pipe)
version_added: 1.0.0
description:
  - For every listed image, picks the base - the newest snapshot with O(prefix) that exists on both sides
    (ordered by snapshot id on the source) - and streams C(rbd export-diff --from-snap BASE) into
    C(rbd import-diff) on the destination. The first run creates the destination image and sends the
    whole image.
  - In O(mode=pull) the module runs on the destination host and reads the source over ssh; in
    O(mode=push) it runs on the source host and writes to the destination over ssh; in O(mode=direct)
    both C(rbd) ends run on the host the module runs on, each against its own cluster (O(source_ceph) and
    O(ceph)), joined by a local pipe - no ssh. The exit code of every process at both ends is checked, and a
    stream that moves no data for O(timeout) seconds is killed.
  - The snapshot that C(import-diff) creates after its last write is the commit marker - a broken transfer
    leaves no new destination snapshot, and the next run starts again from the same base.
  - If the destination image changed since the base, the image is refused unless O(allow_rollback=true)
    (then it is rolled back to the base). The leftovers of this module's own interrupted import are
    recognised (image-meta C(ceph_rbd_backup.importing)) and rolled back automatically.
  - A destination image that shares no snapshot with the source is not overwritten in place - it is
    rebuilt under a temporary name, and the old image is renamed aside (RV(images[].replaced_image)),
    never deleted.
extends_documentation_fragment: [ceph_rbd.backup.attributes,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.REMOTE, ceph_rbd.backup.rbd.IMAGES]
notes:
  - O(ceph) names the cluster of the host the module runs on (the destination in pull mode, the source in
    push mode); O(remote) the other host and O(remote.ceph) its cluster. In direct mode O(ceph) names the
    destination cluster and O(source_ceph) the source cluster, both as seen from the host the module runs
    on; O(remote) is not used.
attributes:
  check_mode:
    support: full
    details:
      - Reports per image the plan (action, base, steps) and the data bytes that would be sent; changes nothing.
  diff_mode:
    support: full
    details:
      - Shows each destination image's newest replicated snapshot before and after.
options:
  mode:
    description:
      - Where the module runs - V(pull) on the destination (backup) host, reading the source over ssh;
        V(push) on the source host, writing to the destination over ssh; V(direct) on a host that reaches
        both clusters (normally the backup host), C(rbd export-diff | rbd import-diff) as a local pipe, the
        source read with O(source_ceph).
      - In direct mode O(compression) is not applied (nothing crosses a network) and O(run_lock) is renewed
        with O(source_ceph) (a read-only user cannot; set O(run_lock.renew=false) for it).
      - O(remote) is required in pull and push mode and not used in direct mode.
    type: str
    choices: [pull, push, direct]
    default: pull
  remote:
    required: false
  source_ceph:
    description:
      - With O(mode=direct), the source cluster as it is named on the host the module runs on (the keys of
        O(ceph)) - for example a C(ceph.conf) copied from the source cluster and the keyring of a read-only
        user (C(mon 'profile rbd' osd 'profile rbd-read-only pool=...')). Required in direct mode, not used
        otherwise.
    type: dict
    suboptions:
      cluster:
        description: Cluster name (C(--cluster)) of the source cluster on this host.
        type: str
      conf:
        description: Path of the source cluster's C(ceph.conf) on this host (C(--conf)).
        type: str
      user:
        description: The cephx id on the source cluster (C(--id)), for example a read-only user.
        type: str
      keyring:
        description: Path of that user's keyring on this host (C(--keyring)).
        type: str
  images:
    description:
      - The source images. Each element is a name, or a dict with C(image), optional C(dest_image)
        (the destination name, default the same) and optional C(snapshot) (overrides O(snapshot)).
      - "A dict may also carry what M(ceph_rbd.backup.rbd_snapshot) returned for the image in the same run
        (filter P(ceph_rbd.backup.transfer_item#filter) maps it): C(source_snapshots) (list of C(id), C(name),
        C(size)), C(previous), C(unchanged) and, on an image's first night, C(object_size). The source is then
        not queried for its snapshots (nor, for a new destination image, for its size), and an
        image with no write since the base gets its destination snapshot without a data stream. In pull mode
        that saves two ssh round trips and two rbd processes per image (measured: 200 unchanged images
        32 s -> 2 s)."
    type: list
    elements: raw
    required: true
  snapshot:
    description:
      - The source snapshot to bring the destination up to. Default is each image's newest snapshot with O(prefix).
    type: str
  prefix:
    description: The prefix that marks the snapshots this collection owns; only they can be a base.
    type: str
    default: backup-
  allow_rollback:
    description:
      - Roll a destination image that was modified since the base back to the base (discarding those
        writes) instead of refusing it.
    type: bool
    default: false
  restore:
    description:
      - Restore mode (used by the C(ceph_rbd.backup.restore) playbook, with the backup cluster as the source) -
        make the destination image's head exactly O(snapshot).
      - A new image gets the whole snapshot. An existing image (only with O(overwrite=true)) is rolled back to
        the snapshot when it still has it; else rolled back to the nearest common snapshot older than it and
        sent only the diff from there; else rebuilt with the old image renamed aside.
    type: bool
    default: false
  overwrite:
    description: With O(restore=true), allow changing an existing destination image.
    type: bool
    default: false
  compression:
    description: Compress the stream with the C(zstd) CLI, which must exist on both hosts.
    type: str
    choices: [none, zstd]
    default: none
  compression_level:
    description:
      - The zstd level. The default is zstd's own; compression is for links slower than the CPU, where
        fewer bytes win (measured on partly compressible data - level 1 sends 0.55 of it, level 3 0.51, and
        zstd -T0 at level 3 still compresses faster than a 1 Gbit/s link carries).
      - From 1 to 19 (zstd's levels without C(--ultra)), also when O(compression=none).
    type: int
    default: 3
  max_streams:
    description:
      - How many data streams run at once; O(parallel) images are worked on at once, but only this many
        send data (each stream costs an ssh connection, two rbd processes, CPU and bandwidth).
      - Streams of images of at most 64 MiB do not count here - they run as sessions of the multiplexed ssh
        connection the queries use (up to 8 at once), which saves the connection's start-up, most of the cost
        of a small image's first sync.
      - From 1 to 64.
    type: int
    default: 4
  digest:
    description:
      - Also compute, as the stream passes, the digest of what it carries for that method of
        M(ceph_rbd.backup.rbd_extent_verify) (SHA-256, one pass, nothing buffered). V(data) hashes the bytes
        and returns the extents written too (RV(images[].extents)); V(extents) hashes the stream's record
        list, which is the source's C(rbd diff) list.
      - M(ceph_rbd.backup.rbd_extent_verify) on the destination can then check its snapshot against what the
        source sent, so the source need not be read a second time (the role's
        C(rbd_replicate_verify_source=stream)). It proves the destination holds what C(export-diff) read; a
        separate read of the source (C(rbd_replicate_verify_source=read)) also re-reads the source.
    type: str
    choices: [none, data, extents]
    default: none
  hold_key:
    description:
      - This destination's key in the source images' hold image-meta (C(ceph_rbd_backup.hold.<hold_key>), which
        M(ceph_rbd.backup.rbd_snapshot_prune) records as O(ceph_rbd.backup.rbd_snapshot_prune#module:record_hold)).
      - With it, a destination whose newest snapshot (the one the hold names) was deleted by hand is recognised.
        Its data is still on the head, so the head differs from the remaining base; when it differs only where
        the diff to be sent rewrites anyway, the diff is sent as is (RV(images[].head_rewritten)). Without it,
        or when the hold cannot be read, such an image is refused like any destination written to.
    type: str
  live_import_wait:
    description:
      - An image that carries another run's import mark is touched only once nothing has written to it for a
        few seconds (no watcher in C(rbd status); a killed C(import-diff)'s watch ends within ~30 s). This is
        how long to wait for that before the image fails with a message naming that run.
      - Seconds, from 0 to 3600.
    type: int
    default: 60
  run_lock:
    description:
      - This run's lock on the source pool (see M(ceph_rbd.backup.rbd_replication_lock)), renewed every
        O(run_lock.ttl)/3 seconds while the transfer works and once more at its end, so that a run longer
        than the lock's ttl keeps it. It is renewed on the source cluster (over ssh in pull mode, with the
        O(remote.ceph) user, which must be able to write the lock object; a renewal that fails is a warning).
      - Its O(run_lock.run) goes into the import marks. Another run finding such a mark touches the image only
        once nothing writes to it any more (no watcher in C(rbd status)), whatever the lock says.
    type: dict
    suboptions:
      pool:
        description: The source pool whose lock the run holds.
        type: str
        required: true
      run:
        description: The run id (the lock's O(ceph_rbd.backup.rbd_replication_lock#module:cookie)).
        type: str
        required: true
      ttl:
        description: The lock's expiry after each renewal, in seconds, from 1 to 604800 (a week).
        type: int
        default: 21600
      renew:
        description: Renew the lock; V(false) only writes the run id into the marks.
        type: bool
        default: true
      member:
        description:
          - The host this transfer works for, as it took the lock (M(ceph_rbd.backup.rbd_replication_lock)'s
            O(ceph_rbd.backup.rbd_replication_lock#module:member)); the renewals are that member's entries, so
            they go when it releases the lock.
        type: str
  bwlimit:
    description:
      - Limit each stream to this many bytes per second (for example V(50M)); unlimited by default.
      - At least 1 byte per second; V(0) is refused (leave it unset for no limit).
    type: str
'''

EXAMPLES = r'''
- name: Pull the changes of two images from the source host (runs on the backup host)
  ceph_rbd.backup.rbd_diff_transfer:
    mode: pull
    remote:
      host: ceph-src-1.example.com
      user: backup
      cipher: aes128-gcm@openssh.com
      ceph: {user: backup-ro}
    ceph: {user: backup}
    source_pool: rbd
    dest_pool: rbd-backup
    images: [vm-101-disk-0, vm-102-disk-0]

- name: Both clusters reachable from the backup host - a local pipe, no ssh, the source read with a read-only user
  ceph_rbd.backup.rbd_diff_transfer:
    mode: direct
    source_ceph: {conf: /etc/ceph/source.conf, user: backup-ro, keyring: /etc/ceph/source.client.backup-ro.keyring}
    ceph: {user: backup}
    source_pool: rbd
    images: [vm-101-disk-0]
    run_lock: {pool: rbd, run: nightly-1, renew: false}

- name: What would be sent tonight (check mode)
  ceph_rbd.backup.rbd_diff_transfer:
    remote: {host: ceph-src-1.example.com}
    source_pool: rbd
    images: [vm-101-disk-0]
  check_mode: true
'''

RETURN = r'''
images:
  description: What was decided and sent for each image (in check mode, what would be).
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The source image (as named in O(images)).
      type: str
    dest_image:
      description: The destination image.
      type: str
    action:
      description: V(initial), V(incremental), V(up_to_date) or V(rebuild); V(rollback) for a restore onto an
        image that holds the snapshot. Check mode reports the action the real run takes.
      type: str
    steps:
      description:
        - The plan's steps in order, as carried out (in check mode, as they would be), e.g.
          C(rollback vm-1 backup-20261201T000000Z), C(import into vm-1 from backup-20261130T000000Z),
          C(snap vm-1) (nothing was written on the source - the snapshot is made without a stream).
      type: list
      elements: str
    keep:
      description: The snapshots a prune must keep for this image on both sides (the new common base).
      type: list
      elements: str
    base:
      description: The common snapshot the diff starts from (none for initial and rebuild).
      type: str
    snapshot:
      description: The snapshot the destination now has (or would have).
      type: str
    bytes:
      description: Bytes of the diff stream sent (in check mode, the data bytes that would be sent).
      type: int
    data_bytes:
      description: Bytes of changed data the stream carried.
      type: int
    seconds:
      description: Wall time for this image.
      type: float
    rate:
      description: Stream bytes per second.
      type: float
    rolled_back:
      description: The destination had been modified since the base and was rolled back (O(allow_rollback)).
      type: bool
    recovered:
      description: Leftovers of an interrupted import by this module were rolled back.
      type: bool
    replaced_image:
      description: Where the old destination image was renamed to when it was rebuilt.
      type: str
    method:
      description: With O(digest), the verify method of RV(images[].digest).
      type: str
      returned: with O(digest) not V(none), for images a stream was sent for
    digest:
      description:
        - With O(digest), the digest of what the stream carried, for that method of
          M(ceph_rbd.backup.rbd_extent_verify). Pass the whole result as that module's
          O(ceph_rbd.backup.rbd_extent_verify#module:expected) on the destination (with V(data) it reads
          RV(images[].extents) back from its snapshot).
      type: str
      returned: with O(digest) not V(none), for images a stream was sent for
    extents:
      description: With O(digest=data), the extents (offset, length) the stream wrote, merged where adjacent.
      type: list
      elements: list
      returned: with O(digest=data), for images a stream was sent for
    head_rewritten:
      description:
        - V(true) when the destination's newest snapshot had been deleted by hand (see O(hold_key)) and its head,
          which still held that snapshot's data, was sent the diff from the remaining base without a rollback.
      type: bool
    unchanged:
      description:
        - V(true) when nothing was written to the source image since the base (and the destination head
          is that base, of the same size); the destination snapshot was created without a data stream.
      type: bool
      returned: when that is the case
failed_images:
  description: The source images that could not be brought up to date.
  returned: always
  type: list
  elements: str
bytes:
  description: Total stream bytes over all images.
  returned: always
  type: int
run_lock:
  description: With O(run_lock), how often it was renewed (C(renewals)) and the last renewal errors (C(problems)).
  returned: with O(run_lock), not in check mode
  type: dict
'''

import contextlib
import shutil
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    argument_spec, check_ranges, finish, image_items, run_images,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import CEPH_SPEC, client_options
from ansible_collections.ceph_rbd.backup.plugins.module_utils._remote import REMOTE_ARGUMENT_SPEC, Remote, dest_of
from ansible_collections.ceph_rbd.backup.plugins.module_utils._runlock import Keeper, RunLock
from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import validate_snapshot_name
from ansible_collections.ceph_rbd.backup.plugins.module_utils._transfer import (
    Side, TransferOptions, hints_problem, transfer_image,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._validate import rate


SPEC = dict(
    images=dict(type='list', elements='raw', required=True),
    snapshot=dict(type='str'),
    prefix=dict(type='str', default='backup-'),
    allow_rollback=dict(type='bool', default=False),
    restore=dict(type='bool', default=False),
    overwrite=dict(type='bool', default=False),
    compression=dict(type='str', choices=['none', 'zstd'], default='none'),
    compression_level=dict(type='int', default=3),
    bwlimit=dict(type='str'),
    max_streams=dict(type='int', default=4),
    digest=dict(type='str', choices=['none', 'data', 'extents'], default='none'),
    live_import_wait=dict(type='int', default=60),
    hold_key=dict(type='str', no_log=False),
    run_lock=dict(type='dict', options=dict(pool=dict(type='str', required=True), run=dict(type='str', required=True),
                                            ttl=dict(type='int', default=21600), renew=dict(type='bool', default=True),
                                            member=dict(type='str'))),
    **dict(REMOTE_ARGUMENT_SPEC,
           mode=dict(type='str', choices=['pull', 'push', 'direct'], default='pull'),
           remote=dict(REMOTE_ARGUMENT_SPEC['remote'], required=False),
           source_ceph=dict(type='dict', options=CEPH_SPEC))
)
REQUIRED_IF = [('mode', 'pull', ['remote']), ('mode', 'push', ['remote']), ('mode', 'direct', ['source_ceph'])]


def direct_problem(p):
    """Pure: why the options of direct mode cannot work (or None) - the source and the destination would be
    the same images (the same cluster options, pool and namespace)."""
    if p['mode'] != 'direct':
        return None
    if client_options(p['source_ceph']) == client_options(p['ceph']) and \
            (p['source_pool'], p['source_namespace'] or None) == tuple(x or None for x in dest_of(p)):
        return ('mode=direct: source_ceph names the same cluster as ceph and the destination pool is the source '
                'pool - the images would be imported into themselves (set source_ceph to the source cluster)')
    return None


def _check_inputs(module, p, items):
    """Everything that can be wrong before anything is asked of a cluster; returns the bwlimit in bytes/s."""
    for item in items:
        snap = item.get('snapshot') or p['snapshot']
        problem = hints_problem(item) or (snap and validate_snapshot_name(snap))
        if problem:
            module.fail_json(msg='image %s: %s' % (item['image'], problem))
    if not p['prefix']:
        module.fail_json(msg='prefix must not be empty')
    if p['compression'] == 'zstd' and not shutil.which('zstd'):
        module.fail_json(msg='compression=zstd needs the zstd CLI on this host (apt-get install zstd)')
    if not shutil.which('rbd'):
        module.fail_json(msg='the rbd CLI is not installed on this host (apt-get install ceph-common)')
    return rate(p['bwlimit']) if p['bwlimit'] else None      # its range is checked first thing in main()


def _sides(p, remote, local_rbd):
    """(source, destination): in pull mode this host is the destination, in push mode the source; in direct
    mode both are here, the source through its own client (``source_ceph``)."""
    dest_pool, dest_ns = dest_of(p)
    if p['mode'] == 'direct':
        return (Side(librbd_client(dict(p, ceph=p['source_ceph'])), p['source_pool'], p['source_namespace']),
                Side(local_rbd, dest_pool, dest_ns))
    if p['mode'] == 'pull':
        return (Side(remote.rbd, p['source_pool'], p['source_namespace'], remote_ssh=remote.stream_ssh,
                     shared_ssh=remote.shared),
                Side(local_rbd, dest_pool, dest_ns))
    return (Side(local_rbd, p['source_pool'], p['source_namespace']),
            Side(remote.rbd, dest_pool, dest_ns, remote_ssh=remote.stream_ssh, shared_ssh=remote.shared))


def _options(module, p, bwlimit):
    def progress(image, nbytes, seconds):
        module.log('rbd_diff_transfer %s: %d bytes in %.0f s (%.1f MB/s)'
                   % (image, nbytes, seconds, nbytes / 1e6 / max(seconds, 1e-6)))

    return TransferOptions(prefix=p['prefix'], allow_rollback=p['allow_rollback'], compression=p['compression'],
                           compression_level=p['compression_level'], bwlimit=bwlimit, idle_timeout=p['timeout'],
                           check_mode=module.check_mode, progress=progress, restore=p['restore'],
                           overwrite=p['overwrite'], max_streams=p['max_streams'], digest=p['digest'],
                           run=(p['run_lock'] or {}).get('run'), mark_wait=p['live_import_wait'],
                           hold_key=p['hold_key'])


def _run_keeping_the_lock(module, p, src, items, work):
    """Run the transfers; with run_lock, renew the run's lock on the source while they work."""
    lock = p['run_lock']
    if not lock or not lock['renew'] or module.check_mode:
        return run_images(module, items, work), {}
    keeper = Keeper(RunLock(src.rbd, lock['pool']), lock['run'], lock['ttl'],
                    'ceph_rbd.backup run %s, transfer on %s' % (lock['run'], socket.gethostname()), lock['member'] or '')
    with keeper:
        outcomes = run_images(module, items, work)
    if keeper.problems:
        module.warn('the run lock on pool %s could not be renewed %d time(s): %s. Another run may take it once it '
                    'expires; images being imported stay protected by their marks'
                    % (lock['pool'], len(keeper.problems), keeper.problems[-1]))
    return outcomes, dict(run_lock=keeper.report())


@contextlib.contextmanager
def _remote(p):
    """The other host over ssh (pull, push); none in direct mode."""
    if p['mode'] == 'direct':
        yield None
    else:
        with Remote(p) as remote:
            yield remote


def main():
    module = AnsibleModule(argument_spec=argument_spec(**SPEC), supports_check_mode=True, required_if=REQUIRED_IF)
    check_ranges(module)
    p = module.params
    items = image_items(module, fields=('dest_image', 'snapshot', 'source_snapshots', 'previous', 'unchanged',
                                        'object_size'))
    problem = direct_problem(p)
    if problem:
        module.fail_json(msg=problem)
    if p['mode'] == 'direct' and p['compression'] != 'none':
        module.warn('compression=%s is not applied in direct mode (the stream is a local pipe)' % p['compression'])
        p['compression'] = 'none'
    bwlimit = _check_inputs(module, p, items)
    with _remote(p) as remote:
        src, dst = _sides(p, remote, librbd_client(p))
        if not dst.rbd.pool_exists(dst.pool, dst.namespace):
            module.fail_json(msg='the destination pool %s does not exist (create it on the destination cluster, '
                             'e.g. ceph osd pool create %s && rbd pool init %s)' % (
                                 dst.pool + ('/' + dst.namespace if dst.namespace else ''), dst.pool, dst.pool))
        opts = _options(module, p, bwlimit)

        def work(item):
            return transfer_image(src, dst, item['image'], item.get('dest_image'),
                                  item.get('snapshot') or p['snapshot'], opts, hints=item)

        outcomes, extra = _run_keeping_the_lock(module, p, src, items, work)
    results = [r for _i, r, e in outcomes if e is None]
    before = dict((r['dest_image'], r['base'] if r.get('action') != 'initial' else None) for r in results)
    after = dict((r['dest_image'], r['snapshot']) for r in results)
    finish(module, outcomes, 'rbd_diff_transfer', diff=dict(before=before, after=after),
           bytes=sum(r.get('bytes') or 0 for r in results), **extra)


if __name__ == '__main__':
    main()
