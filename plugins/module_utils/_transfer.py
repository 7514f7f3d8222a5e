# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring one destination image up to a source snapshot.

The decisions are in :mod:`_snapshots` (pure); this module asks both clusters
for what those decisions need and carries them out, in an order that never
loses data:

- the destination snapshot that ``import-diff`` creates after its last write is
  the commit marker: a broken stream leaves no new snapshot, so a retry starts
  from the same base;
- before importing we set image-meta ``ceph_rbd_backup.importing`` on the
  destination and clear it after: a destination changed since the base *with*
  that mark is our own interrupted import (rolled back to the base
  automatically); *without* it, somebody wrote to the backup (refused unless
  ``allow_rollback``);
- a destination that shares no snapshot with the source is never overwritten in
  place (stale blocks would survive): it is rebuilt under a temporary name and
  the old image is renamed aside, not deleted.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots as snaps_mod
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    META_IMPORTING, RbdError, image_args, image_label,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._stream import (
    StreamError, relay, remote_pipeline,
)


class Side:
    """One end of a replication: an Rbd client, a pool and a namespace, local or remote."""

    def __init__(self, rbd, pool, namespace=None, remote_ssh=None):
        self.rbd = rbd
        self.pool = pool
        self.namespace = namespace or None
        self.remote_ssh = remote_ssh   # ssh argv prefix when this side is reached through ssh

    def label(self, image, snap=None):
        return image_label(self.pool, image, self.namespace, snap)

    def args(self, image, snap=None):
        return image_args(self.pool, image, self.namespace, snap)


class TransferOptions:
    def __init__(self, prefix='backup-', allow_rollback=False, compression='none', compression_level=1,
                 bwlimit=None, idle_timeout=300, check_mode=False, progress=None, restore=False, overwrite=False,
                 max_streams=4):
        self.prefix = prefix
        self.streams = threading.BoundedSemaphore(max(1, max_streams))   # data streams at once
        self.restore = restore          # make the destination's head equal the snapshot, whatever it holds
        self.overwrite = overwrite      # with restore: an existing destination image may be changed
        self.allow_rollback = allow_rollback
        self.compression = compression
        self.compression_level = compression_level
        self.bwlimit = bwlimit
        self.idle_timeout = idle_timeout
        self.check_mode = check_mode
        self.progress = progress


def _stage_lists(src, dst, export_argv, import_argv, opts):
    """The (upstream, downstream) process lists for the relay, for push or pull."""
    zstd_c = ['zstd', '-q', '-c', '-%d' % opts.compression_level, '-T0']
    zstd_d = ['zstd', '-q', '-d', '-c']
    zstd = opts.compression == 'zstd'
    if src.remote_ssh:           # pull: we run on the destination
        remote = [export_argv] + ([zstd_c] if zstd else [])
        upstream = [('ssh export-diff on the source', src.remote_ssh + [remote_pipeline(remote)])]
        if zstd:
            upstream.append(('zstd -d', zstd_d))
        downstream = [('rbd import-diff', import_argv)]
    else:                        # push: we run on the source
        upstream = [('rbd export-diff', export_argv)]
        remote = ([zstd_d] if zstd else []) + [import_argv]
        downstream = ([('zstd', zstd_c)] if zstd else []) + \
            [('ssh import-diff on the destination', dst.remote_ssh + [remote_pipeline(remote)])]
    return upstream, downstream


def stream_diff(src, image, snapshot, base, dst, dest_image, opts):
    """export-diff (from ``base`` or whole) | import-diff; returns DiffStreamStats."""
    export_args = ['export-diff', '--no-progress'] + src.args(image, snapshot)
    if base:
        export_args += ['--from-snap', base]
    export_argv = src.rbd.argv(*(export_args + ['-']))
    import_argv = dst.rbd.argv(*(['import-diff', '--no-progress'] + dst.args(dest_image) + ['-']))
    upstream, downstream = _stage_lists(src, dst, export_argv, import_argv, opts)
    with opts.streams:
        return relay(upstream, downstream, opts.idle_timeout, bwlimit=opts.bwlimit,
                     progress=opts.progress and (lambda b, s: opts.progress(image, b, s)))


def _while_lock_is_stale(action, budget, pause=5.0):
    """Run ``action``, retrying while the image's exclusive lock is still held by a dead client.

    An import killed a moment ago still holds the image's exclusive lock until its watch expires
    (about 30 s); rollback then fails with EROFS (30) or EBUSY (16).
    """
    deadline = time.monotonic() + max(budget, pause)
    while True:
        try:
            return action()
        except RbdError as e:
            if e.rc not in (16, 30) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)


def _estimate(src, image, snapshot, base):
    """Bytes of data a diff from ``base`` to ``snapshot`` (None: the image head) would carry."""
    extents = src.rbd.diff(src.pool, image, src.namespace, snap=snapshot, from_snap=base)
    return sum(length for _off, length, exists in extents if exists)


def _import_into(src, image, target, base, dst, dest_image, opts):
    """Mark, stream, unmark, and confirm the end snapshot now exists."""
    dst.rbd.meta_set(dst.pool, dest_image, META_IMPORTING, target, dst.namespace)
    stats = stream_diff(src, image, target, base, dst, dest_image, opts)
    after = dst.rbd.snapshots(dst.pool, dest_image, dst.namespace)
    if target not in [s['name'] for s in after]:
        raise RbdError('import-diff finished but snapshot %s is not on the destination' % target,
                       image=dst.label(dest_image))
    dst.rbd.meta_remove(dst.pool, dest_image, META_IMPORTING, dst.namespace)
    return stats


def _create_like(src, image, target, dst, dest_image):
    info = src.rbd.info(src.pool, image, src.namespace) or {}
    dst.rbd.create(dst.pool, dest_image, max(int(info.get('size') or 0), 1), dst.namespace,
                   object_size=info.get('object_size'))


def transfer_image(src, dst, image, dest_image=None, target=None, opts=None):
    """Replicate one image; returns a result dict (raises RbdError/StreamError on failure)."""
    opts = opts or TransferOptions()
    dest_image = dest_image or image
    t0 = time.monotonic()
    result = dict(image=image, dest_image=dest_image, changed=False, base=None, snapshot=None,
                  bytes=0, data_bytes=0, seconds=0.0, rate=0.0, rolled_back=False, recovered=False,
                  replaced_image=None, estimated=False)
    src_snaps = src.rbd.snapshots_or_none(src.pool, image, src.namespace)
    if src_snaps is None:
        raise RbdError('the source image does not exist', image=src.label(image))
    names = [s['name'] for s in src_snaps]
    if target is None:
        target = snaps_mod.newest(src_snaps, opts.prefix)
        if target is None and not opts.check_mode:
            raise RbdError('no snapshot with prefix %r to send; create one with ceph_rbd.backup.rbd_snapshot'
                           % opts.prefix, image=src.label(image))
    elif target not in names and not opts.check_mode:
        raise RbdError('snapshot %s does not exist on the source' % target, image=src.label(image))
    target_exists = target in names
    result['snapshot'] = target

    dst_snaps = dst.rbd.snapshots_or_none(dst.pool, dest_image, dst.namespace)
    marker = None
    if dst_snaps is not None:
        marker = dst.rbd.meta_get(dst.pool, dest_image, META_IMPORTING, dst.namespace)
    plan = snaps_mod.plan_transfer(src_snaps if target_exists else src_snaps + [
        dict(id=float('inf'), name=target)], dst_snaps, opts.prefix, target)
    action, base = plan['action'], plan['base']
    if opts.restore and dst_snaps is not None:
        return _restore_existing(src, image, target, dst, dest_image, dst_snaps, action, base, result, opts, t0)
    # Our own interrupted *initial* import: an image with no snapshots that carries our mark.
    partial_initial = action == snaps_mod.ACTION_REBUILD and marker and not dst_snaps
    if partial_initial:
        action = snaps_mod.ACTION_INITIAL
    result['action'] = action
    result['base'] = base if action != snaps_mod.ACTION_UP_TO_DATE else target

    if action == snaps_mod.ACTION_UP_TO_DATE:
        if marker and not opts.check_mode:
            dst.rbd.meta_remove(dst.pool, dest_image, META_IMPORTING, dst.namespace)
        result['seconds'] = round(time.monotonic() - t0, 3)
        return result

    dirty = False
    if action == snaps_mod.ACTION_INCREMENTAL:
        # The head must still be the newest state we wrote: our newest snapshot there (usually the
        # base; newer when the source lost its newer snapshots). Applying the diff from the base on
        # top of it is then exact, because a diff from the base covers every extent written since.
        head_of = snaps_mod.newest(dst_snaps, opts.prefix)
        dirty = bool(dst.rbd.diff(dst.pool, dest_image, dst.namespace, from_snap=head_of))
        if dirty and not marker and not opts.allow_rollback:
            raise RbdError(
                'the destination image was modified since its snapshot %s (rbd diff --from-snap %s is '
                'not empty); refusing to overwrite it. Inspect it, then rerun with allow_rollback=true '
                '(role: rbd_replicate_allow_rollback: true) to roll it back to %s and continue'
                % (head_of, head_of, head_of), image=dst.label(dest_image))
    result['changed'] = True
    if opts.check_mode:
        result['data_bytes'] = result['bytes'] = _estimate(
            src, image, target if target_exists else None, base)
        result['estimated'] = True
        result['rolled_back'] = dirty and not marker
        result['recovered'] = dirty and bool(marker)
        result['seconds'] = round(time.monotonic() - t0, 3)
        return result

    if dirty:
        _while_lock_is_stale(lambda: dst.rbd.snap_rollback(dst.pool, dest_image, head_of, dst.namespace),
                             opts.idle_timeout)
        result['recovered' if marker else 'rolled_back'] = True

    if action == snaps_mod.ACTION_INITIAL:
        if partial_initial:
            dst.rbd.remove(dst.pool, dest_image, dst.namespace)
            result['recovered'] = True
        _create_like(src, image, target, dst, dest_image)
        stats = _import_into(src, image, target, None, dst, dest_image, opts)
    elif action == snaps_mod.ACTION_REBUILD:
        return _rebuild(src, image, target, dst, dest_image, result, opts, t0)
    else:
        if _unchanged_since(src, image, src_snaps, base, target):
            # Nothing was written since the base and the size is the same: the destination head (checked
            # above to be exactly its newest snapshot) already holds the target's bytes. Creating the
            # snapshot is all import-diff would do, without its ssh connection and two rbd processes.
            dst.rbd.snap_create(dst.pool, dest_image, target, dst.namespace)
            result.update(seconds=round(time.monotonic() - t0, 3), unchanged=True)
            return result
        stats = _import_into(src, image, target, base, dst, dest_image, opts)
    return _finish(result, stats, t0)


def _unchanged_since(src, image, src_snaps, base, target):
    """True when the source image did not change at all between ``base`` and ``target``."""
    sizes = dict((s['name'], s.get('size')) for s in src_snaps)
    if sizes.get(base) is None or sizes.get(base) != sizes.get(target):
        return False
    return not src.rbd.diff(src.pool, image, src.namespace, snap=target, from_snap=base)


def _restore_existing(src, image, target, dst, dest_image, dst_snaps, action, base, result, opts, t0):
    """Restore onto an existing image: its head becomes exactly ``target``.

    The target snapshot is already there: roll back to it (nothing travels).  Else roll back to the
    nearest common snapshot older than the target and send only the diff from it.  Else rebuild.
    """
    if not opts.overwrite:
        raise RbdError('the image to restore to already exists; refusing to overwrite it (set overwrite=true, '
                       'playbook: rbd_restore_overwrite=true, or restore to a new image name)',
                       image=dst.label(dest_image))
    result['changed'] = True
    if action == snaps_mod.ACTION_UP_TO_DATE:
        result.update(action='rollback', base=target)
        if not opts.check_mode:
            _while_lock_is_stale(lambda: dst.rbd.snap_rollback(dst.pool, dest_image, target, dst.namespace),
                                 opts.idle_timeout)
        result['seconds'] = round(time.monotonic() - t0, 3)
        return result
    if action == snaps_mod.ACTION_REBUILD:
        if opts.check_mode:
            result.update(action=action, estimated=True)
            return result
        return _rebuild(src, image, target, dst, dest_image, result, opts, t0)
    result.update(action='incremental', base=base)
    if opts.check_mode:
        result['data_bytes'] = result['bytes'] = _estimate(src, image, target, base)
        result['estimated'] = True
        return result
    _while_lock_is_stale(lambda: dst.rbd.snap_rollback(dst.pool, dest_image, base, dst.namespace),
                         opts.idle_timeout)
    stats = _import_into(src, image, target, base, dst, dest_image, opts)
    return _finish(result, stats, t0)


def _rebuild(src, image, target, dst, dest_image, result, opts, t0):
    """Import the whole snapshot under a temporary name, then swap it in; the old image is renamed aside."""
    tmp = snaps_mod.rebuild_name(dest_image)
    if dst.rbd.info(dst.pool, tmp, dst.namespace) is not None:
        if dst.rbd.meta_get(dst.pool, tmp, META_IMPORTING, dst.namespace) is None:
            raise RbdError('cannot rebuild: %s exists and is not ours' % dst.label(tmp), image=dst.label(dest_image))
        for s in dst.rbd.snapshots(dst.pool, tmp, dst.namespace):
            dst.rbd.snap_remove(dst.pool, tmp, s['name'], dst.namespace)
        dst.rbd.remove(dst.pool, tmp, dst.namespace)
    _create_like(src, image, target, dst, tmp)
    stats = _import_into(src, image, target, None, dst, tmp, opts)
    aside = snaps_mod.aside_name(dest_image)
    dst.rbd.rename(dst.pool, dest_image, aside, dst.namespace)
    dst.rbd.rename(dst.pool, tmp, dest_image, dst.namespace)
    result.update(action=snaps_mod.ACTION_REBUILD, replaced_image=aside, changed=True)
    return _finish(result, stats, t0)


def _finish(result, stats, t0):
    seconds = round(time.monotonic() - t0, 3)
    result.update(bytes=stats.stream_bytes, data_bytes=stats.data_bytes, zero_bytes=stats.zero_bytes,
                  seconds=seconds, stream_seconds=stats.seconds,
                  rate=round(stats.stream_bytes / stats.seconds, 1) if stats.seconds else 0.0)
    return result


__all__ = ['Side', 'TransferOptions', 'transfer_image', 'stream_diff', 'StreamError']
