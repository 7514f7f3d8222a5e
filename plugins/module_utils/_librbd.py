# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The same client as :class:`_rbd.Rbd`, but through python3-rbd where it is installed.

An ``rbd`` CLI call costs ~37 ms of CPU to start and authenticate; the same call through one
librados connection costs ~7 ms.  For hundreds of images per nightly run that is the difference that
matters.  The data streams (``export-diff``/``import-diff``) stay CLI processes; so does everything on
the *other* host.

python3-rbd 16.2 crashes or hangs the process that uses it now and then: with info, snap ls, diff,
metadata and snapshot calls in 32 threads on one connection (the modules' ``parallel``), 3 to 9 trials of
100 aborted (std::system_error / mutex assertion from a librados completion thread touching a freed librbd
object; see tests/integration/test_librbd_stress.py).  So the calls run in child processes
(:class:`_worker.Worker`, :func:`serve_ops`), a few of them, each one call at a time; this process never
loads librados.  When a child dies, stalls or fails, it is killed and that one call is done again with
the ``rbd`` CLI (snapshot create/remove and metadata changes checked so that a repeat is harmless), and
a warning says so.  After MAX_FAILURES dead children the client uses the CLI alone.

Every librados operation is bounded by ``rados_osd_op_timeout``/``rados_mon_op_timeout``, and errors
become :class:`_rbd.RbdError` naming the image and the operation, like the CLI client's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import json
import os
import sys
import threading
import time

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _worker
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError, image_label
from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import RBD_TIME_FORMAT

try:
    from importlib.util import find_spec
    # whether the children can import them; this process does not (see InProcess)
    HAS_LIBRBD = find_spec('rbd') is not None and find_spec('rados') is not None
except ImportError:
    HAS_LIBRBD = False

try:
    from ansible.module_utils.common.warnings import warn
except ImportError:  # pragma: no cover - outside ansible
    def warn(msg):
        sys.stderr.write('[WARNING]: %s\n' % msg)

rados = librbd = None


def _load():
    """python3-rados/python3-rbd, imported where they are used: in a child (or a test of InProcess)."""
    global rados, librbd  # pylint: disable=global-statement
    if librbd is None:
        import rados as _rados  # pylint: disable=import-error
        import rbd as _librbd  # pylint: disable=import-error
        rados, librbd = _rados, _librbd


# python3-rbd 16.2 aborted the process (std::system_error "Invalid argument", a pthread mutex assertion)
# when diff_iterate ran in several threads next to image reads; serialized, diff and info in 8 threads
# passed 16 of 16 runs. In-process a diff takes milliseconds, so one at a time costs little. (Snapshot
# reads are kept to one thread: see rbd_extent_verify.)
_DIFF_LOCK = threading.Lock()


def _errno(e):
    return getattr(e, 'errno', None)


def object_order(object_size):
    """Pure: librbd's ``order`` (log2 of the object size) for ``object_size`` bytes; None for the default.
    Raises ValueError for a size that is not a power of two (rbd refuses those too)."""
    if not object_size:
        return None
    object_size = int(object_size)
    if object_size & (object_size - 1):
        raise ValueError('object size %d is not a power of two' % object_size)
    return object_size.bit_length() - 1


class InProcess(Rbd):
    """In-process librbd for queries and metadata changes: what a :func:`serve_ops` child runs.

    (It was the module-side client until python3-rbd 16.2 was seen to crash it under threads.)
    """

    def __init__(self, cluster=None, conf=None, user=None, keyring=None, timeout=300, runner=None, binary='rbd'):
        super(InProcess, self).__init__(cluster, conf, user, keyring, timeout, runner, binary)
        _load()
        self._conn_args = (cluster, conf, user, keyring)
        self._cluster = None
        self._lock = threading.Lock()

    @property
    def cluster(self):
        with self._lock:
            if self._cluster is None:
                cluster, conf, user, keyring = self._conn_args
                t = str(int(self.timeout))
                opts = dict(rados_osd_op_timeout=t, rados_mon_op_timeout=t, client_mount_timeout=t)
                if keyring:
                    opts['keyring'] = keyring
                kwargs = dict(conffile=conf or '', conf=opts)
                if cluster:
                    kwargs['clustername'] = cluster
                if user:
                    kwargs['rados_id'] = user
                handle = rados.Rados(**kwargs)
                try:
                    handle.connect(timeout=int(self.timeout))
                except rados.Error as e:
                    raise RbdError('cannot connect to the cluster (%s)' % e, cmd=['librados', 'connect'],
                                   rc=_errno(e), image='conf %s' % (conf or '/etc/ceph/ceph.conf'))
                self._cluster = handle
                # Shut librados down before the interpreter tears down: left to garbage collection at
                # exit, its threads can outlive the objects they use (seen: std::system_error, abort).
                atexit.register(self.close)
            return self._cluster

    def close(self):
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None

    def _ioctx(self, pool, namespace, label):
        try:
            ioctx = self.cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            raise RbdError('pool %s does not exist' % pool, cmd=['librados', 'open_ioctx', pool], rc=2, image=label)
        if namespace:
            ioctx.set_namespace(namespace)
        return ioctx

    def _call(self, op, pool, image, namespace, fn, snap=None, read_only=True, missing=RbdError):
        """Open the image (optionally at a snapshot), run ``fn(img)``, close; map errors to RbdError.

        ``missing`` is what a missing image gives: RbdError (raise) or a value to return.
        """
        label = image_label(pool, image, namespace, snap)
        ioctx = self._ioctx(pool, namespace, label)
        try:
            try:
                img = librbd.Image(ioctx, image, snapshot=snap, read_only=read_only)
            except librbd.ImageNotFound:
                if missing is RbdError:
                    raise RbdError('librbd %s failed: no such image' % op, cmd=['librbd', op], rc=2, image=label)
                return missing
            try:
                return fn(img)
            finally:
                img.close()
        except librbd.Error as e:
            raise RbdError('librbd %s failed: %s' % (op, e), cmd=['librbd', op], rc=_errno(e), image=label)
        finally:
            ioctx.close()

    # -- queries ---------------------------------------------------------
    def pool_exists(self, pool, namespace=None):
        try:
            ioctx = self.cluster.open_ioctx(pool)
        except rados.ObjectNotFound:
            return False
        try:
            return not namespace or librbd.RBD().namespace_exists(ioctx, namespace)
        finally:
            ioctx.close()

    def list_images(self, pool, namespace=None):
        ioctx = self._ioctx(pool, namespace, 'pool ' + pool)
        try:
            return sorted(librbd.RBD().list(ioctx))
        except librbd.Error as e:
            raise RbdError('librbd list failed: %s' % e, cmd=['librbd', 'list'], rc=_errno(e), image='pool ' + pool)
        finally:
            ioctx.close()

    def info(self, pool, image, namespace=None, snap=None):
        def fn(img):
            st = img.stat()
            return dict(name=image, size=img.size(), object_size=st['obj_size'], objects=st['num_objs'])
        return self._call('info', pool, image, namespace, fn, snap=snap, missing=None)

    @staticmethod
    def _snaps(img):
        out = []
        for s in img.list_snaps():
            entry = dict(id=s['id'], name=s['name'], size=s['size'])
            if s.get('namespace', 0) != 0:        # only user snapshots, as `rbd snap ls` shows
                continue
            entry['protected'] = img.is_protected_snap(s['name'])
            try:
                entry['timestamp'] = img.get_snap_timestamp(s['id']).strftime(RBD_TIME_FORMAT)
            except librbd.Error:
                pass
            out.append(entry)
        return sorted(out, key=lambda s: s['id'])

    def snapshots(self, pool, image, namespace=None):
        return self._call('snap ls', pool, image, namespace, self._snaps)

    def snapshots_or_none(self, pool, image, namespace=None):
        return self._call('snap ls', pool, image, namespace, self._snaps, missing=None)

    def diff(self, pool, image, namespace=None, snap=None, from_snap=None, whole_object=False):
        def fn(img):
            extents = []
            with _DIFF_LOCK:
                img.diff_iterate(0, img.size(), from_snap, lambda o, l, e: extents.append((o, l, bool(e))),
                                 include_parent=True, whole_object=whole_object)
            return sorted(extents)
        return self._call('diff', pool, image, namespace, fn, snap=snap)

    def meta_get(self, pool, image, key, namespace=None):
        def fn(img):
            try:
                return img.metadata_get(key)
            except KeyError:
                return None
        return self._call('metadata_get', pool, image, namespace, fn)

    def meta_list(self, pool, image, namespace=None):
        return self._call('metadata_list', pool, image, namespace, lambda img: dict(img.metadata_list()))

    # -- changes ---------------------------------------------------------
    def create(self, pool, image, size, namespace=None, object_size=None):
        """As ``rbd create`` (the cluster's default features); ``object_size`` a power of two."""
        label = image_label(pool, image, namespace)
        ioctx = self._ioctx(pool, namespace, label)
        try:
            librbd.RBD().create(ioctx, image, int(size), order=object_order(object_size))
        except librbd.Error as e:
            raise RbdError('librbd create failed: %s' % e, cmd=['librbd', 'create'], rc=_errno(e), image=label)
        finally:
            ioctx.close()

    def snap_create(self, pool, image, snap, namespace=None):
        self._call('snap create %s' % snap, pool, image, namespace, lambda img: img.create_snap(snap),
                   read_only=False)

    def snap_remove(self, pool, image, snap, namespace=None):
        self._call('snap rm %s' % snap, pool, image, namespace, lambda img: img.remove_snap(snap), read_only=False)

    def meta_set(self, pool, image, key, value, namespace=None):
        self._call('metadata_set', pool, image, namespace, lambda img: img.metadata_set(key, value),
                   read_only=False)

    def meta_remove(self, pool, image, key, namespace=None):
        def fn(img):
            try:
                img.metadata_remove(key)
            except KeyError:
                pass
        self._call('metadata_remove', pool, image, namespace, fn, read_only=False)


# -- in child processes ------------------------------------------------------------------------------

OPS = ('pool_exists', 'list_images', 'info', 'snapshots', 'snapshots_or_none', 'diff', 'meta_get', 'meta_list',
       'create', 'snap_create', 'snap_remove', 'meta_set', 'meta_remove')
OPS_ENTRY = 'ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd:serve_ops'


def serve_ops(conn_json, stdin=None):
    """The child: one InProcess call per JSON line ``{"op", "args"}``; a ``J`` frame answers each with
    ``{"ok": value}`` or ``{"error": RbdError fields}``.  At EOF: shutdown, ``os._exit(0)``."""
    out = _worker.child_start()
    stdin = stdin or sys.stdin.buffer
    conn = json.loads(conn_json)
    try:
        impl = InProcess(conn.get('cluster'), conn.get('conf'), conn.get('user'), conn.get('keyring'),
                         conn.get('timeout') or 300)
        impl.cluster
    except Exception as e:  # pylint: disable=broad-except
        _worker.send(out, b'E', str(e).encode('utf-8', 'replace'))
        os._exit(2)
    _worker.send(out, b'R')
    for line in stdin:
        req = json.loads(line)
        try:
            if req['op'] not in OPS:
                raise ValueError('unknown op %r' % req['op'])
            answer = dict(ok=getattr(impl, req['op'])(*req['args']))
        except RbdError as e:
            answer = dict(error=dict(msg=e.msg, cmd=e.cmd, rc=e.rc, stderr=e.stderr, image=e.image))
        except Exception as e:  # pylint: disable=broad-except
            _worker.send(out, b'E', ('%s: %s' % (type(e).__name__, e)).encode('utf-8', 'replace'))
            continue
        _worker.send(out, b'J', json.dumps(answer).encode('utf-8'))
    impl.close()
    os._exit(0)


# -- the module side ---------------------------------------------------------------------------------

class LibRbd(Rbd):
    """Queries and metadata changes through python3-rbd in up to ``children`` child processes, each one
    call at a time; a call whose child fails is done again with the CLI.  CLI argv for streams (inherited).
    Thread-safe: callers are the modules' ``parallel`` threads."""

    MAX_FAILURES = 3
    STALL = 60

    def __init__(self, cluster=None, conf=None, user=None, keyring=None, timeout=300, runner=None, binary='rbd',
                 children=4, stall=None, env=None, child_argv=None):
        super(LibRbd, self).__init__(cluster, conf, user, keyring, timeout, runner, binary)
        # conn -> the argv of a child on another host (through ssh: _remote.remote_child_argv); None: here
        self.child_argv = child_argv
        self.unavailable = None     # why no child can run there (no python3-rbd, a forced command): CLI only
        self._started = 0
        self.cli = Rbd(cluster, conf, user, keyring, timeout, runner, binary)     # the way out
        self.conn = dict(cluster=cluster, conf=conf, user=user, keyring=keyring, timeout=timeout)
        self.children = max(1, children)
        self.stall = stall if stall is not None else min(self.STALL, timeout)
        self.env = env
        self.failures = []          # what happened to each child that was killed
        self.fallbacks = []         # the calls done again with the CLI, and why
        self._idle = []
        self._count = 0
        self._cond = threading.Condition()
        self._atexit = False

    @classmethod
    def from_params(cls, params, runner=None, timeout=None):
        client = super(LibRbd, cls).from_params(params, runner=runner, timeout=timeout)
        # one child per thread up to 8: the calls mostly wait on the cluster, and each child costs a start
        client.children = max(1, min(params.get('parallel') or 4, 8))
        return client

    # -- the children ----------------------------------------------------
    def _checkout(self):
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._count < self.children:
                    self._count += 1
                    break
                self._cond.wait()
            if not self._atexit:
                atexit.register(self.close)
                self._atexit = True
        try:
            argv = self.child_argv(self.conn) if self.child_argv else None
            child = _worker.Worker(self.conn, self.stall, env=self.env, entry=OPS_ENTRY, argv=argv,
                                   name='librbd helper' + (' on the other host' if argv else ''))
        except BaseException:
            self._checkin(None)
            raise
        self._started += 1
        return child

    def _checkin(self, child):
        with self._cond:
            if child is None:
                self._count -= 1
            else:
                self._idle.append(child)
            self._cond.notify()

    def close(self):
        """Let the idle children shut librados down and leave."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for child in idle:
            child.close()

    def _call_child(self, op, args):
        """(True, answer) from a child, or (False, why) when it failed; RbdError as the child raised it."""
        if self.unavailable:
            return False, None
        if len(self.failures) >= self.MAX_FAILURES:
            return False, 'librbd helpers off after %d failures' % len(self.failures)
        try:
            child = self._checkout()          # (a child that cannot start is a fatal WorkerFailed)
        except _worker.WorkerFailed as e:
            if self.child_argv is not None and not self._started:
                self._mark_unavailable(str(e))
                return False, None
            self.failures.append(str(e))
            return False, str(e)
        try:
            answer = child.call(dict(op=op, args=list(args)), time.monotonic() + self.timeout)
        except _worker.WorkerFailed as e:
            if e.fatal:
                self.failures.append(str(e))
                child.kill()
                child = None
            return False, str(e)
        except BaseException:
            child.kill()
            child = None
            raise
        finally:
            self._checkin(child)
        if 'error' in answer:
            raise RbdError(**answer['error'])
        return True, answer['ok']

    def _mark_unavailable(self, why):
        """The first child on the other host did not start: every call goes to the CLI, said once."""
        with self._cond:
            first, self.unavailable = self.unavailable is None, self.unavailable or why
        if first:
            warn('no librbd helper on the other host (%s): its rbd calls run through the rbd CLI over ssh, '
                 '~0.2 s of CPU each instead of ~0.01 s (it needs /usr/bin/python3 with python3-rbd, and an ssh '
                 'key without a forced command)' % why)

    def _op(self, op, args, label, cli):
        """``op`` in a child; if that fails, ``cli()`` (the same through ``self.cli``), with a warning."""
        ok, value = self._call_child(op, args)
        if ok:
            return value
        if value is None:       # no child can run on the other host: said once
            return cli()
        msg = '%s %s: %s; done again with the rbd CLI' % (op.replace('_', ' '), label, value)
        self.fallbacks.append(msg)
        warn(msg)
        return cli()

    # -- queries ---------------------------------------------------------
    def pool_exists(self, pool, namespace=None):
        return self._op('pool_exists', (pool, namespace), 'pool ' + pool,
                        lambda: self.cli.pool_exists(pool, namespace))

    def list_images(self, pool, namespace=None):
        return self._op('list_images', (pool, namespace), 'pool ' + pool,
                        lambda: self.cli.list_images(pool, namespace))

    def info(self, pool, image, namespace=None, snap=None):
        return self._op('info', (pool, image, namespace, snap), image_label(pool, image, namespace, snap),
                        lambda: self.cli.info(pool, image, namespace, snap))

    def snapshots(self, pool, image, namespace=None):
        return self._op('snapshots', (pool, image, namespace), image_label(pool, image, namespace),
                        lambda: self.cli.snapshots(pool, image, namespace))

    def snapshots_or_none(self, pool, image, namespace=None):
        return self._op('snapshots_or_none', (pool, image, namespace), image_label(pool, image, namespace),
                        lambda: self.cli.snapshots_or_none(pool, image, namespace))

    def diff(self, pool, image, namespace=None, snap=None, from_snap=None, whole_object=False):
        out = self._op('diff', (pool, image, namespace, snap, from_snap, whole_object),
                       image_label(pool, image, namespace, snap),
                       lambda: self.cli.diff(pool, image, namespace, snap, from_snap, whole_object))
        return [tuple(e) for e in out]

    def meta_get(self, pool, image, key, namespace=None):
        return self._op('meta_get', (pool, image, key, namespace), image_label(pool, image, namespace),
                        lambda: self.cli.meta_get(pool, image, key, namespace))

    def meta_list(self, pool, image, namespace=None):
        return self._op('meta_list', (pool, image, namespace), image_label(pool, image, namespace),
                        lambda: self.cli.meta_list(pool, image, namespace))

    # -- changes: a child may have done it before it died, so the CLI's repeat may find it done ----------
    def create(self, pool, image, size, namespace=None, object_size=None):
        def again():
            try:
                self.cli.create(pool, image, size, namespace, object_size=object_size)
            except RbdError:
                # done by the child that failed: the image is there, of that size, with no snapshot
                info = self.cli.info(pool, image, namespace)
                if not info or int(info.get('size') or -1) != int(size) or self.cli.snapshots(pool, image, namespace):
                    raise
        self._op('create', (pool, image, size, namespace, object_size), image_label(pool, image, namespace), again)

    def snap_create(self, pool, image, snap, namespace=None):
        def again():
            try:
                self.cli.snap_create(pool, image, snap, namespace)
            except RbdError:
                if snap not in [s['name'] for s in self.cli.snapshots_or_none(pool, image, namespace) or []]:
                    raise
        self._op('snap_create', (pool, image, snap, namespace), image_label(pool, image, namespace, snap), again)

    def snap_remove(self, pool, image, snap, namespace=None):
        def again():
            try:
                self.cli.snap_remove(pool, image, snap, namespace)
            except RbdError:
                if snap in [s['name'] for s in self.cli.snapshots_or_none(pool, image, namespace) or []]:
                    raise
        self._op('snap_remove', (pool, image, snap, namespace), image_label(pool, image, namespace, snap), again)

    def meta_set(self, pool, image, key, value, namespace=None):
        self._op('meta_set', (pool, image, key, value, namespace), image_label(pool, image, namespace),
                 lambda: self.cli.meta_set(pool, image, key, value, namespace))

    def meta_remove(self, pool, image, key, namespace=None):
        def again():
            try:
                self.cli.meta_remove(pool, image, key, namespace)
            except RbdError:
                if self.cli.meta_get(pool, image, key, namespace) is not None:
                    raise
        self._op('meta_remove', (pool, image, key, namespace), image_label(pool, image, namespace), again)


def client(params, prefer_librbd=True):
    """The local client for a module's common options: in-process when python3-rbd is there."""
    if prefer_librbd and HAS_LIBRBD:
        return LibRbd.from_params(params)
    return Rbd.from_params(params)
