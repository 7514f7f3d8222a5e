# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Digests that prove two snapshots hold the same bytes.

Methods:

- ``data`` (default): SHA-256 over the snapshot size and, for each extent of the
  *source's* changed-extent list (``rbd diff --from-snap A img@B``), its offset,
  length and the bytes read from snapshot B.  The destination reads the same
  extents (passed to it from the source) from its own snapshot B.  Both sides'
  own extent lists need not agree (``import-diff`` re-sparsifies zeros), the data
  must.
- ``extents``: SHA-256 of the extent list alone, as the old script did (md5 of
  ``rbd diff``).  A cheap hint: it cannot see a flipped data byte, and it differs
  on ordinary data where zeros were re-sparsified.
- ``full``: SHA-256 of the whole snapshot (``rbd export img@B -``) and its size.

Data is read with python3-rbd when it can be imported (Debian's package, for
``/usr/bin/python3``) - in a child process (:class:`WorkerReader`), so that a librbd crash or hang costs
one image a second read with ``rbd export`` (reported in its ``fallback``) instead of the run - else by
streaming ``rbd export`` and hashing the ranges.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import queue
import struct
import threading
import time
from typing import Iterator, Optional

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _worker
from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import (
    DEVNULL, PIPE, grow_pipe, kill_group, spawn,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    RbdError, image_args, image_label,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._worker import WorkerFailed

METHODS = ('data', 'extents', 'full')
READ_CHUNK = 4 << 20

try:
    from importlib.util import find_spec
    # only whether the child can import them: this process never loads librados
    HAS_LIBRBD = find_spec('rbd') is not None and find_spec('rados') is not None
except ImportError:
    HAS_LIBRBD = False


def normalize_extents(extents):
    """Pure: [(offset, length, exists)] from rbd-diff or a list/dict round-tripped through JSON."""
    out = []
    for e in extents or []:
        if isinstance(e, dict):
            out.append((int(e['offset']), int(e['length']), str(e.get('exists', True)).lower() == 'true'))
        else:
            exists = e[2] if len(e) > 2 else True
            out.append((int(e[0]), int(e[1]), exists is True or str(exists).lower() == 'true'))
    return sorted(out)


class ExtentsHasher:
    """Pure: the ``extents`` digest, fed extent by extent in offset order: SHA-256 of the compact JSON
    ``[[offset,length,exists],...]``.  One definition for a listed extent list (:func:`extents_digest`)
    and for the records of a stream as they pass (:class:`_stream.DiffStreamStats`)."""

    def __init__(self):
        self.h = hashlib.sha256(b'[')
        self.first = True

    def add(self, offset, length, exists):
        self.h.update(b'%s[%d,%d,%s]' % (b'' if self.first else b',', offset, length,
                                         b'true' if exists else b'false'))
        self.first = False

    def hexdigest(self):
        h = self.h.copy()
        h.update(b']')
        return h.hexdigest()


def extents_digest(extents):
    """Pure: the digest of an extent list (method ``extents``)."""
    h = ExtentsHasher()
    for o, l, x in normalize_extents(extents):
        h.add(o, l, x)
    return h.hexdigest()


class DataHasher:
    """Pure: the ``data`` digest, fed in offset order: ``begin(offset)`` where an extent starts, then its bytes.

    v2: each maximal run of contiguous bytes is hashed as its bytes followed by its (start, length), so
    adjacent extents hash the same as one merged extent.  The digest therefore does not depend on how an
    extent list is split: the records of an ``export-diff`` stream (see :class:`_stream.DiffStreamStats`)
    and ``rbd diff``'s extents give the same digest for the same bytes.
    """

    def __init__(self, size):
        self.h = hashlib.sha256(b'ceph_rbd.backup data v2 size=%d\n' % int(size))
        self.bytes = 0
        self._start = self._pos = None

    def _close_run(self, h):
        if self._start is not None and self._pos > self._start:
            h.update(struct.pack('<QQ', self._start, self._pos - self._start))

    def begin(self, offset, length=None):
        """An extent starts at ``offset`` (``length`` is not needed: the run ends where the data does)."""
        if offset != self._pos:
            self._close_run(self.h)
            self._start = self._pos = offset

    def update(self, data):
        self.h.update(data)
        self.bytes += len(data)
        self._pos += len(data)

    def zeros(self, length, _block=bytes(1 << 20)):
        """``length`` zero bytes (a zero record of the stream, or a hole)."""
        while length > 0:
            n = min(length, len(_block))
            self.update(memoryview(_block)[:n])
            length -= n

    def hexdigest(self):
        h = self.h.copy()
        self._close_run(h)
        return h.hexdigest()


# From this share of the image on, one sequential ``rbd export`` (concurrent object reads inside rbd)
# beats reading the extents in-process one request at a time: 2 GiB fully written took 3.0 s against
# 4.2 s here. Below it, reading only the extents wins (an incremental night changes a small share).
DENSE_SHARE = 0.5


# ... but an ``rbd export`` process costs ~0.1 s of CPU to start and connect, as much as reading ~50 MiB
# in-process: a first sync of 200 images of 1 MiB spent 13.5 s verifying, mostly starting processes.
EXPORT_MIN_BYTES = 64 << 20


def dense(extents, size):
    """Pure: whether the extents cover at least DENSE_SHARE of an image of ``size`` bytes."""
    return size > 0 and sum(length for _o, length, _x in extents) >= DENSE_SHARE * size


def read_with_export(extents, size):
    """Pure: whether one ``rbd export`` reads these extents faster than the in-process reader: they are
    dense and there are at least EXPORT_MIN_BYTES of them."""
    return dense(extents, size) and sum(length for _o, length, _x in extents) >= EXPORT_MIN_BYTES


def clip(extents, size):
    """Pure: extents cut to the image size (a shrunk image reads nothing past its end)."""
    out = []
    for off, length, exists in extents:
        if off >= size:
            continue
        out.append((off, min(length, size - off), exists))
    return out


class WorkerReader:
    """Reads snapshots through python3-rbd in a child process (:class:`_worker.Worker`).

    python3-rbd 16.2 crashed or hung the process that read in it (see :mod:`_worker`); now only the child
    can.  ``ranges()`` raises :class:`_worker.WorkerFailed` when the child dies, stalls for ``stall`` s
    (STALL, at most ``timeout``),
    runs past the image's deadline (``timeout`` plus one second per MIN_RATE bytes) or reports an error;
    :func:`digest_image` then reads that image again with ``rbd export``.  A killed child is replaced for
    the next image; after ``max_failures`` killed children the reader is off for the rest of the run.
    One image at a time (a lock): callers may be threads.
    """

    MIN_RATE = 8 << 20
    STALL = 60

    def __init__(self, conn, timeout=300, stall=None, max_failures=3, argv=None, env=None):
        self.conn = dict(conn, timeout=timeout)
        self.timeout = timeout
        self.stall = stall if stall is not None else min(self.STALL, timeout)
        self.max_failures = max_failures
        self.argv, self.env = argv, env
        self.failures = []              # what happened to each killed child
        self.worker = None
        self.lock = threading.Lock()

    def ranges(self, pool, namespace, image, snap, extents):
        """Yield (offset, length, data-chunk) for every extent, in order."""
        pieces, spans = [], []
        for off, length, _x in extents:
            pos, end = off, off + length
            while pos < end:
                n = min(READ_CHUNK, end - pos)
                pieces.append((pos, n))
                spans.append((off, length))
                pos += n
        if not pieces:
            return
        deadline = time.monotonic() + self.timeout + sum(n for _p, n in pieces) / self.MIN_RATE
        with self.lock:
            if len(self.failures) >= self.max_failures:
                raise WorkerFailed('librbd reader off after %d failures (last: %s)'
                                   % (len(self.failures), self.failures[-1]), fatal=False)
            done = False
            try:
                if self.worker is None:
                    self.worker = _worker.Worker(self.conn, self.stall, argv=self.argv, env=self.env)
                # (not zip(): the read must also take the child's end-of-image frame)
                for i, data in enumerate(self.worker.read(pool, namespace, image, snap, pieces, deadline)):
                    yield spans[i][0], spans[i][1], data
                done = True
            except WorkerFailed as e:
                if e.fatal:
                    self.failures.append(str(e))
                else:
                    done = True                     # it reported an error for this image and serves on
                raise
            finally:
                if not done and self.worker is not None:   # dead, or left in the middle of an image
                    self.worker.kill()
                    self.worker = None

    def close(self):
        with self.lock:
            if self.worker is not None:
                self.worker.close()
                self.worker = None


def _export_argv(rbd, pool, namespace, image, snap):
    return rbd.argv(*(['export', '--no-progress'] + image_args(pool, image, namespace, snap) + ['-']))


# ``rbd export`` is read by a thread, EXPORT_CHUNK at a time, up to PREFETCH chunks ahead of the caller's hash:
# the export (its own process) and the hash (hashlib lets go of the GIL) then run at the same time instead
# of taking turns through a 64 KiB pipe. 6 MiB in flight at most (P4 bounds the module's memory).
EXPORT_CHUNK = 1 << 20
PREFETCH = 4


def _stream_export(rbd, pool: str, namespace: Optional[str], image: str, snap: str,
                   prefetch: int = PREFETCH) -> Iterator[bytes]:
    """Yield the chunks of ``rbd export img@snap -``; raise RbdError if it fails.  A thread reads ahead (at
    most ``prefetch`` chunks of EXPORT_CHUNK, through a 1 MiB pipe) while the caller hashes what it was given."""
    argv = _export_argv(rbd, pool, namespace, image, snap)
    proc = spawn(argv, DEVNULL, PIPE, PIPE)
    grow_pipe(proc.stdout.fileno())
    chunks = queue.Queue(maxsize=max(1, prefetch))
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read_ahead():
        try:
            while True:
                chunk = proc.stdout.read(EXPORT_CHUNK)
                if not put(chunk) or not chunk:
                    return
        except BaseException as e:      # handed to the caller, raised there
            put(e)

    reader = threading.Thread(target=read_ahead, name='rbd export reader', daemon=True)
    reader.start()
    try:
        while True:
            chunk = chunks.get()
            if isinstance(chunk, BaseException):
                raise chunk
            if not chunk:
                break
            yield chunk
        reader.join()
        err = proc.stderr.read().decode('utf-8', 'replace')
        rc = proc.wait(timeout=rbd.timeout)
    finally:
        stop.set()
        kill_group(proc)
        proc.wait()
        reader.join(timeout=5)
    if rc != 0:
        raise RbdError('rbd export failed', cmd=argv, rc=rc, stderr=err,
                       image=image_label(pool, image, namespace, snap))


def export_ranges(chunks, extents):
    """Pure: from a whole-image byte stream, yield (offset, length, data) for each extent."""
    extents = list(extents)
    i = 0
    pos = 0
    for chunk in chunks:
        view = memoryview(chunk)         # slices without copies
        cstart, cend = pos, pos + len(chunk)
        while i < len(extents):
            off, length, _x = extents[i]
            lo, hi = max(off, cstart), min(off + length, cend)
            if lo < hi:
                yield off, length, view[lo - cstart:hi - cstart]
            if off + length <= cend:
                i += 1
                continue
            break
        pos = cend


def _hash_ranges(size, chunks):
    """The ``data`` digest and the bytes hashed, from (offset, length, data-chunk) in offset order."""
    hasher = DataHasher(size)
    current = None
    for off, length, data in chunks:
        if current != (off, length):
            hasher.begin(off, length)
            current = (off, length)
        hasher.update(data)
    return hasher.hexdigest(), hasher.bytes


def digest_image(rbd, pool, namespace, image, snapshot, method, from_snapshot=None, extents=None, reader=None):
    """Compute one image's digest; returns a result dict."""
    t0 = time.monotonic()
    label = image_label(pool, image, namespace, snapshot)
    snap_info = rbd.info(pool, image, namespace, snap=snapshot)
    if snap_info is None:
        raise RbdError('the image does not exist', image=label)
    size = int(snap_info['size'])
    result = dict(image=image, method=method, snapshot=snapshot, from_snapshot=from_snapshot, size=size)
    if extents is None and method in ('data', 'extents'):
        extents = rbd.diff(pool, image, namespace, snap=snapshot, from_snap=from_snapshot)
    else:
        extents = normalize_extents(extents)
    if method == 'extents':
        result['digest'] = extents_digest(extents)
        result['bytes_read'] = 0
    elif method == 'data':
        extents = clip(extents, size)
        if reader is not None and not read_with_export(extents, size):
            try:
                result['digest'], result['bytes_read'] = _hash_ranges(
                    size, reader.ranges(pool, namespace, image, snapshot, extents))
            except WorkerFailed as e:
                # whatever happened to the librbd reader costs this image a second read, not the run
                result['fallback'] = '%s; read again with rbd export' % e
        if 'digest' not in result:
            result['digest'], result['bytes_read'] = _hash_ranges(
                size, export_ranges(_stream_export(rbd, pool, namespace, image, snapshot), extents))
    elif method == 'full':
        h = hashlib.sha256(b'ceph_rbd.backup full v1 size=%d\n' % size)
        n = 0
        for chunk in _stream_export(rbd, pool, namespace, image, snapshot):
            h.update(chunk)
            n += len(chunk)
        if n != size:
            raise RbdError('rbd export gave %d bytes for a %d-byte snapshot' % (n, size), image=label)
        result['digest'] = h.hexdigest()
        result['bytes_read'] = n
    else:
        raise ValueError('unknown verify method %r' % method)
    if method in ('data', 'extents'):
        result['extents'] = [[o, l, x] for o, l, x in extents]
    result['seconds'] = round(time.monotonic() - t0, 3)
    return result
