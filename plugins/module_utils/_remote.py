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
    REMOTE_CEPH_SPEC, Rbd, SshRunner, ssh_argv,
)

REMOTE_ARGUMENT_SPEC = dict(
    mode=dict(type='str', choices=['pull', 'push'], default='pull'),
    remote_ceph=dict(type='dict', default={}, options=REMOTE_CEPH_SPEC),
    ssh_host=dict(type='str', required=True),
    ssh_user=dict(type='str'),
    ssh_port=dict(type='int'),
    ssh_key=dict(type='path', no_log=False),
    ssh_options=dict(type='list', elements='str', default=[]),
    ssh_cipher=dict(type='str'),
)


class Remote:
    """An Rbd client for the other host (small queries share one multiplexed ssh connection) and the
    ssh argv for data streams (each its own connection, with the chosen cipher).  Use as a context manager."""

    def __init__(self, params):
        p = params
        self.host = p['ssh_host']
        self.control_dir = tempfile.mkdtemp(prefix='rbd-ssh-')
        self.control_path = os.path.join(self.control_dir, 'cm')
        base = ssh_argv(p['ssh_host'], p['ssh_user'], p['ssh_port'], p['ssh_key'], p['ssh_options'])
        self.stream_ssh = ssh_argv(p['ssh_host'], p['ssh_user'], p['ssh_port'], p['ssh_key'], p['ssh_options'],
                                   cipher=p['ssh_cipher'])
        control = ['-o', 'ControlMaster=auto', '-o', 'ControlPath=%s' % self.control_path,
                   '-o', 'ControlPersist=120']
        self.query_ssh = base[:-2] + control + base[-2:]
        self.rbd = Rbd(timeout=p['timeout'], runner=SshRunner(self.query_ssh), **(p['remote_ceph'] or {}))

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
