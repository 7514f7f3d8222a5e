# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transfer pipeline: ``export-diff | [zstd] | ssh | [zstd -d] | import-diff``.

:class:`DiffStreamStats` is pure: it parses an ``rbd diff v1`` stream as it
passes (headers only; data is skipped, never buffered) and counts what it
carries.  :func:`relay` runs the processes of both ends, copies bytes between
them in 1 MiB chunks through the parser, enforces an inactivity timeout and an
optional bandwidth limit, and checks the exit code of every process of both ends
(the remote ends run under ``bash -o pipefail``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import select
import struct
import time
from typing import Callable, List, Optional, Sequence, Tuple

from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import (
    DEVNULL, PIPE, CommandError, exited, first_failure, grow_pipe, kill_all, quote, start_chain, wait_stages,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._verify import DataHasher, ExtentsHasher

BANNER_V1 = b'rbd diff v1\n'
CHUNK = 1 << 20
MAX_NAME = 4096


class StreamError(CommandError):
    """A data stream failed: ``stage`` names the process (or ``relay``), see :class:`_proc.CommandError`."""


class DiffStreamStats:
    """Counts what an ``rbd diff v1`` stream carries, fed chunk by chunk.

    With ``digest='data'`` it also computes the ``data`` digest of what the stream carries (see
    :class:`_verify.DataHasher`), with ``digest='extents'`` the ``extents`` digest of its records (the
    same list as the source's ``rbd diff``: both come from one diff_iterate): the destination can then
    be verified against exactly what the source sent, without reading the source a second time.
    """

    def __init__(self, digest=None):
        self.digest = digest if digest in ('data', 'extents') else None
        self.hasher = None
        self._ext_hash = ExtentsHasher() if self.digest == 'extents' else None
        self.stream_bytes = 0
        self.data_bytes = 0
        self.zero_bytes = 0
        self.write_records = 0
        self.zero_records = 0
        self.size = None
        self.from_snap = None
        self.to_snap = None
        self.complete = False
        self.error = None
        self.extents = []          # merged [offset, length] the stream touches
        self._banner = True
        self._buf = b''
        self._skip = 0

    def _wanted(self):
        if self._banner:
            return len(BANNER_V1)
        if not self._buf:
            return 1
        tag = self._buf[0:1]
        if tag in (b'w', b'z'):
            return 17
        if tag == b's':
            return 9
        if tag == b'e':
            return 1
        if tag == b'p':
            return 2
        if tag in (b'f', b't'):
            if len(self._buf) < 5:
                return 5
            length = struct.unpack('<I', self._buf[1:5])[0]
            return 5 + length if length <= MAX_NAME else None   # rbd itself caps names at 4096
        return None

    def _add_extent(self, offset, length):
        if self.extents and self.extents[-1][0] + self.extents[-1][1] == offset:
            self.extents[-1][1] += length
        else:
            self.extents.append([offset, length])

    def _record(self):
        buf = self._buf
        tag = buf[0:1]
        if self._banner:
            if buf != BANNER_V1:
                self.error = 'not an rbd diff v1 stream (banner %r)' % buf
            self._banner = False
        elif tag in (b'w', b'z'):
            offset, length = struct.unpack('<QQ', buf[1:17])
            self._add_extent(offset, length)
            if self._ext_hash is not None:
                self._ext_hash.add(offset, length, tag == b'w')
            if self.digest == 'data' and self.hasher is None:
                self.error = 'a data record before the size record'
                return
            if self.hasher is not None:
                self.hasher.begin(offset)
            if tag == b'w':
                self.write_records += 1
                self.data_bytes += length
                self._skip = length
            else:
                self.zero_records += 1
                self.zero_bytes += length
                if self.hasher is not None:
                    self.hasher.zeros(length)
        elif tag == b's':
            self.size = struct.unpack('<Q', buf[1:9])[0]
            if self.digest == 'data':
                self.hasher = DataHasher(self.size)
        elif tag == b'f':
            self.from_snap = buf[5:].decode('utf-8', 'replace')
        elif tag == b't':
            self.to_snap = buf[5:].decode('utf-8', 'replace')
        elif tag == b'e':
            self.complete = True
        self._buf = b''

    def feed(self, chunk):
        self.stream_bytes += len(chunk)
        if self.error:
            return
        n = len(chunk)
        pos = 0
        view = memoryview(chunk)
        while pos < n:
            if self._skip:
                take = min(self._skip, n - pos)
                if self.hasher is not None:
                    self.hasher.update(view[pos:pos + take])
                self._skip -= take
                pos += take
                continue
            if self.complete:
                self.error = 'data after the end record'
                return
            wanted = self._wanted()
            take = min(wanted - len(self._buf), n - pos)
            self._buf += view[pos:pos + take].tobytes()
            pos += take
            if self._wanted() is None:
                at = self.stream_bytes - n + pos - len(self._buf)
                if self._buf[0:1] in (b'f', b't'):
                    self.error = 'snapshot name longer than %d bytes at stream byte %d' % (MAX_NAME, at)
                else:
                    self.error = 'unknown record tag %r at stream byte %d' % (self._buf[0:1], at)
                return
            if len(self._buf) == self._wanted():
                self._record()
                if self.error:
                    return

    def stream_digest(self):
        """The ``digest`` method's digest of what the complete stream carried, else None."""
        if not self.complete or self.error:
            return None
        if self.hasher is not None:
            return self.hasher.hexdigest()
        if self._ext_hash is not None:
            return self._ext_hash.hexdigest()
        return None

    def as_dict(self):
        return dict(stream_bytes=self.stream_bytes, data_bytes=self.data_bytes, zero_bytes=self.zero_bytes,
                    write_records=self.write_records, zero_records=self.zero_records, size=self.size,
                    from_snap=self.from_snap, to_snap=self.to_snap, complete=self.complete)


def remote_pipeline(commands):
    """Pure: one remote shell command for a pipe of argvs, failing if any stage fails."""
    parts = [quote(argv) for argv in commands]
    if len(parts) == 1:
        return parts[0]
    return 'bash -o pipefail -c %s' % quote([' | '.join(parts)])


class _Pump:
    """Copies ``src_fd`` to ``dst_fd`` chunk by chunk through the stream parser (nothing buffered beyond one
    chunk), with an inactivity timeout, an optional bandwidth limit and progress callbacks."""

    def __init__(self, src_fd, dst_fd, stats, idle_timeout, bwlimit=None, progress=None, progress_every=30.0):
        self.src_fd, self.dst_fd, self.stats = src_fd, dst_fd, stats
        self.idle_timeout, self.bwlimit = idle_timeout, bwlimit
        self.progress, self.progress_every = progress, progress_every
        self.pending = b''
        self.eof = False
        self.t0 = self.last_activity = self.last_progress = time.monotonic()
        for fd in (src_fd, dst_fd):
            grow_pipe(fd, CHUNK)
            os.set_blocking(fd, False)

    def _read(self, now):
        try:
            chunk = os.read(self.src_fd, CHUNK)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise
        if chunk == b'':
            self.eof = True
        else:
            self.stats.feed(chunk)
            self.pending = chunk
            self.last_activity = now

    def _write(self, now, event):
        """Write what is pending; returns a failure message when the receiving end has gone."""
        if event & (select.POLLERR | select.POLLHUP) and not event & select.POLLOUT:
            return 'the receiving end closed its input early'
        try:
            written = os.write(self.dst_fd, self.pending)
        except OSError as e:
            if e.errno == errno.EPIPE:
                return 'the receiving end closed its input early'
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise
            return None
        self.pending = self.pending[written:]
        self.last_activity = now
        return None

    def _pace(self, now):
        if self.bwlimit and self.stats.stream_bytes:
            ahead = self.stats.stream_bytes / float(self.bwlimit) - (now - self.t0)
            if ahead > 0:
                time.sleep(min(ahead, 1.0))
        if self.progress and now - self.last_progress >= self.progress_every:
            self.last_progress = now
            self.progress(self.stats.stream_bytes, now - self.t0)

    def run(self):
        """Copy to the end of the input; returns None, or why it stopped early."""
        while not (self.eof and not self.pending):
            poll = select.poll()
            if not self.pending and not self.eof:
                poll.register(self.src_fd, select.POLLIN)
            if self.pending:
                poll.register(self.dst_fd, select.POLLOUT)
            events = dict(poll.poll(1000))
            now = time.monotonic()
            if self.src_fd in events:
                self._read(now)
            if self.dst_fd in events and self.pending:
                failure = self._write(now, events[self.dst_fd])
                if failure:
                    return failure
            if now - self.last_activity > self.idle_timeout:
                return 'no data moved for %d s (timeout)' % self.idle_timeout
            self._pace(now)
        return None


def _close(f):
    try:
        f.close()
    except OSError:
        pass


def _check(stages, codes, failure, stats):
    """Raise StreamError for the first stage that failed (in pipe order: usually the cause), or the relay's
    own failure, or a malformed or truncated stream."""
    bad = first_failure(stages, codes if failure else None)
    if bad:
        st, rc = bad
        kill_all(stages)
        raise StreamError('%s failed%s' % (st.name, ' (%s)' % failure if failure else ''), stage=st.name,
                          rc=rc, stderr=st.stderr(), cmd=st.argv)
    if failure:
        raise StreamError(failure, stage='relay', stderr='; '.join(
            '%s: %s' % (st.name, st.stderr().strip()) for st in stages if st.stderr().strip()))
    if stats.error:
        raise StreamError('the diff stream was malformed: %s' % stats.error, stage='relay')
    if not stats.complete:
        raise StreamError('the diff stream ended without its end record (truncated)', stage='relay')


def relay(upstream: Sequence[Tuple[str, List[str]]], downstream: Sequence[Tuple[str, List[str]]],
          idle_timeout: float, stats: Optional[DiffStreamStats] = None, bwlimit: Optional[int] = None,
          progress: Optional[Callable[[int, float], None]] = None, progress_every: float = 30.0) -> DiffStreamStats:
    """Run ``upstream | relay | downstream`` and return the stream stats.

    ``upstream``/``downstream`` are lists of ``(name, argv)`` forming a pipe each.
    Raises StreamError naming the failed stage; on any failure every process is
    killed before the downstream end sees the end of its input.
    """
    stats = stats or DiffStreamStats()
    up = start_chain(upstream, DEVNULL, PIPE)
    try:
        down = start_chain(downstream, PIPE, DEVNULL)
    except Exception:
        kill_all(up)
        raise
    stages = up + down
    src, dst = up[-1].proc.stdout, down[0].proc.stdin
    pump = _Pump(src.fileno(), dst.fileno(), stats, idle_timeout, bwlimit, progress, progress_every)
    try:
        failure = pump.run()
    except Exception as e:  # pragma: no cover - unexpected I/O error
        failure = 'relay failed: %s' % e
    codes = {}
    if failure:
        codes = exited(stages)     # who died on its own: the culprit is among them, not among those killed now
        kill_all(stages)
    else:
        _close(dst)
    late = wait_stages(stages, idle_timeout)
    if late and not failure:
        failure = '%s did not finish within %d s after its input ended (timeout)' % (late, idle_timeout)
    _close(src)
    _check(stages, codes, failure, stats)
    stats.seconds = round(time.monotonic() - pump.t0, 3)
    return stats
