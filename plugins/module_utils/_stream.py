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
import fcntl
import os
import select
import shlex
import signal
import struct
import subprocess
import tempfile
import time

from ansible_collections.ceph_rbd.backup.plugins.module_utils._verify import DataHasher, ExtentsHasher

BANNER_V1 = b'rbd diff v1\n'
CHUNK = 1 << 20
MAX_NAME = 4096
F_SETPIPE_SZ = 1031


class StreamError(Exception):
    def __init__(self, msg, stage=None, rc=None, stderr=None, cmd=None):
        super(StreamError, self).__init__(msg)
        self.msg = msg
        self.stage = stage
        self.rc = rc
        self.stderr = (stderr or '').strip()
        self.cmd = cmd

    def __str__(self):
        s = self.msg
        if self.cmd:
            s += ' (command: %s' % ' '.join(shlex.quote(a) for a in self.cmd)
            if self.rc is not None:
                s += ', rc=%s' % self.rc
            s += ')'
        if self.stderr:
            s += ': ' + self.stderr[-2000:]
        return s


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
    parts = [' '.join(shlex.quote(a) for a in argv) for argv in commands]
    if len(parts) == 1:
        return parts[0]
    return 'bash -o pipefail -c %s' % shlex.quote(' | '.join(parts))


class _Stage:
    def __init__(self, name, argv, proc, errfile):
        self.name, self.argv, self.proc, self.errfile = name, argv, proc, errfile

    def stderr(self):
        try:
            self.errfile.seek(0)
            return self.errfile.read().decode('utf-8', 'replace')
        except (OSError, ValueError):
            return ''


def _grow_pipe(fd):
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass


def _start_chain(named_argvs, first_stdin, last_stdout):
    """Start ``a | b | c`` with a given stdin for a and stdout for c."""
    stages = []
    prev = first_stdin
    for i, (name, argv) in enumerate(named_argvs):
        errfile = tempfile.TemporaryFile()
        stdout = last_stdout if i == len(named_argvs) - 1 else subprocess.PIPE
        proc = subprocess.Popen(argv, stdin=prev, stdout=stdout, stderr=errfile, start_new_session=True)
        if i > 0:
            prev.close()
        stages.append(_Stage(name, argv, proc, errfile))
        prev = proc.stdout
    return stages


def _kill(stages):
    for st in stages:
        if st.proc.poll() is None:
            try:
                os.killpg(st.proc.pid, signal.SIGKILL)
            except OSError:
                pass


def relay(upstream, downstream, idle_timeout, stats=None, bwlimit=None, progress=None, progress_every=30.0):
    """Run ``upstream | relay | downstream`` and return the stream stats.

    ``upstream``/``downstream`` are lists of ``(name, argv)`` forming a pipe each.
    Raises StreamError naming the failed stage; on any failure every process is
    killed before the downstream end sees the end of its input.
    """
    stats = stats or DiffStreamStats()
    up = _start_chain(upstream, subprocess.DEVNULL, subprocess.PIPE)
    try:
        down = _start_chain(downstream, subprocess.PIPE, subprocess.DEVNULL)
    except Exception:
        _kill(up)
        raise
    stages = up + down
    src = up[-1].proc.stdout
    dst = down[0].proc.stdin
    src_fd, dst_fd = src.fileno(), dst.fileno()
    for fd in (src_fd, dst_fd):
        _grow_pipe(fd)
        os.set_blocking(fd, False)
    failure = None
    pending = b''
    eof = False
    t0 = last_activity = last_progress = time.monotonic()
    try:
        while not (eof and not pending):
            events = {}
            poll = select.poll()
            if not pending and not eof:
                poll.register(src_fd, select.POLLIN)
            if pending:
                poll.register(dst_fd, select.POLLOUT)
            ready = poll.poll(1000)
            now = time.monotonic()
            for fd, ev in ready:
                events[fd] = ev
            if src_fd in events:
                try:
                    chunk = os.read(src_fd, CHUNK)
                except OSError as e:
                    if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        chunk = None
                    else:
                        raise
                if chunk == b'':
                    eof = True
                elif chunk:
                    stats.feed(chunk)
                    pending = chunk
                    last_activity = now
            if dst_fd in events and pending:
                if events[dst_fd] & (select.POLLERR | select.POLLHUP) and not events[dst_fd] & select.POLLOUT:
                    failure = 'the receiving end closed its input early'
                    break
                try:
                    written = os.write(dst_fd, pending)
                    pending = pending[written:]
                    last_activity = now
                except OSError as e:
                    if e.errno == errno.EPIPE:
                        failure = 'the receiving end closed its input early'
                        break
                    if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
            if now - last_activity > idle_timeout:
                failure = 'no data moved for %d s (timeout)' % idle_timeout
                break
            if bwlimit and stats.stream_bytes:
                ahead = stats.stream_bytes / float(bwlimit) - (now - t0)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            if progress and now - last_progress >= progress_every:
                last_progress = now
                progress(stats.stream_bytes, now - t0)
    except Exception as e:  # pragma: no cover - unexpected I/O error
        failure = 'relay failed: %s' % e
    exited = {}
    if failure:
        # Which processes had already died on their own: the culprit is among them, not among
        # those we kill now.
        for st in stages:
            if st.proc.poll() is not None:
                exited[id(st)] = st.proc.returncode
        _kill(stages)
    else:
        try:
            dst.close()
        except OSError:
            pass
    deadline = time.monotonic() + idle_timeout
    for st in stages:
        try:
            st.proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill(stages)
            st.proc.wait()
            if not failure:
                failure = '%s did not finish within %d s after its input ended (timeout)' % (st.name, idle_timeout)
    try:
        src.close()
    except OSError:
        pass
    # A failing stage is reported first in pipe order: the first one is usually the cause.
    for st in stages:
        rc = exited.get(id(st)) if failure else st.proc.returncode
        if rc is not None and rc != 0:
            _kill(stages)
            raise StreamError('%s failed%s' % (st.name, ' (%s)' % failure if failure else ''), stage=st.name,
                              rc=rc, stderr=st.stderr(), cmd=st.argv)
    if failure:
        raise StreamError(failure, stage='relay',
                          stderr='; '.join('%s: %s' % (st.name, st.stderr().strip()) for st in stages
                                           if st.stderr().strip()))
    if stats.error:
        raise StreamError('the diff stream was malformed: %s' % stats.error, stage='relay')
    if not stats.complete:
        raise StreamError('the diff stream ended without its end record (truncated)', stage='relay')
    stats.seconds = round(time.monotonic() - t0, 3)
    return stats
