# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The other side of a replication, reached over ssh: used by rbd_diff_transfer and rbd_replication_status."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess
import tempfile

from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import (
    REMOTE_CEPH_SPEC, Rbd, SshRunner, client_options, ssh_argv,
)

# The other side of a replication: the host (over ssh) and its cluster, named like the local one (``ceph``).
REMOTE_SPEC = dict(
    host=dict(type='str', required=True),
    user=dict(type='str'),
    port=dict(type='int'),
    key=dict(type='path', no_log=False),
    options=dict(type='list', elements='str', default=[]),
    cipher=dict(type='str'),
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


def dest_of(params):
    """Pure: the destination (pool, namespace) - by default the source's."""
    namespace = params['dest_namespace']
    return (params['dest_pool'] or params['source_pool'],
            namespace if namespace is not None else params['source_namespace'])


class Remote:
    """An Rbd client for the other host (small queries share one multiplexed ssh connection) and the
    ssh argv for data streams (each its own connection, with the chosen cipher).  Use as a context manager."""

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
        self.runner = SshRunner(self.query_ssh)
        self.rbd = Rbd(timeout=params['timeout'], runner=self.runner, **client_options(r['ceph']))

    @property
    def shared(self):
        """(ssh argv, semaphore) for a small data stream over the multiplexed connection: one session of it,
        counted with the queries' (sshd's MaxSessions), instead of a connection of its own."""
        return self.query_ssh, self.runner.sessions

    def close(self):
        """Stop the multiplexing master, if one was started (its output must not reach stdout)."""
        if os.path.exists(self.control_path):
            subprocess.call(['ssh', '-o', 'ControlPath=%s' % self.control_path, '-O', 'exit', self.host],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
