# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):

    # The common Ceph client options, used by every module of the collection.
    DOCUMENTATION = r'''
author:
  - ceph_rbd.backup contributors (!UNKNOWN)
options:
  ceph:
    description:
      - The Ceph cluster the module works on, on the host it runs on. Every module names a cluster this
        way; the other side of a replication (O(ceph_rbd.backup.rbd_diff_transfer#module:remote.ceph)) has
        the same keys. Empty - the host's default C(/etc/ceph/ceph.conf) and C(client.admin).
      - Set it once for a play with C(module_defaults) and the action group C(group/ceph_rbd.backup.rbd).
    type: dict
    default: {}
    suboptions:
      cluster:
        description: Ceph cluster name (C(--cluster)); selects C(/etc/ceph/<cluster>.conf) and its default keyring.
        type: str
      conf:
        description: Path of the C(ceph.conf) to use (C(--conf)).
        type: str
      user:
        description: The cephx id to authenticate as, without the C(client.) prefix (C(--id)).
        type: str
      keyring:
        description: Path of the keyring that holds the key of O(ceph.user) (C(--keyring)).
        type: str
  timeout:
    description:
      - Seconds after which any single C(rbd) call is killed and reported as failed; also
        passed to librados as C(rados_osd_op_timeout), C(rados_mon_op_timeout) and C(client_mount_timeout),
        so a dead OSD or monitor gives an error instead of a hang.
      - For streams it bounds the time without any data moving, not the whole transfer.
      - From 1 to 86400 (a day); anything else fails the module before it does anything.
    type: int
    default: 300
requirements:
  - C(ceph-common) (the C(rbd) CLI) on the host the module runs on.
'''

    # The pool (and namespace) of the modules that work on the images of one pool.
    POOL = r'''
options:
  pool:
    description: The pool that holds the images.
    type: str
    required: true
  namespace:
    description: The RBD namespace inside O(pool), if any.
    type: str
'''

    # Options of the modules that work on many images at once.
    IMAGES = r'''
options:
  parallel:
    description:
      - How many images are worked on at the same time.
      - Snapshot creation and removal wait about a second for a monitor commit, and commits batch,
        so concurrency is what makes hundreds of images fast.
      - From 1 to 1024.
    type: int
    default: 8
  fail_on_image_error:
    description:
      - When V(true), the task fails if any image failed (after every image was tried).
      - When V(false), the task succeeds and lists the failed images in RV(failed_images); the
        C(ceph_rbd.backup.rbd_replicate) role uses this to carry on with the others and fail at the end.
    type: bool
    default: true
'''

    # The pools on both sides and the other host of a replication, reached over ssh (rbd_diff_transfer,
    # rbd_replication_status).
    REMOTE = r'''
options:
  source_pool:
    description: The source pool.
    type: str
    required: true
  source_namespace:
    description: The RBD namespace inside O(source_pool), if any.
    type: str
  dest_pool:
    description: The destination (backup) pool; it must exist. Defaults to O(source_pool).
    type: str
  dest_namespace:
    description: The RBD namespace inside O(dest_pool). Defaults to O(source_namespace).
    type: str
  mode:
    description:
      - Where the module runs - V(pull) on the destination (backup) host, reading the source over ssh;
        V(push) on the source host, writing to (or reading) the destination over ssh.
    type: str
    choices: [pull, push]
    default: pull
  remote:
    description:
      - The other host of the replication (the source in pull mode, the destination in push mode), reached
        over ssh, and its Ceph cluster. The role and the playbooks derive it from the inventory with the
        filter C(ceph_rbd.backup.remote_of).
    type: dict
    required: true
    suboptions:
      host:
        description: The address of the other host.
        type: str
        required: true
      user:
        description: The user to log in as on the other host.
        type: str
      port:
        description: The ssh port of the other host, from 1 to 65535.
        type: int
      key:
        description: The private key to log in with (default - ssh's own default keys).
        type: path
      options:
        description: Extra ssh arguments, for example V([-o, StrictHostKeyChecking=yes]).
        type: list
        elements: str
        default: []
      cipher:
        description:
          - The ssh cipher for data streams (C(ssh -c)). V(aes128-gcm@openssh.com) streamed about 1.6
            times faster than OpenSSH's default on the test machine. Queries use ssh's default.
        type: str
      helpers:
        description:
          - Run the queries and metadata changes on the other host in two python3-rbd helpers started there over
            the shared ssh connection (about 0.01 s of CPU per call instead of about 0.2 s for an rbd process).
            Where none can start (no C(/usr/bin/python3) with python3-rbd there, or a key bound to a forced
            command such as C(rbd-ssh-guard)) every call goes to the rbd CLI, with one warning per run.
          - V(false) uses the rbd CLI from the start, without trying a helper and without the warning.
        type: bool
        default: true
        version_added: 1.1.0
      ceph:
        description: The Ceph cluster of the other side, as it is named on the other host (the keys of O(ceph)).
        type: dict
        default: {}
        suboptions:
          cluster:
            description: Cluster name on the other host.
            type: str
          conf:
            description: Path of the C(ceph.conf) on the other host.
            type: str
          user:
            description: The cephx id on the other host.
            type: str
          keyring:
            description: Path of the keyring on the other host.
            type: str
'''
