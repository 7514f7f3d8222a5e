"""The prof case (after p2, on its pool): where one unchanged image's transfer spends its time.

The collection's own transfer code (``_transfer.transfer_image``, built the way rbd_diff_transfer builds
it) runs in-process, one image at a time, with every client call timed; then the same queries through
python3-rbd in one process, as a floor.
"""

import collections
import datetime
import sys
import time
from typing import Callable, Dict, List, Sequence

from .cluster import librbd
from .common import REPO, log, median
from .runner import Bench


class CallTimer:
    """Times the outermost calls made through instrumented objects (a call inside a call is not counted)."""

    def __init__(self):
        self.calls = []

    def instrument(self, obj: object, prefix: str) -> object:
        """Wrap every public method of ``obj`` (in place) so that its outermost calls are timed."""
        depth = [0]
        for name in dir(obj):
            if name.startswith('_') or name in ('argv', 'close', 'from_params'):
                continue
            fn = getattr(obj, name)
            if callable(fn):
                setattr(obj, name, self._timed(fn, '%s.%s' % (prefix, name), depth))
        return obj

    def _timed(self, fn, label, depth):
        def timed(*a, **kw):
            if depth[0]:
                return fn(*a, **kw)
            depth[0] += 1
            t0 = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                depth[0] -= 1
                self.calls.append((label, time.monotonic() - t0))
        return timed

    def timed_relay(self, real: Callable) -> Callable:
        """The transfer's relay function, timed as the data stream."""
        def relay(*a, **kw):
            t0 = time.monotonic()
            try:
                return real(*a, **kw)
            finally:
                self.calls.append(('stream (ssh export-diff | relay | import-diff)', time.monotonic() - t0))
        return relay

    def by_call(self) -> Dict[str, dict]:
        """The calls so far: per call, how many and how many seconds."""
        by = collections.OrderedDict()
        for name, sec in self.calls:
            by.setdefault(name, []).append(sec)
        return dict((k, dict(n=len(v), s=sum(v))) for k, v in by.items())


def _collection():
    """The collection's module_utils: (_transfer, Remote, the destination client factory)."""
    sys.path.insert(0, str(REPO / '.build' / 'collections'))
    from ansible_collections.ceph_rbd.backup.plugins.module_utils import _rbd, _transfer
    try:
        from ansible_collections.ceph_rbd.backup.plugins.module_utils._remote import Remote
    except ImportError:
        Remote = None
    try:
        from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as local_client
    except ImportError:
        local_client = _rbd.Rbd.from_params
    if Remote is None:
        raise RuntimeError('this version of the collection has no _remote.Remote; profile skipped')
    return _transfer, Remote, local_client


def _pull_params(b):
    """rbd_diff_transfer's parameters in pull mode: runs on the backup side, reads the source over ssh."""
    opts_ssh = ['-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % b.env['RBD_TESTBED_DIR'],
                '-o', 'StrictHostKeyChecking=yes']
    remote = dict(host=b.env.get('SRC_HOST', '127.0.0.2'), user='root', port=int(b.env.get('SSH_PORT', 2222)),
                  key=None, options=opts_ssh, cipher='aes128-gcm@openssh.com', ceph=b.bed.src.ceph_args())
    return dict(remote=remote, timeout=300, mode='pull', ceph=b.bed.dst.ceph_args())


def profile_transfer(b: Bench, pool: str, images: Sequence[str]) -> Dict[str, dict]:
    """Time the collection's own transfer code in-process, built the way rbd_diff_transfer builds it
    (pull mode: the local client for the destination, the ssh client for the source), one unchanged
    image at a time, with every client call it makes timed: where one image's transfer spends its
    time.  Then again with the data stream over the multiplexed ssh connection (an A/B of a change)."""
    _transfer, Remote, local_client = _collection()
    timer = CallTimer()
    params = _pull_params(b)
    real_relay = getattr(_transfer, 'relay', None)
    out = {}
    if real_relay is not None:
        _transfer.relay = timer.timed_relay(real_relay)
    try:
        with Remote(params) as remote:
            local = local_client(params)
            local = timer.instrument(local, 'destination %s' % type(local).__name__)
            remote_rbd = timer.instrument(remote.rbd, 'source over ssh')
            for variant, stream_ssh in (('as is (own ssh connection per stream)', remote.stream_ssh),
                                        ('over the multiplexed ssh connection', remote.query_ssh)):
                sides = (_transfer.Side(remote_rbd, pool, None, remote_ssh=stream_ssh),
                         _transfer.Side(local, pool, None))
                per_image = [_time_image(b, timer, _transfer, sides, pool, image, len(out) * 100 + n)
                             for n, image in enumerate(images)]
                out[variant] = _variant_summary(per_image)
                log('profile %s: %.2fs per unchanged image (parallel 1)' % (variant, out[variant]['wall_median']))
            if hasattr(local, 'close'):
                local.close()
    finally:
        if real_relay is not None:
            _transfer.relay = real_relay
    out['librbd floor'] = librbd_floor(b, pool, images)
    return out


def _time_image(b, timer, _transfer, sides, pool, image, seq):
    """One transfer of ``image`` (a new snapshot, nothing changed), every call timed."""
    snap = 'backup-%sZ' % (datetime.datetime.utcnow() + datetime.timedelta(
        days=3650, seconds=seq)).strftime('%Y%m%dT%H%M%S')
    b.bed.src.snap(pool, image, snap)
    del timer.calls[:]
    t0 = time.monotonic()
    res = _transfer.transfer_image(sides[0], sides[1], image, None, snap, _transfer.TransferOptions())
    wall = time.monotonic() - t0
    return dict(wall=wall, action=res.get('action'), calls=timer.by_call())


def _variant_summary(per_image: List[dict]) -> dict:
    keys = []
    for pi in per_image:
        keys += [k for k in pi['calls'] if k not in keys]
    return dict(
        images=len(per_image), wall_median=median([p['wall'] for p in per_image]),
        actions=sorted(set(p['action'] for p in per_image)),
        calls=[dict(call=k, n=median([p['calls'].get(k, {}).get('n', 0) for p in per_image]),
                    s=median([p['calls'].get(k, {}).get('s', 0) for p in per_image]))
               for k in keys])


def librbd_floor(b: Bench, pool: str, images: Sequence[str]) -> dict:
    """What the per-image queries cost through python3-rbd in one process and one cluster connection
    (no CLI): open, list snapshots, create a snapshot, diff from the previous one, remove it."""
    calls = collections.OrderedDict((k, []) for k in ('open', 'list_snaps', 'create_snap', 'diff_iterate',
                                                      'remove_snap', 'close'))
    walls = []
    with b.bed.src.cluster.open_ioctx(pool) as io:
        for n, image in enumerate(images):
            t = [time.monotonic()]
            img = librbd.Image(io, image)
            t.append(time.monotonic())
            prev = [x['name'] for x in sorted(img.list_snaps(), key=lambda x: x['id'])][-1]
            t.append(time.monotonic())
            name = 'bench-floor-%d' % n
            img.create_snap(name)
            t.append(time.monotonic())
            img.set_snap(name)
            img.diff_iterate(0, img.size(), prev, lambda *a: None)
            img.set_snap(None)
            t.append(time.monotonic())
            img.remove_snap(name)
            t.append(time.monotonic())
            img.close()
            t.append(time.monotonic())
            for k, a, c in zip(calls, t, t[1:]):
                calls[k].append(c - a)
            walls.append(t[-1] - t[0])
    log('profile librbd floor: %.3fs per image' % median(walls))
    return dict(images=len(walls), wall_median=median(walls),
                calls=[dict(call='librbd ' + k, n=1, s=median(v)) for k, v in calls.items()])
