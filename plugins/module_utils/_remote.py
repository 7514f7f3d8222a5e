# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The other side of a replication, reached over ssh: used by rbd_diff_transfer and rbd_replication_status."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import importlib
import io
import json
import os
import shutil
import tempfile
import zipfile

from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import OPS_ENTRY, LibRbd
from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import run
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    REMOTE_CEPH_SPEC, Rbd, SshRunner, client_options, remote_command, ssh_argv,
)

# The other side of a replication: the host (over ssh) and its cluster, named like the local one (``ceph``).
REMOTE_SPEC = dict(
    host=dict(type='str', required=True),
    user=dict(type='str'),
    port=dict(type='int'),
    key=dict(type='path', no_log=False),
    options=dict(type='list', elements='str', default=[]),
    cipher=dict(type='str'),
    helpers=dict(type='bool', default=True),
    ceph=dict(type='dict', default={}, options=REMOTE_CEPH_SPEC),
)

REMOTE_ARGUMENT_SPEC = dict(
    source_pool=dict(type='str', required=True),
    source_namespace=dict(type='str'),
    dest_pool=dict(type='str'),
    dest_namespace=dict(type='str'),
    mode=dict(type='str', choices=['pull', 'push'], default='pull'),
    remote=dict(type='dict', required=True, options=REMOTE_SPEC),
)


# The librbd helpers on the other host: python3-rbd is packaged for the system python only.
REMOTE_PYTHON = '/usr/bin/python3'
# What a helper imports of ours (_librbd and what it imports), shipped in the ssh command as a zip.
_PACKAGE = 'ansible_collections.ceph_rbd.backup.plugins.module_utils'
_SHIPPED = ('_proc', '_snapshots', '_rbd', '_worker', '_librbd')
# The helper's bootstrap: ``python3 -c BOOT ZIP_B64 MODULE:FUNCTION CONN_JSON``. The zip is a temporary file
# only while our modules import (all at once: _librbd imports the others at its top).
_BOOT = ('import base64, importlib, os, sys, tempfile\n'
         'fd, path = tempfile.mkstemp(suffix=".zip")\n'
         'os.write(fd, base64.b64decode(sys.argv[1])); os.close(fd)\n'
         'sys.path.insert(0, path)\n'
         'try:\n'
         '    m, _, f = sys.argv[2].partition(":"); fn = getattr(importlib.import_module(m), f)\n'
         'finally:\n'
         '    os.unlink(path)\n'
         'fn(sys.argv[3])\n')
_ZIP = []


def shipped_zip():
    """The base64 zip of the modules a helper on the other host runs (made once per module run)."""
    if not _ZIP:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:
            parts = _PACKAGE.split('.')
            for i in range(1, len(parts) + 1):
                z.writestr('/'.join(parts[:i]) + '/__init__.py', '')
            for name in _SHIPPED:
                mod = importlib.import_module(_PACKAGE + '.' + name)
                z.writestr(_PACKAGE.replace('.', '/') + '/%s.py' % name, mod.__loader__.get_source(mod.__name__))
        _ZIP.append(base64.b64encode(buf.getvalue()).decode('ascii'))
    return _ZIP[0]


def remote_child_argv(ssh, python=REMOTE_PYTHON):
    """A function conn -> the argv that starts a librbd helper (:func:`_librbd.serve_ops`) on the other host,
    as one session of the multiplexed ssh connection ``ssh``."""
    def argv(conn):
        return ssh + [remote_command([python, '-c', _BOOT, shipped_zip(), OPS_ENTRY, json.dumps(conn)])]
    return argv


def dest_of(params):
    """Pure: the destination (pool, namespace) - by default the source's."""
    namespace = params['dest_namespace']
    return (params['dest_pool'] or params['source_pool'],
            namespace if namespace is not None else params['source_namespace'])


class Remote:
    """An Rbd client for the other host (small queries share one multiplexed ssh connection, through librbd
    helpers running there when they can) and the ssh argv for data streams (each its own connection, with the
    chosen cipher; small ones a session of the shared connection).  Use as a context manager."""

    HELPERS = 2
    # ``ssh -O exit`` only talks to the master over its socket: when the master has not answered in this time,
    # the ``ssh -O exit`` is killed and the master left as it is, instead of the module waiting for good
    EXIT_TIMEOUT = 20

    def __init__(self, params):
        r = params['remote']
        self.host = r['host']
        self.control_dir = tempfile.mkdtemp(prefix='rbd-ssh-')
        self.control_path = os.path.join(self.control_dir, 'cm')
        base = ssh_argv(r['host'], r['user'], r['port'], r['key'], r['options'])
        self.stream_ssh = ssh_argv(r['host'], r['user'], r['port'], r['key'], r['options'], cipher=r['cipher'])
        control = ['-o', 'ControlMaster=auto', '-o', 'ControlPath=%s' % self.control_path,
                   '-o', 'ControlPersist=120']
        self.query_ssh = base[:-2] + control + base[-2:]
        # sshd's MaxSessions (10 by default) per connection: 6 queries or small streams, 2 helpers
        self.runner = SshRunner(self.query_ssh, max_sessions=6)
        # queries through python3-rbd helpers there (two sessions of the connection), the CLI as the way out;
        # helpers=false: the CLI only, without trying (and warning) - e.g. behind the rbd-ssh-guard forced command
        if r.get('helpers', True):
            self.rbd = LibRbd(timeout=params['timeout'], runner=self.runner, children=self.HELPERS,
                              child_argv=remote_child_argv(self.query_ssh), **client_options(r['ceph']))
        else:
            self.rbd = Rbd(timeout=params['timeout'], runner=self.runner, **client_options(r['ceph']))

    @property
    def shared(self):
        """(ssh argv, semaphore) for a small data stream over the multiplexed connection: one session of it,
        counted with the queries' (sshd's MaxSessions), instead of a connection of its own."""
        return self.query_ssh, self.runner.sessions

    def close(self) -> None:
        """Let the helpers leave, stop the multiplexing master, if one was started (its output must not reach
        stdout: run keeps it), bounded by EXIT_TIMEOUT."""
        self.rbd.close()
        if os.path.exists(self.control_path):
            run(['ssh', '-o', 'ControlPath=%s' % self.control_path, '-O', 'exit', self.host], self.EXIT_TIMEOUT)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
