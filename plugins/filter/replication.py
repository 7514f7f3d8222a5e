# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the rbd_replicate role uses to pass results between steps and to summarize them.

They are pure functions over registered module results, so the role keeps no logic of its own.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.ceph_rbd.backup.plugins.module_utils._hooks import CRASH
from ansible_collections.ceph_rbd.backup.plugins.module_utils._retention import validate_policy
from ansible_collections.ceph_rbd.backup.plugins.module_utils._snapshots import orphaned_names
from ansible_collections.ceph_rbd.backup.plugins.module_utils._validate import (
    ROLE_RANGES, range_problems as _range_problems,
)

STEPS = ('list', 'snapshot', 'transfer', 'verify_source', 'verify_dest', 'prune_source', 'prune_dest')
# what rbd_snapshot says of an image of a consistency group: its consistency (CRASH when the freeze failed, with
# freeze_error) and thaw_error when the thaw failed
_HOOK_KEYS = ('consistency', 'freeze_error', 'thaw_error')


def verify_item(result):
    """A transfer or verify result -> an images element for rbd_extent_verify."""
    if 'from_snapshot' in result:
        base = result.get('from_snapshot')
    else:
        base = result.get('base') if result.get('action') == 'incremental' else None
    return dict(image=result['image'], snapshot=result.get('snapshot'), from_snapshot=base)


# Transfer actions after which the destination holds the result's snapshot.
_LANDED = ('initial', 'incremental', 'rebuild', 'up_to_date')
_SENT = ('initial', 'incremental', 'rebuild')


def images_to_verify(results, method):
    """The transfer results whose destination snapshot the verify step must check, for ``method``.

    ``full`` proves the whole snapshot, so it checks every image the run brought to its snapshot,
    whether or not anything was sent: a backup damaged outside the tool (bit rot, a hand edit of a
    snapshot's objects) is caught on the next night even when the source had no write.  ``data`` and
    ``extents`` prove what was sent, so they check only the images a stream was sent for.
    """
    if method == 'none':
        return []
    ok = [r for r in results or [] if not r.get('failed') and r.get('snapshot')]
    if method == 'full':
        return [r for r in ok if r.get('action') in _LANDED]
    return [r for r in ok if r.get('action') in _SENT and not r.get('unchanged')]


def transfer_item(result):
    """An rbd_snapshot result -> an images element for rbd_diff_transfer that carries what the source told.

    The transfer then does not ask the source (over ssh, in pull mode) for the image's snapshots, nor
    whether anything changed since the base, when the snapshot step already knows.
    """
    item = dict(image=result['image'], snapshot=result.get('snapshot'))
    if result.get('snapshots') is not None:
        item.update(source_snapshots=result['snapshots'], previous=result.get('previous'),
                    unchanged=result.get('unchanged'))
        if result.get('object_size'):
            item['object_size'] = result['object_size']
    return item


def remote_of(other, hostvars=None, ssh=None, ceph=None):
    """The ``remote`` option of rbd_diff_transfer / rbd_replication_status for inventory host ``other``.

    ``ssh`` overrides (host, user, port, key, options, cipher; empty = not set) win over the other host's
    ``ansible_host``, ``ansible_user`` and ``ansible_port``; the host defaults to its inventory name.
    ``ceph`` names its cluster as it is on that host.  Empty values are left out (the module's defaults).
    ``helpers`` false in ``ssh`` gives ``helpers: false`` (no librbd helpers there: the rbd CLI, no warning).
    """
    no_helpers = _is_false((ssh or {}).get('helpers'))
    ssh = dict((k, v) for k, v in (ssh or {}).items() if _is_set(v) and k != 'helpers')
    hv = hostvars or {}
    remote = dict(host=ssh.get('host') or hv.get('ansible_host') or other,
                  user=ssh.get('user') or hv.get('ansible_user'), port=ssh.get('port') or hv.get('ansible_port'),
                  key=ssh.get('key'), options=list(ssh.get('options') or []), cipher=ssh.get('cipher'),
                  ceph=dict((k, v) for k, v in (ceph or {}).items() if _is_set(v)))
    remote = dict((k, v) for k, v in remote.items() if _is_set(v))
    if no_helpers:
        remote['helpers'] = False
    return remote


def hook_groups(specs, hostvars=None, ssh=None):
    """``rbd_replicate_consistency_groups`` -> rbd_snapshot's ``groups``: a spec's ``host`` (an inventory name;
    the hooks run there over ssh, reached like :func:`remote_of` reaches a host) becomes ``remote``."""
    out = []
    for spec in specs or []:
        group = dict((k, v) for k, v in spec.items() if k != 'host')
        if spec.get('host'):
            hv = hostvars[spec['host']] if hostvars is not None and spec['host'] in hostvars else {}
            remote = remote_of(spec['host'], hv, dict((k, v) for k, v in (ssh or {}).items()
                                                      if k not in ('host', 'cipher', 'helpers')))
            group['remote'] = remote
        out.append(group)
    return out


def _is_false(value):
    """Pure: whether a role variable says false (a bool, or the string a template may leave)."""
    return value is False or (isinstance(value, str) and value.strip().lower() in ('false', 'no', 'off', '0'))


def _is_set(value):
    """Pure: whether a role variable is set (its defaults are '', 0 and [], and 0 may arrive as '0')."""
    return value not in (None, '', 0, '0', [], {})


def dest_hosts(value, groups=None):
    """``rbd_replicate_dest_host`` -> the list of backup hosts: a host, a list of hosts, or a group's name."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if groups and value in groups:
        return list(groups[value])
    return [value] if value else []


def share_members(lock, hostvars, play_hosts, var='_rbd_replicate_lock'):
    """The hosts of the play that share this host's pool: those whose lock step (registered as ``var``)
    reports the same pool on a cluster with the same fsid, sorted.  Hosts that failed or are unreachable
    are not in ``play_hosts`` (Ansible's ``ansible_play_hosts``), so the others carry their images."""
    fsid, pool = (lock or {}).get('fsid'), (lock or {}).get('pool')
    if not fsid:
        return []
    return sorted(h for h in play_hosts
                  if (hostvars[h].get(var) or {}).get('fsid') == fsid and (hostvars[h].get(var) or {}).get('pool') == pool)


def pool_sides(entry, settings, hostvars, source_host, members=None):
    """One ``rbd_replicate_pools`` entry -> everything the role's steps need to name both sides of it.

    ``settings``: the role's variables (transport, dest_host, source_ceph, dest_ceph, remote_ceph, direct_ceph,
    verify, verify_source, ssh overrides).  In pull mode the transfer runs on the destination host and reaches
    the source host; in push mode the reverse; in direct mode it runs on the destination host and reaches the
    source cluster itself with ``direct_ceph`` (no other host: ``remote`` is empty).  ``dest_host`` may list several backup hosts: the ``members``
    sharing the pool (see :func:`share_members`) take them in turn, and the first names the destination in
    the hold keys (so a pool's holds do not depend on which backup host carried an image).
    """
    s = settings
    dests = dest_hosts(s['dest_host'])
    members = sorted(members or [])
    dest = dests[members.index(source_host) % len(dests)] if source_host in members else dests[0]
    direct = s['transport'] == 'direct'
    pull = s['transport'] == 'pull'
    on_dest = pull or direct
    other = source_host if pull else dest
    local_ceph = s.get('dest_ceph') if on_dest else s.get('source_ceph')
    remote_ceph = s.get('remote_ceph') or (s.get('source_ceph') if pull else s.get('dest_ceph'))
    dst_pool = entry.get('dest_pool') or entry['pool']
    dst_ns = entry.get('dest_namespace') or entry.get('namespace') or None
    in_stream = s['verify'] in ('data', 'extents') and s.get('verify_source', 'stream') == 'stream'
    return dict(src_pool=entry['pool'], src_ns=entry.get('namespace') or None, dst_pool=dst_pool, dst_ns=dst_ns,
                pull=pull, direct=direct, dest_host=dest, transfer_host=dest if on_dest else source_host,
                local_ceph=local_ceph or {},
                remote={} if direct else remote_of(other, hostvars[other] if hostvars is not None and other in hostvars else {},
                                                   s.get('ssh'), remote_ceph),
                direct_ceph=dict((k, v) for k, v in (s.get('direct_ceph') or {}).items() if _is_set(v)) if direct else {},
                in_stream=in_stream, digest=s['verify'] if in_stream else 'none',
                # the destination's name in the source's hold keys: pruning for another destination of the
                # same source never removes this one's base
                hold='%s/%s%s' % (dests[0], dst_pool, '/' + dst_ns if dst_ns else ''))


def prune_items(results, side='source', check_mode=False):
    """Transfer results -> rbd_snapshot_prune images: each keeps what its transfer says (``keep``: the new
    common base; in check mode also the current one).  In check mode a destination image that would be
    created or rebuilt does not exist yet: nothing to prune there."""
    out = []
    for r in results or []:
        if r.get('failed'):
            continue
        if side == 'dest' and check_mode and r.get('action') in ('initial', 'rebuild'):
            continue
        keep = r.get('keep') if r.get('keep') is not None else keep_item(r, check_mode)['keep']
        out.append(dict(image=r['image'], keep=[k for k in keep if k]))
    return out


def keep_item(result, check_mode=False):
    """A transfer result -> an images element for rbd_snapshot_prune that keeps the newest common snapshot.

    In check mode the new snapshot does not exist yet, so the current base is kept as well.
    """
    keep = [result.get('snapshot')]
    if check_mode and result.get('base'):
        keep.append(result['base'])
    return dict(image=result['image'], keep=[k for k in keep if k])


def replication_summary(steps, pool, dest_pool=None, host=None, orphans=True):
    """Per-image summary of one pool's run; an image failed if any step failed for it.

    ``host`` (the source host that carried the images) goes into each entry; with several hosts sharing the
    pool only one of them reports the orphaned backups (``orphans``), against every image the pool has.
    """
    per = {}
    order = []

    def entry(image):
        if image not in per:
            order.append(image)
            per[image] = dict(image=image, pool=pool, dest_pool=dest_pool or pool,
                              label='%s/%s' % (pool, image), action=None, base=None, snapshot=None,
                              bytes=0, seconds=0.0, verified=None, removed_source=[], removed_dest=[],
                              failed=False, errors=[])
            if host:
                per[image]['host'] = host
        return per[image]

    # the source's images: listed by the snapshot step (or a separate list step)
    listing = steps.get('list') or steps.get('snapshot') or {}
    source_names = listing.get('names') or []
    for name in source_names:
        entry(name)
    every = listing.get('listed') or source_names
    for name in orphaned_names(every, (steps.get('dest_list') or {}).get('names') or []) if orphans else []:
        e = entry(name)
        e['action'] = 'orphaned'
        e['note'] = 'the source image is gone; its backup is kept (never deleted by this role)'
    for step in STEPS[1:]:
        res = steps.get(step) or {}
        if res.get('skipped'):
            continue
        for r in res.get('images') or []:
            e = entry(r['image'])
            if r.get('failed'):
                e['failed'] = True
                e['errors'].append('%s: %s' % (step, r.get('msg')))
                continue
            if step == 'snapshot':
                e['snapshot'] = r.get('snapshot')
                e.update((k, r[k]) for k in _HOOK_KEYS if r.get(k))
            elif step == 'transfer':
                for k in ('action', 'base', 'snapshot', 'bytes', 'data_bytes', 'seconds', 'rate',
                          'rolled_back', 'recovered', 'replaced_image', 'estimated', 'unchanged'):
                    if k in r:
                        e[k] = r[k]
            elif step == 'verify_dest':
                e['verified'] = bool(r.get('match'))
            elif step == 'prune_source':
                e['removed_source'] = r.get('removed') or []
            elif step == 'prune_dest':
                e['removed_dest'] = r.get('removed') or []
        if res.get('failed') and not res.get('images'):
            for image in order:
                per[image]['failed'] = True
                per[image]['errors'].append('%s: %s' % (step, res.get('msg')))
    return [per[i] for i in order]


def scrub_items(backups, sources, which='oldest', sample=0, prefix='backup-'):
    """rbd_image_info results of both sides -> verify items for the common snapshot to scrub per image.

    ``which`` picks the oldest or newest common prefixed snapshot; ``sample`` > 0 takes that many images,
    spread evenly over the sorted list (deterministic, so a rotation can be added by the caller).
    """
    by_name = dict((s['image'], [x['name'] for x in s.get('snapshots') or []]) for s in sources)
    items = []
    for b in sorted(backups, key=lambda i: i['image']):
        src = by_name.get(b['image'])
        if src is None:
            continue
        common = [x['name'] for x in b.get('snapshots') or [] if x['name'] in src and x['name'].startswith(prefix)]
        if common:
            items.append(dict(image=b['image'], snapshot=common[0] if which == 'oldest' else common[-1]))
    if sample and sample < len(items):
        step = len(items) / float(sample)
        items = [items[int(i * step)] for i in range(sample)]
    return items


def retention_error(policy):
    """'' when the retention policy is valid, else why not (checked before the run changes anything)."""
    return validate_policy(policy)[1] or ''


def range_problems(variables):
    """The role's numeric variables (by name) -> why any is out of the range of the option it is passed to: one
    message per such value, naming it (``_validate.ROLE_RANGES``); empty when all are fine."""
    return _range_problems(variables or {}, ROLE_RANGES)


def replication_totals(summary):
    """The set_stats payload: counts and totals plus the per-image list."""
    failed = [s for s in summary if s.get('failed')]
    return dict(images=len(summary), ok=len(summary) - len(failed), failed=len(failed),
                orphaned=[s['label'] for s in summary if s.get('action') == 'orphaned'],
                failed_images=[s['label'] for s in failed],
                crash_consistent=dict((s['label'], s.get('freeze_error')) for s in summary
                                      if s.get('consistency') == CRASH),
                thaw_failed=dict((s['label'], s['thaw_error']) for s in summary if s.get('thaw_error')),
                bytes=sum(s.get('bytes') or 0 for s in summary),
                seconds=round(sum(s.get('seconds') or 0 for s in summary), 3),
                per_image=summary)


def _hooks_note(s):
    """Pure: what a summary line adds when the image's freeze or thaw hook failed ('' when neither did)."""
    note = ''
    if s.get('consistency') == CRASH:
        note += ' - only crash-consistent: %s' % s.get('freeze_error')
    if s.get('thaw_error'):
        note += ' - %s (the guest may still be frozen)' % s['thaw_error']
    return note


def replication_report(summary):
    """One line per image for the play's output."""
    lines = []
    for s in summary:
        if s.get('failed'):
            lines.append('%s: FAILED %s%s' % (s['label'], ' | '.join(s['errors']), _hooks_note(s)))
            continue
        if s.get('action') == 'orphaned':
            lines.append('%s: orphaned - %s' % (s['label'], s['note']))
            continue
        line = '%s: %s %s..%s %d bytes %.1fs' % (s['label'], s.get('action'), s.get('base') or '-',
                                                 s.get('snapshot'), s.get('bytes') or 0, s.get('seconds') or 0)
        if s.get('verified') is not None:
            line += ' verified' if s['verified'] else ' NOT VERIFIED'
        elif s.get('unchanged'):
            line += ' unchanged'
        if s.get('removed_source') or s.get('removed_dest'):
            line += ' pruned %d/%d' % (len(s.get('removed_source') or []), len(s.get('removed_dest') or []))
        lines.append(line + _hooks_note(s))
    return lines


class FilterModule(object):
    def filters(self):
        return dict(replication_summary=replication_summary, replication_totals=replication_totals,
                    replication_report=replication_report, verify_item=verify_item, keep_item=keep_item,
                    transfer_item=transfer_item, images_to_verify=images_to_verify, remote_of=remote_of,
                    pool_sides=pool_sides, prune_items=prune_items, dest_hosts=dest_hosts,
                    share_members=share_members, hook_groups=hook_groups,
                    retention_error=retention_error, range_problems=range_problems, scrub_items=scrub_items)
