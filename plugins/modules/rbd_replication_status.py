#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: rbd_replication_status
short_description: Report how fresh the backups of a pool are, and fail or warn when they are too old
version_added: 1.0.0
description:
  - For each image of the source pool, reports the newest snapshot with O(prefix) that exists on both sides,
    its age, and how many prefixed snapshots each side holds (like sanoid's C(--monitor-snapshots)).
  - An image is C(critical) when it has no backup or no snapshot in common, or when the age passes O(crit_age);
    C(warning) past O(warn_age). The task fails when any image is critical (O(fail_on_critical)) and warns
    for warnings.
  - Optionally writes the figures as a Prometheus textfile (node_exporter textfile collector).
  - Runs where the transfer runs - on the backup host reading the source over ssh (V(pull)), or the reverse.
extends_documentation_fragment: [ceph_rbd.backup.attributes,
                                 ceph_rbd.backup.rbd, ceph_rbd.backup.rbd.REMOTE, ceph_rbd.backup.rbd.IMAGES]
attributes:
  check_mode:
    support: full
    details:
      - Reads only; the textfile is not written in check mode.
  diff_mode:
    support: N/A
    details:
      - The module changes nothing in the clusters.
options:
  include:
    description: Shell-style patterns; an image of the source pool is reported if it matches one.
    type: list
    elements: str
    default: ['*']
  exclude:
    description: Shell-style patterns of images not to report.
    type: list
    elements: str
    default: []
  prefix:
    description: The prefix of the snapshots this collection owns.
    type: str
    default: backup-
  warn_age:
    description:
      - Age of the newest common snapshot above which an image is a warning (seconds, or like V(26h), V(2d)).
      - At least 0.
    type: str
    default: 26h
  crit_age:
    description: Age above which an image is critical (seconds, or like V(50h)); at least 0.
    type: str
    default: 50h
  fail_on_critical:
    description: Fail the task when any image is critical.
    type: bool
    default: true
  prometheus_textfile:
    description: Write metrics to this file (atomically) on the host the module runs on.
    type: path
'''

EXAMPLES = r'''
- name: Nagios-style freshness check of the backups of pool rbd (runs on the backup host)
  ceph_rbd.backup.rbd_replication_status:
    source_pool: rbd
    remote: {host: ceph-src-1.example.com}
    warn_age: 26h
    crit_age: 50h
    prometheus_textfile: /var/lib/prometheus/node-exporter/ceph_rbd_backup.prom
'''

RETURN = r'''
images:
  description: One status per image.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The source image.
      type: str
    newest_common:
      description: The newest prefixed snapshot present on both sides.
      type: str
    age_seconds:
      description: Its age in seconds.
      type: int
    source_snapshots:
      description: Prefixed snapshots on the source image.
      type: int
    dest_snapshots:
      description: Prefixed snapshots on the backup image.
      type: int
    state:
      description: V(ok), V(warning) or V(critical).
      type: str
    reason:
      description: Why the state is not ok.
      type: str
counts:
  description: How many images are in each state.
  returned: always
  type: dict
failed_images:
  description:
    - The images whose status could not be read.
    - When the task fails because of O(fail_on_critical), the critical images.
  returned: always
  type: list
  elements: str
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _status
from ansible_collections.ceph_rbd.backup.plugins.module_utils._module import (
    argument_spec, check_ranges, finish, run_images, select_names,
)
from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as librbd_client
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import RbdError
from ansible_collections.ceph_rbd.backup.plugins.module_utils._remote import REMOTE_ARGUMENT_SPEC, Remote, dest_of
from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import utcnow


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.ceph_rbd_backup.')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def main():
    spec = argument_spec(
        include=dict(type='list', elements='str', default=['*']),
        exclude=dict(type='list', elements='str', default=[]),
        prefix=dict(type='str', default='backup-'),
        warn_age=dict(type='str', default='26h'),
        crit_age=dict(type='str', default='50h'),
        fail_on_critical=dict(type='bool', default=True),
        prometheus_textfile=dict(type='path'),
        **REMOTE_ARGUMENT_SPEC
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    check_ranges(module)
    p = module.params
    warn_age, crit_age = _status.parse_age(p['warn_age']), _status.parse_age(p['crit_age'])   # checked above
    dest_pool, dest_ns = dest_of(p)
    now = utcnow()
    with Remote(p) as remote:
        local = librbd_client(p)
        src, dst = (remote.rbd, local) if p['mode'] == 'pull' else (local, remote.rbd)
        try:
            names = select_names(src.list_images(p['source_pool'], p['source_namespace']),
                                 p['include'], p['exclude'])
        except RbdError as e:
            module.fail_json(**e.as_dict())

        def work(item):
            s = src.snapshots(p['source_pool'], item['image'], p['source_namespace'])
            d = dst.snapshots_or_none(dest_pool, item['image'], dest_ns)
            out = _status.image_status(item['image'], s, d, p['prefix'], now, warn_age, crit_age)
            out['changed'] = False
            return out

        outcomes = run_images(module, [dict(image=n) for n in names], work)
    statuses = [r for _i, r, e in outcomes if e is None]
    counts = dict((state, sum(1 for s in statuses if s['state'] == state)) for state in _status.STATES)
    if p['prometheus_textfile'] and not module.check_mode:
        write_atomically(p['prometheus_textfile'], _status.prometheus_text(statuses, p['source_pool'], dest_pool))
    for s in statuses:
        if s['state'] == 'warning':
            module.warn('image %s/%s: %s' % (p['source_pool'], s['image'], s['reason']))
    critical = [s for s in statuses if s['state'] == 'critical']
    if critical and p['fail_on_critical']:
        module.fail_json(msg='%d of %d image(s) critical: %s' % (
            len(critical), len(statuses), '; '.join('%s/%s: %s' % (p['source_pool'], s['image'], s['reason'])
                                                    for s in critical)),
            images=statuses, counts=counts, failed_images=[s['image'] for s in critical])
    finish(module, outcomes, 'rbd_replication_status', counts=counts)


if __name__ == '__main__':
    main()
