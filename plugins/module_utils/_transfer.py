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
  destination (which snapshot, which run, from which host, when) and clear it
  after: a destination changed since the base *with* that mark is an
  interrupted import of ours (rolled back to the base automatically); *without*
  it, somebody wrote to the backup (refused unless ``allow_rollback``);
- a mark left by another run is touched only once that run's import is dead:
  ``import-diff`` keeps a watch on the image while it writes, which ends with
  the process (a killed one's within ~30 s), so an image that still has
  watchers is left alone and reported, whatever the run lock says;
- a destination that shares no snapshot with the source is never overwritten in
  place (stale blocks would survive): it is rebuilt under a temporary name and
  the old image is renamed aside, not deleted.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import socket
import threading
import time

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _plan as plan_mod
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots as snaps_mod
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    META_HOLD_PREFIX, META_IMPORTING, RbdError, image_args, image_label,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._stream import (
    DiffStreamStats, StreamError, relay, remote_pipeline,
)


class Side:
    """One end of a replication: an Rbd client, a pool and a namespace, local or remote."""

    def __init__(self, rbd, pool, namespace=None, remote_ssh=None, shared_ssh=None):
        self.rbd = rbd
        self.pool = pool
        self.namespace = namespace or None
        self.remote_ssh = remote_ssh   # ssh argv prefix when this side is reached through ssh
        self.shared_ssh = shared_ssh   # (argv, semaphore): a session of the multiplexed connection, for small streams

    def label(self, image, snap=None):
        return image_label(self.pool, image, self.namespace, snap)

    def args(self, image, snap=None):
        return image_args(self.pool, image, self.namespace, snap)


class TransferOptions:
    def __init__(self, prefix='backup-', allow_rollback=False, compression='none', compression_level=3,
                 bwlimit=None, idle_timeout=300, check_mode=False, progress=None, restore=False, overwrite=False,
                 max_streams=4, digest=None, run=None, mark_wait=60.0, mark_quiet=4.0, hold_key=None):
        self.prefix = prefix
        self.run = run                  # this run's id, written into the import marks
        self.hold_key = hold_key        # this destination's key in the source's hold image-meta (see prune)
        self.mark_wait = mark_wait      # how long another run's import may still be seen writing
        self.mark_quiet = mark_quiet    # ... and how long without a watcher makes it dead
        self.digest = digest            # None, 'data' or 'extents': digest each stream (see DiffStreamStats)
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


# Streams of images up to this size run as a session of the multiplexed ssh connection the queries use: a
# connection of their own (key exchange, a cipher chosen for throughput) cost ~0.3 s of CPU, a session ~0.15 s,
# and for a first sync of 1 MiB images that start-up is most of the work.
SHARED_STREAM_MAX = 64 << 20


def stream_route(size, shared_ssh):
    """Pure: 'shared' (a session of the multiplexed connection) for an image of at most SHARED_STREAM_MAX
    bytes when the side has one, else 'own' (an ssh connection of its own). ``size`` None: unknown."""
    if shared_ssh is not None and size is not None and size <= SHARED_STREAM_MAX:
        return 'shared'
    return 'own'


def _stage_lists(src, dst, export_argv, import_argv, opts, route='own'):
    """The (upstream, downstream) process lists for the relay, for push, pull or direct (no ssh, and no
    compression: nothing crosses a network); ``route`` 'shared': ssh through the multiplexed connection."""
    zstd_c = ['zstd', '-q', '-c', '-%d' % opts.compression_level, '-T0']
    zstd_d = ['zstd', '-q', '-d', '-c']
    zstd = opts.compression == 'zstd'
    if not src.remote_ssh and not dst.remote_ssh:   # direct: both ends here, each against its own cluster
        return [('rbd export-diff', export_argv)], [('rbd import-diff', import_argv)]
    if src.remote_ssh:           # pull: we run on the destination
        remote = [export_argv] + ([zstd_c] if zstd else [])
        ssh = src.shared_ssh[0] if route == 'shared' else src.remote_ssh
        upstream = [('ssh export-diff on the source', ssh + [remote_pipeline(remote)])]
        if zstd:
            upstream.append(('zstd -d', zstd_d))
        downstream = [('rbd import-diff', import_argv)]
    else:                        # push: we run on the source
        upstream = [('rbd export-diff', export_argv)]
        remote = ([zstd_d] if zstd else []) + [import_argv]
        ssh = dst.shared_ssh[0] if route == 'shared' else dst.remote_ssh
        downstream = ([('zstd', zstd_c)] if zstd else []) + \
            [('ssh import-diff on the destination', ssh + [remote_pipeline(remote)])]
    return upstream, downstream


def stream_diff(src, image, snapshot, base, dst, dest_image, opts, size=None):
    """export-diff (from ``base`` or whole) | import-diff; returns DiffStreamStats.

    A stream of an image of ``size`` <= SHARED_STREAM_MAX bytes runs as a session of the multiplexed ssh
    connection (counted with the queries' sessions), others each over a connection of their own, at most
    ``max_streams`` of those at once."""
    export_args = ['export-diff', '--no-progress'] + src.args(image, snapshot)
    if base:
        export_args += ['--from-snap', base]
    export_argv = src.rbd.argv(*(export_args + ['-']))
    import_argv = dst.rbd.argv(*(['import-diff', '--no-progress'] + dst.args(dest_image) + ['-']))
    remote = src if src.remote_ssh else dst
    route = stream_route(size, remote.shared_ssh)
    upstream, downstream = _stage_lists(src, dst, export_argv, import_argv, opts, route)
    with (remote.shared_ssh[1] if route == 'shared' else opts.streams):
        return relay(upstream, downstream, opts.idle_timeout, stats=DiffStreamStats(digest=opts.digest),
                     bwlimit=opts.bwlimit,
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


def mark_value(snapshot, run, host, now):
    """Pure: the import mark's image-meta value: which snapshot, which run, from which host, when."""
    return json.dumps(dict(snapshot=snapshot, run=run, host=host, time=int(now)), sort_keys=True)


def parse_mark(value):
    """Pure: an import mark as dict(snapshot, run, host, time), or None; a mark of an older release (the
    snapshot name alone) has no run."""
    if value is None:
        return None
    try:
        mark = json.loads(value)
    except ValueError:
        mark = None
    if isinstance(mark, dict) and 'snapshot' in mark:
        return dict(snapshot=mark.get('snapshot'), run=mark.get('run'), host=mark.get('host'), time=mark.get('time'))
    return dict(snapshot=value, run=None, host=None, time=None)


def claim_mark(dst, dest_image, mark, opts, clock=time.monotonic, sleep=time.sleep):
    """Return once the import that left ``mark`` is dead; raise RbdError while it is still writing.

    Another run's mark (or one of unknown run) is dead when the image has had no watcher for
    ``opts.mark_quiet`` seconds; a live ``import-diff`` keeps its watch, a killed one's times out in ~30 s.
    This holds whatever the run lock says: a run whose lock lapsed while it worked is still alive here.
    """
    if mark is None or opts.check_mode or (opts.run is not None and mark['run'] == opts.run):
        return
    deadline = clock() + opts.mark_wait
    quiet_since = None
    while True:
        watchers = dst.rbd.watchers(dst.pool, dest_image, dst.namespace)
        now = clock()
        quiet_since = None if watchers else (now if quiet_since is None else quiet_since)
        if quiet_since is not None and now - quiet_since >= opts.mark_quiet:
            return
        if now >= deadline:
            raise RbdError(
                'an import into this image by run %s (host %s, snapshot %s) is still writing: rbd status '
                'shows %d watcher(s) after %d s; not touching it. Once that import has ended, the next run '
                'carries the image on' % (mark['run'] or 'unknown', mark['host'] or 'unknown',
                                          mark['snapshot'], len(watchers), opts.mark_wait),
                image=dst.label(dest_image))
        sleep(1.0)


def _import_into(src, image, target, base, dst, dest_image, opts, size=None):
    """Mark, stream, unmark, and confirm the end snapshot now exists."""
    dst.rbd.meta_set(dst.pool, dest_image, META_IMPORTING,
                     mark_value(target, opts.run, socket.gethostname(), time.time()), dst.namespace)
    stats = stream_diff(src, image, target, base, dst, dest_image, opts, size=size)
    after = dst.rbd.snapshots(dst.pool, dest_image, dst.namespace)
    if target not in [s['name'] for s in after]:
        raise RbdError('import-diff finished but snapshot %s is not on the destination' % target,
                       image=dst.label(dest_image))
    dst.rbd.meta_remove(dst.pool, dest_image, META_IMPORTING, dst.namespace)
    return stats


def create_args(f):
    """Pure: (size, object_size) of a new destination image for ``f`` from what the snapshot step said - the
    target snapshot's size and the source's object size - or None when that is not known here."""
    size = _size_of(f.src_snaps, f.target)
    if size is None or not f.object_size:
        return None
    return max(int(size), 1), int(f.object_size)


def _create_like(src, f, dst, dest_image):
    """Create the destination image (import-diff resizes it to the snapshot's size), with the source's object
    size; asks the source only when the hints do not say (in pull mode an ssh round trip and an rbd process)."""
    args = create_args(f)
    if args is None:
        info = src.rbd.info(src.pool, f.image, src.namespace) or {}
        args = max(int(info.get('size') or 0), 1), info.get('object_size')
    dst.rbd.create(dst.pool, dest_image, args[0], dst.namespace, object_size=args[1])


def source_hints(rbd, pool, image, namespace, prefix, snapshot):
    """What a transfer needs to know about a source image, read where that is cheap: on the source host.

    rbd_snapshot returns these next to the snapshot it made, and the role hands them to
    rbd_diff_transfer: in pull mode the source is the *other* host, where every query is an ssh
    round trip and an rbd process (~0.15 s of CPU), against ~10 ms in-process here.

    ``snapshots``: every snapshot (id, name, size); ``previous``: the prefixed snapshot just before
    ``snapshot``; ``unchanged``: True when nothing was written between the two and the size is the
    same, None when unknown (no previous snapshot, or ``snapshot`` does not exist yet); ``object_size``
    only on an image's first night (no previous snapshot): what the destination image is created with.
    """
    snaps = rbd.snapshots(pool, image, namespace)
    own = [s['name'] for s in snaps_mod.with_prefix(snaps, prefix)]
    previous = unchanged = None
    if snapshot in own:
        i = own.index(snapshot)
        if i > 0:
            previous = own[i - 1]
            unchanged = unchanged_between(rbd, pool, image, namespace, snaps, previous, snapshot)
    elif own:
        previous = own[-1]
    hints = dict(snapshots=[dict(id=s['id'], name=s['name'], size=s.get('size')) for s in snaps],
                 previous=previous, unchanged=unchanged)
    if previous is None:
        hints['object_size'] = (rbd.info(pool, image, namespace) or {}).get('object_size')
    return hints


def hints_problem(item):
    """Pure: why an image item's hints are unusable (a message), or None."""
    snaps = item.get('source_snapshots')
    if snaps is not None:
        if not isinstance(snaps, list) or not all(
                isinstance(s, dict) and isinstance(s.get('name'), str) and isinstance(s.get('id'), int)
                and not isinstance(s.get('id'), bool) for s in snaps):
            return 'source_snapshots must be a list of dicts with an integer id and a name (as ' \
                   'ceph_rbd.backup.rbd_snapshot returns them), got %r' % (snaps,)
    if item.get('unchanged') is not None and not isinstance(item['unchanged'], bool):
        return 'unchanged must be true, false or null, got %r' % (item['unchanged'],)
    if item.get('previous') is not None and not isinstance(item['previous'], str):
        return 'previous must be a snapshot name, got %r' % (item['previous'],)
    size = item.get('object_size')
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 4096):
        return 'object_size must be the source image\'s object size in bytes, got %r' % (size,)
    return None


def gather(src, dst, image, dest_image, target, opts, hints):
    """Ask both sides what :func:`_plan.plan` needs for this image, and no more (:class:`_plan.Facts`).

    ``hints`` (:func:`source_hints` from the snapshot step) save the queries to the source.  Another run's
    import mark is claimed here (:func:`claim_mark`): a live import is never planned over.
    """
    src_snaps = hints.get('source_snapshots')
    if src_snaps is None:
        src_snaps = src.rbd.snapshots_or_none(src.pool, image, src.namespace)
    if src_snaps is None:
        raise RbdError('the source image does not exist', image=src.label(image))
    if target is None:
        target = snaps_mod.newest(src_snaps, opts.prefix)
    f = plan_mod.Facts(image, dest_image, target, src_snaps, object_size=hints.get('object_size'))
    f.dst_snaps = dst.rbd.snapshots_or_none(dst.pool, dest_image, dst.namespace)
    if f.dst_snaps is None or target is None:
        return f
    f.mark = parse_mark(dst.rbd.meta_get(dst.pool, dest_image, META_IMPORTING, dst.namespace))
    claim_mark(dst, dest_image, f.mark, opts)
    action, base = plan_mod.snapshot_action(f, opts.prefix)
    if action == snaps_mod.ACTION_INCREMENTAL and not opts.restore:
        # The head must still be the newest state we wrote: our newest snapshot there (usually the base;
        # newer when the source lost its newer snapshots). The diff from the base then covers every change.
        f.dirty_since = snaps_mod.newest(f.dst_snaps, opts.prefix)
        dirty = dst.rbd.diff(dst.pool, dest_image, dst.namespace, from_snap=f.dirty_since)
        f.dirty = bool(dirty)
        if f.dirty and f.mark is None and f.target_exists and opts.hold_key:
            # was our newest snapshot deleted on this destination? (its data is still on the head)
            f.newest_deleted = _newest_deleted(src, image, f, opts)
            if f.newest_deleted:
                f.dirty_covered = plan_mod.covers(src.rbd.diff(src.pool, image, src.namespace, snap=target,
                                                               from_snap=base), dirty)
        if f.target_exists:
            f.source_unchanged = _source_unchanged(src, image, src_snaps, base, target, hints)
        if f.source_unchanged:
            # the head's size once any rollback has run
            f.dest_size = _size_of(f.dst_snaps, f.dirty_since) if f.dirty else _dest_size(dst, dest_image)
    if action == snaps_mod.ACTION_REBUILD and not plan_mod.partial_initial(f, action):
        f.tmp = _leftover_rebuild(dst, dest_image, opts)
    return f


def _newest_deleted(src, image, f, opts):
    """Whether the snapshot the source's hold names for this destination (the newest one it was sent) is gone
    from the destination. Unknown (the hold cannot be read, e.g. through rbd-ssh-guard) counts as no."""
    try:
        held = src.rbd.meta_get(src.pool, image, META_HOLD_PREFIX + opts.hold_key, src.namespace)
    except RbdError:
        return False
    return bool(held) and held not in [s['name'] for s in f.dst_snaps]


def _leftover_rebuild(dst, dest_image, opts):
    """The state of ``<image>.rebuilding``: None, 'ours' (a dead rebuild of ours) or 'foreign'."""
    tmp = snaps_mod.rebuild_name(dest_image)
    if dst.rbd.info(dst.pool, tmp, dst.namespace) is None:
        return None
    mark = parse_mark(dst.rbd.meta_get(dst.pool, tmp, META_IMPORTING, dst.namespace))
    if mark is None:
        return 'foreign'
    claim_mark(dst, tmp, mark, opts)
    return 'ours'


def transfer_image(src, dst, image, dest_image=None, target=None, opts=None, hints=None):
    """Replicate one image: gather, plan, execute; returns a result dict (raises RbdError/StreamError).

    ``hints``: :func:`source_hints` of the source image (keys ``source_snapshots``, ``previous``,
    ``unchanged``), when the caller has them; they save the queries to the source.
    """
    opts = opts or TransferOptions()
    t0 = time.monotonic()
    facts = gather(src, dst, image, dest_image or image, target, opts, hints or {})
    decided = plan_mod.plan(facts, prefix=opts.prefix, restore=opts.restore, overwrite=opts.overwrite,
                            allow_rollback=opts.allow_rollback, check_mode=opts.check_mode)
    return execute(decided, facts, src, dst, opts, t0)


def execute(p, f, src, dst, opts, t0=None):
    """Run a plan's steps in order (in check mode: none; the bytes are estimated instead)."""
    t0 = time.monotonic() if t0 is None else t0
    if p.error:
        raise RbdError(p.error, image=src.label(f.image) if p.error_side == 'source' else dst.label(f.dest_image))
    result = dict(image=f.image, dest_image=f.dest_image, changed=p.action != snaps_mod.ACTION_UP_TO_DATE,
                  action=p.action, base=p.base, snapshot=f.target, bytes=0, data_bytes=0, seconds=0.0, rate=0.0,
                  rolled_back=p.rolled_back, recovered=p.recovered, replaced_image=p.replaced_image,
                  head_rewritten=p.head_rewritten,
                  estimated=False, steps=p.describe(), keep=p.keep)
    if p.unchanged:
        result['unchanged'] = True
    if opts.check_mode:
        if p.sends:
            result['data_bytes'] = result['bytes'] = _estimate(
                src, f.image, f.target if f.target_exists else None, p.base)
            result['estimated'] = True
        result['seconds'] = round(time.monotonic() - t0, 3)
        return result
    stats = None
    for step in p.steps:
        stats = _run_step(step, f, src, dst, opts) or stats
    if stats is None:
        result['seconds'] = round(time.monotonic() - t0, 3)
        return result
    return _finish(result, stats, t0)


def _run_step(step, f, src, dst, opts):
    """One step of a plan (see :mod:`_plan`); returns the stream's stats for an import."""
    op, img = step[0], step[1]
    if op == 'rollback':
        _while_lock_is_stale(lambda: dst.rbd.snap_rollback(dst.pool, img, step[2], dst.namespace), opts.idle_timeout)
    elif op == 'remove':
        for s in dst.rbd.snapshots(dst.pool, img, dst.namespace):
            dst.rbd.snap_remove(dst.pool, img, s['name'], dst.namespace)
        dst.rbd.remove(dst.pool, img, dst.namespace)
    elif op == 'create':
        _create_like(src, f, dst, img)
    elif op == 'import':
        size = _size_of(f.src_snaps, f.target)
        return _import_into(src, f.image, f.target, step[2], dst, img, opts, size=size)
    elif op == 'snap':
        dst.rbd.snap_create(dst.pool, img, f.target, dst.namespace)
    elif op == 'unmark':
        dst.rbd.meta_remove(dst.pool, img, META_IMPORTING, dst.namespace)
    elif op == 'rename':
        dst.rbd.rename(dst.pool, img, step[2], dst.namespace)
    else:
        raise ValueError('unknown plan step %r' % (step,))
    return None


def unchanged_between(rbd, pool, image, namespace, snaps, base, target):
    """True when nothing was written to the image between snapshots ``base`` and ``target`` and the size
    is the same (rbd's diff reports writes, not contents: an empty diff means no write at all)."""
    if _size_of(snaps, base) is None or _size_of(snaps, base) != _size_of(snaps, target):
        return False
    return not rbd.diff(pool, image, namespace, snap=target, from_snap=base)


def _size_of(snaps, name):
    for s in snaps:
        if s['name'] == name:
            return s.get('size')
    return None


def _dest_size(dst, dest_image):
    return (dst.rbd.info(dst.pool, dest_image, dst.namespace) or {}).get('size')


def source_unchanged_by_hints(src_snaps, base, hints):
    """Pure: what the hints say about "unchanged between base and target": True, False or None (unknown).

    The hints compare the target with the snapshot before it (``previous``).  No write after
    ``previous`` means none after a newer base either; a write after ``previous`` is also after an older
    base.  Sizes must match too.
    """
    ids = dict((s['name'], s['id']) for s in src_snaps)
    previous, unchanged = hints.get('previous'), hints.get('unchanged')
    if unchanged is None or previous not in ids or base not in ids:
        return None
    if unchanged and ids[base] >= ids[previous]:
        return True
    if not unchanged and ids[base] <= ids[previous]:
        return False
    return None


def _source_unchanged(src, image, src_snaps, base, target, hints):
    known = source_unchanged_by_hints(src_snaps, base, hints)
    if known is not None:
        return known
    return unchanged_between(src.rbd, src.pool, image, src.namespace, src_snaps, base, target)


def _finish(result, stats, t0):
    seconds = round(time.monotonic() - t0, 3)
    result.update(bytes=stats.stream_bytes, data_bytes=stats.data_bytes, zero_bytes=stats.zero_bytes,
                  seconds=seconds, stream_seconds=stats.seconds,
                  rate=round(stats.stream_bytes / stats.seconds, 1) if stats.seconds else 0.0)
    if stats.stream_digest():
        # what rbd_extent_verify on the destination compares with (its ``expected``): the digest of what
        # the source sent, and (method data) the extents to read back there
        result.update(method=stats.digest, digest=stats.stream_digest(), size=stats.size)
        if stats.digest == 'data':
            result['extents'] = [[o, n] for o, n in stats.extents]
    return result


__all__ = ['Side', 'TransferOptions', 'transfer_image', 'gather', 'execute', 'source_hints', 'source_unchanged_by_hints',
           'hints_problem', 'stream_diff', 'StreamError', 'mark_value', 'parse_mark', 'claim_mark']
