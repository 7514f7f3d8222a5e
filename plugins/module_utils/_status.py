# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure replication freshness: how old is each image's newest common snapshot (sanoid --monitor style)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import snapshot_time, with_prefix

STATES = ('ok', 'warning', 'critical')


def parse_age(value):
    """Pure: seconds from an int or a string like '90', '36h', '2d', '45m', '1w'."""
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip().lower()
    units = dict(s=1, m=60, h=3600, d=86400, w=604800)
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def image_status(image, source_snaps, dest_snaps, prefix, now, warn_age, crit_age):
    """One image's status; ``dest_snaps`` None when the backup image does not exist."""
    src_own = with_prefix(source_snaps or [], prefix)
    dst_names = set(s['name'] for s in dest_snaps or [])
    common = [s for s in src_own if s['name'] in dst_names]
    out = dict(image=image, source_snapshots=len(src_own),
               dest_snapshots=len(with_prefix(dest_snaps or [], prefix)),
               newest_common=None, age_seconds=None, backup_exists=dest_snaps is not None)
    if common:
        newest = common[-1]
        out['newest_common'] = newest['name']
        when = snapshot_time(newest, prefix)
        if when is not None:
            out['age_seconds'] = int((now - when).total_seconds())
    age = out['age_seconds']
    if age is None:
        out['state'] = 'critical'
        out['reason'] = 'no backup image' if dest_snaps is None else 'no snapshot in common'
    elif crit_age is not None and age > crit_age:
        out['state'] = 'critical'
        out['reason'] = 'newest common snapshot is %ds old (critical above %ds)' % (age, crit_age)
    elif warn_age is not None and age > warn_age:
        out['state'] = 'warning'
        out['reason'] = 'newest common snapshot is %ds old (warning above %ds)' % (age, warn_age)
    else:
        out['state'] = 'ok'
        out['reason'] = ''
    return out


def _label(value):
    return str(value).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def prometheus_text(statuses, pool, dest_pool):
    """Pure: node_exporter textfile-collector metrics for the statuses."""
    lines = [
        '# HELP ceph_rbd_backup_newest_common_age_seconds Age of the newest snapshot present on both sides.',
        '# TYPE ceph_rbd_backup_newest_common_age_seconds gauge',
    ]
    for s in statuses:
        labels = 'pool="%s",dest_pool="%s",image="%s"' % (_label(pool), _label(dest_pool), _label(s['image']))
        age = s['age_seconds'] if s['age_seconds'] is not None else -1
        lines.append('ceph_rbd_backup_newest_common_age_seconds{%s} %d' % (labels, age))
    for metric, key, help_text in (
            ('ceph_rbd_backup_source_snapshots', 'source_snapshots', 'Prefixed snapshots on the source image.'),
            ('ceph_rbd_backup_dest_snapshots', 'dest_snapshots', 'Prefixed snapshots on the backup image.')):
        lines.append('# HELP %s %s' % (metric, help_text))
        lines.append('# TYPE %s gauge' % metric)
        for s in statuses:
            labels = 'pool="%s",dest_pool="%s",image="%s"' % (_label(pool), _label(dest_pool), _label(s['image']))
            lines.append('%s{%s} %d' % (metric, labels, s[key]))
    lines.append('# HELP ceph_rbd_backup_state 0 ok, 1 warning, 2 critical.')
    lines.append('# TYPE ceph_rbd_backup_state gauge')
    for s in statuses:
        labels = 'pool="%s",dest_pool="%s",image="%s"' % (_label(pool), _label(dest_pool), _label(s['image']))
        lines.append('ceph_rbd_backup_state{%s} %d' % (labels, STATES.index(s['state'])))
    return '\n'.join(lines) + '\n'
