# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The same client as :class:`_rbd.Rbd`, but in-process through python3-rbd where it is installed.

An ``rbd`` CLI call costs ~37 ms of CPU to start and authenticate; the same call through one shared
librados connection costs ~7 ms, and threads run them concurrently (librbd releases the GIL).  For
hundreds of images per nightly run that is the difference that matters.  The data streams
(``export-diff``/``import-diff``) stay CLI processes; so does everything on the *other* host.

Every librados operation is bounded by ``rados_osd_op_timeout``/``rados_mon_op_timeout``, and errors
become :class:`_rbd.RbdError` naming the image and the operation, like the CLI client's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import threading

from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError, image_label
from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import RBD_TIME_FORMAT

try:
    import rados  # pylint: disable=import-error
    import rbd as librbd  # pylint: disable=import-error
    HAS_LIBRBD = True
except ImportError:
    HAS_LIBRBD = False


# python3-rbd 16.2 aborted the process (std::system_error "Invalid argument", a pthread mutex assertion)
# when diff_iterate ran in several threads next to image reads; serialized, diff and info in 8 threads
# passed 16 of 16 runs. In-process a diff takes milliseconds, so one at a time costs little. (Snapshot
# reads are kept to one thread: see rbd_extent_verify.)
_DIFF_LOCK = threading.Lock()


def _errno(e):
    return getattr(e, 'errno', None)


class LibRbd(Rbd):
    """In-process librbd for queries and metadata changes; CLI argv for streams (inherited)."""

    def __init__(self, cluster=None, conf=None, user=None, keyring=None, timeout=300, runner=None, binary='rbd'):
        super(LibRbd, self).__init__(cluster, conf, user, keyring, timeout, runner, binary)
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


def client(params, prefer_librbd=True):
    """The local client for a module's common options: in-process when python3-rbd is there."""
    if prefer_librbd and HAS_LIBRBD:
        return LibRbd.from_params(params)
    return Rbd.from_params(params)
