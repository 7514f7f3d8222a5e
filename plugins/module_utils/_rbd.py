# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One client for the ``rbd`` CLI.

Every call goes through :class:`Rbd`: it builds the argv from the common client
options (never a shell string), runs it with a hard timeout, parses ``--format
json`` and raises :class:`RbdError` carrying the command, rc and stderr.

Images are always addressed with ``--pool/--namespace/--image/--snap`` options,
never as a ``pool/image@snap`` spec string, so that image names with ``/``,
``@``, spaces or shell metacharacters cannot be misparsed.

A *runner* is any callable ``runner(argv, timeout, stdin_data=None) -> (rc,
stdout, stderr)``; the local one is :func:`run_bounded`; :class:`SshRunner`
runs the same argv on another host (quoted with ``shlex.quote``).  Unit tests
pass a fake runner.

This is a private module_util (leading underscore): its API may change.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import threading

from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import CommandError, quote, run


# How a cluster is named, the same for the local side (option ``ceph``) and the other side of a
# replication (``remote.ceph``): a dict with these keys (see doc fragment ceph_rbd.backup.rbd).
CLIENT_OPTIONS = ('cluster', 'conf', 'user', 'keyring')

CEPH_SPEC = dict(
    cluster=dict(type='str'),
    conf=dict(type='str'),
    user=dict(type='str'),
    keyring=dict(type='str', no_log=False),
)
REMOTE_CEPH_SPEC = CEPH_SPEC

# The options every module has: the local cluster and the bound on every call.
CLIENT_ARGUMENT_SPEC = dict(
    ceph=dict(type='dict', default={}, options=CEPH_SPEC),
    timeout=dict(type='int', default=300),
)


def client_options(ceph):
    """Pure: the four client options of a ``ceph``/``remote.ceph`` dict (missing ones None)."""
    ceph = ceph or {}
    return dict((k, ceph.get(k)) for k in CLIENT_OPTIONS)


# Image-meta key set on a destination image while we import into it (see _transfer).
META_IMPORTING = 'ceph_rbd_backup.importing'
# Image-meta keys on a source image: per destination, its newest replicated snapshot (rbd_snapshot_prune).
META_HOLD_PREFIX = 'ceph_rbd_backup.hold.'


class RbdError(CommandError):
    """An rbd call failed.  ``str()`` names the image and the command (see :class:`_proc.CommandError`)."""


def _flags(*pairs):
    """Pure: ``[flag, value]`` for each pair whose value is set (not None, empty or 0)."""
    return [str(a) for flag, value in pairs if value for a in (flag, value)]


def client_args(cluster=None, conf=None, user=None, keyring=None, timeout=None):
    """Pure: the global rbd/ceph arguments for one set of client options.

    ``timeout`` also bounds librados itself, so a dead OSD or monitor makes the
    call fail instead of waiting forever.
    """
    argv = _flags(('--cluster', cluster), ('--conf', conf), ('--id', user), ('--keyring', keyring))
    if timeout:
        t = str(int(timeout))
        argv += ['--rados-osd-op-timeout', t, '--rados-mon-op-timeout', t,
                 '--client-mount-timeout', t]
    return argv


def image_args(pool, image=None, namespace=None, snap=None):
    """Pure: address an image (or a pool) with options, never with a spec string."""
    argv = ['--pool', pool]
    if namespace:
        argv += ['--namespace', namespace]
    if image is not None:
        argv += ['--image', image]
    if snap is not None:
        argv += ['--snap', snap]
    return argv


def image_label(pool, image, namespace=None, snap=None):
    """Pure: a human-readable ``pool/ns/image@snap`` for messages only."""
    label = pool + '/' + (namespace + '/' if namespace else '') + image
    if snap:
        label += '@' + snap
    return label


# The local runner: argv, own process group, killed after the timeout (see _proc).
run_bounded = run


def ssh_argv(host, user=None, port=None, key=None, options=None, cipher=None, batch=True):
    """Pure: the ssh argv (without the remote command) to reach ``host``."""
    argv = ['ssh']
    if batch:
        argv += ['-o', 'BatchMode=yes']
    argv += ['-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4']
    argv += _flags(('-p', port), ('-l', user), ('-i', key), ('-c', cipher))
    argv += list(options or [])
    argv += ['--', host]
    return argv


def remote_command(argv):
    """Pure: one shell-safe command string for ssh from an argv."""
    return quote(argv)


class SshRunner:
    """Runs argv on another host through ssh; each word is quoted once.

    At most ``max_sessions`` calls run at once: they share one multiplexed connection, and sshd
    refuses more than MaxSessions (10 by default) sessions on one connection.
    """

    def __init__(self, ssh, local_runner=None, max_sessions=8):
        self.ssh = list(ssh)
        self.local_runner = local_runner or run_bounded
        self.sessions = threading.BoundedSemaphore(max_sessions)

    def wrap(self, argv):
        return self.ssh + [remote_command(argv)]

    def __call__(self, argv, timeout, stdin_data=None):
        with self.sessions:
            return self.local_runner(self.wrap(argv), timeout, stdin_data)


def parse_bool(value):
    """rbd json writes some booleans as strings ("true"/"false")."""
    if isinstance(value, bool):
        return value
    return str(value).lower() == 'true'


class Rbd:
    """The rbd CLI for one cluster, run locally or through :class:`SshRunner`."""

    def __init__(self, cluster=None, conf=None, user=None, keyring=None, timeout=300,
                 runner=None, binary='rbd'):
        self.timeout = timeout
        self.runner = runner or run_bounded
        self.binary = binary
        self.global_args = client_args(cluster, conf, user, keyring, timeout)

    @classmethod
    def from_params(cls, params, runner=None, timeout=None):
        """The client for a module's ``ceph`` and ``timeout`` options."""
        return cls(timeout=timeout if timeout is not None else params.get('timeout', 300),
                   runner=runner, **client_options(params.get('ceph')))

    def close(self):
        """Nothing to release: each call is its own process (LibRbd's children are not)."""

    def argv(self, *args):
        return [self.binary] + self.global_args + list(args)

    def run(self, *args, **kwargs):
        """Run ``rbd ARGS``; raise RbdError on failure, return stdout."""
        image = kwargs.pop('image', None)
        stdin_data = kwargs.pop('stdin_data', None)
        ok_rcs = kwargs.pop('ok_rcs', (0,))
        argv = self.argv(*args)
        rc, out, err = self.runner(argv, self.timeout, stdin_data)
        if rc not in ok_rcs:
            raise RbdError('rbd %s failed' % args[0], cmd=argv, rc=rc, stderr=err, image=image)
        return out

    def json(self, *args, **kwargs):
        out = self.run(*(args + ('--format', 'json')), **kwargs)
        try:
            return json.loads(out) if out.strip() else None
        except ValueError:
            raise RbdError('rbd %s printed no JSON: %r' % (args[0], out[:200]),
                           cmd=self.argv(*args), image=kwargs.get('image'))

    # -- queries ---------------------------------------------------------
    def pool_exists(self, pool, namespace=None):
        try:
            self.list_images(pool, namespace)
            return True
        except RbdError as e:
            if e.rc == 2 or 'No such file' in e.stderr or 'error opening pool' in e.stderr:
                return False
            raise

    def list_images(self, pool, namespace=None):
        return sorted(self.json('ls', *image_args(pool, namespace=namespace)) or [])

    def group_images(self, pool, group, namespace=None):
        """The images of the rbd group ``group`` that are in ``pool`` (and ``namespace``); RbdError when the
        group does not exist (``rbd group image list`` then prints ``[]`` and says so on stderr only)."""
        argv = self.argv('group', 'image', 'list', *image_args(pool, namespace=namespace)) + [
            '--group', group, '--format', 'json']
        rc, out, err = self.runner(argv, self.timeout)
        try:
            members = json.loads(out or '[]') if rc == 0 else None
        except ValueError:
            members = None
        if members is None or (not members and 'No such file' in err):
            raise RbdError('rbd group %s does not exist' % group if rc == 0 else 'rbd group image list failed',
                           cmd=argv, rc=rc, stderr=err, image='group %s' % image_label(pool, group, namespace))
        return [m['image'] for m in members
                if m.get('pool', pool) == pool and (m.get('namespace') or None) == (namespace or None)]

    def info(self, pool, image, namespace=None, snap=None):
        """Image (or snapshot) info dict, or None if the image does not exist."""
        label = image_label(pool, image, namespace, snap)
        try:
            return self.json('info', *image_args(pool, image, namespace, snap), image=label)
        except RbdError as e:
            if e.rc == 2 or 'No such file' in e.stderr:
                return None
            raise

    def snapshots(self, pool, image, namespace=None):
        """The image's user snapshots, ordered by id (creation order)."""
        label = image_label(pool, image, namespace)
        snaps = self.json('snap', 'ls', *image_args(pool, image, namespace), image=label) or []
        for s in snaps:
            s['protected'] = parse_bool(s.get('protected', False))
        return sorted(snaps, key=lambda s: s['id'])

    def snapshots_or_none(self, pool, image, namespace=None):
        """Like snapshots(), but None when the image does not exist."""
        try:
            return self.snapshots(pool, image, namespace)
        except RbdError as e:
            if e.rc == 2 or 'No such file' in e.stderr:
                return None
            raise

    def diff(self, pool, image, namespace=None, snap=None, from_snap=None, whole_object=False):
        """Changed extents as [(offset, length, exists)], sorted by offset."""
        args = ['diff'] + image_args(pool, image, namespace, snap)
        if from_snap:
            args += ['--from-snap', from_snap]
        if whole_object:
            args.append('--whole-object')
        raw = self.json(*args, image=image_label(pool, image, namespace, snap)) or []
        return sorted((int(e['offset']), int(e['length']), parse_bool(e['exists'])) for e in raw)

    def meta_get(self, pool, image, key, namespace=None):
        """The value of an image-meta key, or None when it is not set."""
        argv = self.argv('image-meta', 'get', *(image_args(pool, image, namespace) + [key]))
        rc, out, err = self.runner(argv, self.timeout)
        if rc == 0:
            return out.strip()
        if rc == 2 or 'No such file' in err or 'failed to get metadata' in err:
            return None
        raise RbdError('rbd image-meta get failed', cmd=argv, rc=rc, stderr=err,
                       image=image_label(pool, image, namespace))

    def watchers(self, pool, image, namespace=None):
        """The clients that have the image open for writing (``rbd status``): a live writer's watch, or a
        dead one's until it times out (~30 s).  [] when none, or when the image does not exist."""
        label = image_label(pool, image, namespace)
        try:
            status = self.json('status', *image_args(pool, image, namespace), image=label) or {}
        except RbdError as e:
            if e.rc == 2 or 'No such file' in e.stderr:
                return []
            raise
        return list(status.get('watchers') or [])

    def meta_list(self, pool, image, namespace=None):
        """All image-meta keys and values of an image."""
        return self.json('image-meta', 'list', *image_args(pool, image, namespace),
                         image=image_label(pool, image, namespace)) or {}

    # -- changes ---------------------------------------------------------
    def snap_create(self, pool, image, snap, namespace=None):
        self.run('snap', 'create', *image_args(pool, image, namespace, snap),
                 image=image_label(pool, image, namespace))

    def snap_remove(self, pool, image, snap, namespace=None):
        self.run('snap', 'rm', '--no-progress', *image_args(pool, image, namespace, snap),
                 image=image_label(pool, image, namespace))

    def snap_rollback(self, pool, image, snap, namespace=None):
        self.run('snap', 'rollback', '--no-progress', *image_args(pool, image, namespace, snap),
                 image=image_label(pool, image, namespace))

    def create(self, pool, image, size, namespace=None, object_size=None):
        args = ['create', '--size', '%dB' % size] + image_args(pool, image, namespace)
        if object_size:
            args += ['--object-size', '%dB' % object_size]
        self.run(*args, image=image_label(pool, image, namespace))

    def remove(self, pool, image, namespace=None):
        self.run('rm', '--no-progress', *image_args(pool, image, namespace),
                 image=image_label(pool, image, namespace))

    def rename(self, pool, image, new_name, namespace=None):
        args = ['rename'] + image_args(pool, image, namespace) + ['--dest-pool', pool]
        if namespace:
            args += ['--dest-namespace', namespace]
        args += ['--dest', new_name]
        self.run(*args, image=image_label(pool, image, namespace))

    def meta_set(self, pool, image, key, value, namespace=None):
        self.run('image-meta', 'set', *(image_args(pool, image, namespace) + [key, value]),
                 image=image_label(pool, image, namespace))

    def meta_remove(self, pool, image, key, namespace=None):
        self.run('image-meta', 'remove', *(image_args(pool, image, namespace) + [key]),
                 image=image_label(pool, image, namespace), ok_rcs=(0, 2))
