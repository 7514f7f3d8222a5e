# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Snapshot reads through python3-rbd in a child process, so that librbd can crash or hang only the child.

python3-rbd 16.2 (Debian 12) aborted or hung the process that read snapshots in it: std::system_error
"Invalid argument", a pthread mutex assertion, a segfault, or a librados completion thread blocked for
good on a mutex of a freed librbd object, after which every ``rbd_open_read_only`` of the process waits
forever.  Measured with tests/integration/test_librbd_stress.py: 8 threads with aio reads crashed 13
trials of 160 and hung 1.  The parent here never loads librados; it only talks to the child over pipes,
bounds it with an inactivity and an overall timeout, and on any death or stall kills the child's process
group and raises :class:`WorkerFailed` saying what happened, so the caller can read that image again with
the ``rbd`` CLI.

The child is a fresh interpreter (:func:`_proc.spawn`: its own process group, the C locale, the caller's
``env``; never ``fork`` of a process with librados threads), started once and reused for image after image.

The same child machinery (:class:`Worker`, :func:`child_start`, :func:`child_connect`) runs the
in-process queries of :class:`_librbd.LibRbd` (``call()``: a JSON request, a ``J`` frame answer).

Protocol of the reader.  Parent to child (stdin): one JSON line per image ``{"pool", "namespace", "image", "snap",
"pieces": [[offset, length], ...]}``.  Child to parent (stdout): frames of a 1-byte tag, a 4-byte
big-endian length and the payload: ``R`` connected (once), ``D`` the bytes of one piece (one per piece,
in order), ``Z`` the image is done, ``E`` an error for this image (UTF-8 text).  At EOF on stdin the child
shuts librados down and leaves with ``os._exit(0)`` (no interpreter teardown with librados objects alive).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import select
import signal
import struct
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import PIPE, grow_pipe, spawn, wait_for

_HEADER = struct.Struct('>cI')

# where ``ansible_collections`` can be imported from: a directory, or the AnsiballZ zip of a module run
_ROOT = os.path.abspath(__file__)
for _i in range(6):
    _ROOT = os.path.dirname(_ROOT)

# the child: ``python -c CHILD_CODE ROOT MODULE:FUNCTION CONN_JSON``
CHILD_CODE = ('import sys, importlib; sys.path.insert(0, sys.argv[1]); m, _, f = sys.argv[2].partition(":"); '
              'getattr(importlib.import_module(m), f)(sys.argv[3])')
READER = 'ansible_collections.ceph_rbd.backup.plugins.module_utils._worker:serve'


class WorkerFailed(Exception):
    """The child died, stalled, broke the protocol or reported an error; the message says which.

    ``fatal``: the child was killed (or is dead); otherwise it reported a clean error for one image
    (librbd raised) and serves the next one.
    """

    def __init__(self, msg, fatal=True):
        super(WorkerFailed, self).__init__(msg)
        self.fatal = fatal


# -- the child ---------------------------------------------------------------------------------------

def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _send(fd, tag, payload=b''):
    _write_all(fd, _HEADER.pack(tag, len(payload)))
    if payload:
        _write_all(fd, payload)


def child_start():
    """In a child: keep the protocol's fd for ourselves, and leave if the parent goes away.

    Returns the fd to write frames to.  Stray output to stdout goes to stderr instead.  A thread checks
    once a second that the parent is still there (librbd, hung, would never see stdin end).
    """
    import threading
    out = os.dup(1)
    os.dup2(2, 1)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()
    return out


def child_connect(conn):
    """In a child: a connected ``rados.Rados`` for the common client options (and ``timeout``)."""
    import rados  # pylint: disable=import-error
    t = str(int(conn.get('timeout') or 300))
    opts = dict(rados_osd_op_timeout=t, rados_mon_op_timeout=t, client_mount_timeout=t)
    if conn.get('keyring'):
        opts['keyring'] = conn['keyring']
    kwargs = dict(conffile=conn.get('conf') or '', conf=opts)
    if conn.get('cluster'):
        kwargs['clustername'] = conn['cluster']
    if conn.get('user'):
        kwargs['rados_id'] = conn['user']
    cluster = rados.Rados(**kwargs)
    cluster.connect(timeout=int(t))
    return cluster


def send(fd, tag, payload=b''):
    """In a child: one frame."""
    _send(fd, tag, payload)


def serve(conn_json, stdin=None):
    """The reader child: connect, then read the pieces of one image per request line until stdin ends."""
    out = child_start()
    stdin = stdin or sys.stdin.buffer
    try:
        import rbd as librbd  # pylint: disable=import-error
        cluster = child_connect(json.loads(conn_json))
    except Exception as e:  # pylint: disable=broad-except
        _send(out, b'E', ('cannot connect to the cluster: %s' % (e,)).encode('utf-8', 'replace'))
        os._exit(2)
    _send(out, b'R')
    for line in stdin:
        req = json.loads(line)
        try:
            ioctx = cluster.open_ioctx(req['pool'])
            try:
                if req.get('namespace'):
                    ioctx.set_namespace(req['namespace'])
                img = librbd.Image(ioctx, req['image'], snapshot=req.get('snap'), read_only=True)
                try:
                    for pos, n in req['pieces']:
                        data = img.read(pos, n)
                        if len(data) != n:
                            raise IOError('short read of %d bytes at %d (got %d)' % (n, pos, len(data)))
                        _send(out, b'D', data)
                finally:
                    img.close()
            finally:
                ioctx.close()
        except Exception as e:  # pylint: disable=broad-except
            _send(out, b'E', ('%s: %s' % (type(e).__name__, e)).encode('utf-8', 'replace'))
            continue
        _send(out, b'Z')
    cluster.shutdown()
    os._exit(0)


# -- the parent --------------------------------------------------------------------------------------

def describe_exit(rc):
    """Pure: 'died with SIGABRT' / 'exited with rc 3' for a Popen returncode."""
    if rc is not None and rc < 0:
        try:
            return 'died with %s' % signal.Signals(-rc).name
        except ValueError:
            return 'died with signal %d' % -rc
    return 'exited with rc %s' % rc


class Worker:
    """One reader child.  ``read()`` yields the bytes of each piece; every failure is a WorkerFailed."""

    def __init__(self, conn: Dict[str, Any], stall: float = 60, argv: Optional[List[str]] = None,
                 env: Optional[Mapping[str, str]] = None, pipe_size: int = 1 << 20, entry: str = READER,
                 name: str = 'librbd reader') -> None:
        self.stall, self.name = stall, name
        self.errfile = tempfile.TemporaryFile()
        argv = argv or [sys.executable or '/usr/bin/python3', '-c', CHILD_CODE, _ROOT, entry, json.dumps(conn)]
        try:
            self.proc = spawn(argv, PIPE, PIPE, self.errfile, env=env)
        except OSError as e:
            self.errfile.close()
            raise WorkerFailed('cannot start the %s: %s' % (name, e))
        self.pid = self.proc.pid
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.proc.stdin.fileno(), False)
        grow_pipe(self.fd, pipe_size)
        tag, payload = self._frame(time.monotonic() + max(stall, conn.get('timeout') or 0))
        if tag != b'R':
            self._fail('did not start', tag, payload)

    # reading with both bounds: nothing for ``stall`` s, or past ``deadline``
    def _readinto(self, view, deadline):
        pos = 0
        while pos < len(view):
            now = time.monotonic()
            wait = min(self.stall, deadline - now)
            if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                self.kill()
                if deadline - now <= self.stall:
                    raise WorkerFailed('%s timed out (killed)' % self.name)
                raise WorkerFailed('%s stalled: nothing for %d s (killed)' % (self.name, self.stall))
            n = os.readv(self.fd, [view[pos:]])
            if n == 0:
                raise WorkerFailed('%s %s%s' % (self.name, self._reap(), self._stderr_tail()))
            pos += n

    def _frame(self, deadline):
        head = bytearray(_HEADER.size)
        self._readinto(memoryview(head), deadline)
        tag, length = _HEADER.unpack(head)
        payload = bytearray(length)
        if length:
            self._readinto(memoryview(payload), deadline)
        return tag, payload

    def _fail(self, what, tag, payload, alive=False):
        """Raise the WorkerFailed for an unexpected frame; the child is killed unless it reported an
        error for this image (``E``) and is ``alive`` (still in step, serving the next request)."""
        if tag == b'E':
            if not alive:
                self.kill()
            raise WorkerFailed('%s failed: %s' % (self.name, payload.decode('utf-8', 'replace')[-500:]),
                               fatal=not alive)
        self.kill()
        raise WorkerFailed('%s %s: unexpected frame %r' % (self.name, what, tag))

    def _write(self, data, deadline):
        """Write all of ``data`` to the child's stdin, bounded like the reads."""
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            wait = min(self.stall, deadline - time.monotonic())
            if wait <= 0 or not select.select([], [fd], [], wait)[1]:
                self.kill()
                raise WorkerFailed('%s stalled: took no request for %d s (killed)' % (self.name, self.stall))
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                continue
            except OSError:
                raise WorkerFailed('%s %s%s' % (self.name, self._reap(), self._stderr_tail()))

    def read(self, pool, namespace, image, snap, pieces, deadline):
        """Yield the bytes (a bytearray) of each (offset, length) piece of ``image@snap``, in order."""
        req = dict(pool=pool, namespace=namespace, image=image, snap=snap, pieces=[list(p) for p in pieces])
        self._write(json.dumps(req).encode() + b'\n', deadline)
        for _pos, n in pieces:
            tag, payload = self._frame(deadline)
            if tag != b'D' or len(payload) != n:
                self._fail('read %d bytes instead of %d' % (len(payload), n) if tag == b'D' else 'broke off',
                           tag, payload, alive=True)
            yield payload
        tag, payload = self._frame(deadline)
        if tag != b'Z':
            self._fail('did not finish', tag, payload, alive=True)

    def call(self, request, deadline):
        """Send one JSON request, return the child's JSON answer (a ``J`` frame)."""
        self._write(json.dumps(request).encode() + b'\n', deadline)
        tag, payload = self._frame(deadline)
        if tag != b'J':
            self._fail('did not answer', tag, payload, alive=True)
        return json.loads(payload.decode('utf-8'))

    def _reap(self, wait: float = 5) -> str:
        rc = wait_for(self.proc, wait)
        if rc is None:
            self.kill()
            return 'closed its output and was killed'
        return describe_exit(rc)

    def _stderr_tail(self):
        try:
            self.errfile.seek(0)
            text = self.errfile.read()[-2000:].decode('utf-8', 'replace')
        except (OSError, ValueError):
            return ''
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(('  File ', 'Thread '))]
        return (': ' + ' / '.join(lines[-2:])[-300:]) if lines else ''

    def kill(self) -> None:
        """Kill the child's whole process group (even when the child itself is gone: what it started may be
        left, an ssh's ProxyCommand) and reap it."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        wait_for(self.proc, 30)
        self._close_files()

    def close(self, wait: float = 10) -> None:
        """Let the child shut librados down and leave; kill it if it takes longer than ``wait`` s."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        wait_for(self.proc, wait)
        self.kill()

    def _close_files(self):
        for f in (self.proc.stdin, self.proc.stdout, self.errfile):
            try:
                f.close()
            except (OSError, ValueError):
                pass
