# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Consistent snapshots: groups of images snapshotted in one freeze window, with freeze and thaw hooks.

A *group spec* says which images belong together - a regular expression over image names (images whose
captures are equal form one group, e.g. every disk of one Proxmox VM with ``vm-(?P<vmid>\\d+)-disk-\\d+``)
or an rbd group that exists - and the commands run before and after their snapshots (argv lists whose
words may name the captures as ``{vmid}``, and ``{group}``; never a shell string, so an image name cannot
inject anything). Per group: freeze, snapshot every image of the group at once, thaw - thaw always runs,
also when a snapshot failed or the freeze timed out. A freeze that fails leaves the images
crash-consistent (snapshotted anyway, and said so) unless the spec asks to skip them.

The grouping, the command words and the warnings are pure functions; :func:`run_group` acts.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import string
from typing import Any, Callable, Dict, List, Optional, Sequence

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _remote
from ansible_collections.ceph_rbd.backup.plugins.module_utils._parallel import run_all
from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import quote, run
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import ssh_argv

FROZEN, GROUPED, CRASH = 'frozen', 'grouped', 'crash-consistent'

# where a group's hooks run over ssh (rbd_snapshot's groups[].remote): a remote without its cluster
REMOTE_SPEC = dict((k, v) for k, v in _remote.REMOTE_SPEC.items() if k not in ('cipher', 'helpers', 'ceph'))


class Group:
    """Images that are snapshotted together, and the spec (or None: an image on its own, no hooks)."""

    def __init__(self, key: str, images: List[str], spec: Optional[Dict[str, Any]] = None,
                 values: Optional[Dict[str, str]] = None):
        self.key, self.images, self.spec, self.values = key, images, spec, values or {}

    def __repr__(self):
        return 'Group(%r, %r)' % (self.key, self.images)


def placeholders(argv: Sequence[str]) -> List[str]:
    """Pure: the ``{name}`` placeholders the words of ``argv`` use."""
    return sorted(set(f for w in argv for _t, f, _s, _c in string.Formatter().parse(w) if f))


def spec_problem(spec: Dict[str, Any]) -> Optional[str]:
    """Pure: why a group spec cannot be used, or None (checked before anything changes)."""
    if bool(spec.get('match')) == bool(spec.get('rbd_group')):
        return 'a group needs exactly one of match and rbd_group: %r' % (spec,)
    names = {'group'}
    if spec.get('match'):
        try:
            names |= set(re.compile(spec['match']).groupindex)
        except re.error as e:
            return 'match %r is not a regular expression: %s' % (spec['match'], e)
    for hook in ('freeze', 'thaw'):
        try:
            unknown = [p for p in placeholders(spec.get(hook) or []) if p not in names]
        except ValueError as e:
            return '%s %r: %s' % (hook, spec.get(hook), e)
        if unknown:
            return '%s %r names %s, but only %s can be filled in' % (hook, spec.get(hook), ', '.join(
                '{%s}' % u for u in unknown), ', '.join('{%s}' % n for n in sorted(names)))
    return None


def group_images(names: Sequence[str], specs: Sequence[Dict[str, Any]],
                 rbd_groups: Optional[Dict[str, List[str]]] = None) -> List[Group]:
    """Pure: ``names`` split into groups, in the order of their first image.

    The first spec an image belongs to wins: ``rbd_group`` specs by the group's members (``rbd_groups``:
    group name -> its images), ``match`` specs by a full match of the name (images with equal named
    captures - or equal unnamed ones - form one group). Other images are groups of their own.
    """
    groups, by_key = [], {}
    for name in names:
        spec, key, values = None, 'image:' + name, {}
        for i, s in enumerate(specs):
            if s.get('rbd_group') and name in (rbd_groups or {}).get(s['rbd_group'], []):
                spec, key, values = s, 'rbd_group:%s' % s['rbd_group'], dict(group=s['rbd_group'])
                break
            m = re.fullmatch(s['match'], name) if s.get('match') else None
            if m:
                captured = m.groupdict() or dict(('%d' % (j + 1), g) for j, g in enumerate(m.groups()))
                label = '-'.join(v or '' for _k, v in sorted(captured.items())) or name
                spec, key, values = s, 'spec%d:%s' % (i, label), dict(captured, group=label)
                break
        if key not in by_key:
            by_key[key] = Group(key, [], spec, dict((k, v or '') for k, v in values.items()))
            groups.append(by_key[key])
        by_key[key].images.append(name)
    return groups


def hook_argv(template: Sequence[str], values: Dict[str, str], remote: Optional[Dict[str, Any]] = None) -> List[str]:
    """Pure: the argv of a hook, its words filled in; over ssh (one quoted command) when ``remote`` is set."""
    argv = [w.format(**values) for w in template]
    if not remote:
        return argv
    return ssh_argv(remote['host'], remote.get('user'), remote.get('port'), remote.get('key'),
                    remote.get('options')) + [quote(argv)]


def _hook(group: Group, which: str) -> Optional[Dict[str, Any]]:
    """Run the group's freeze or thaw hook: None when it has none, else dict(ok, rc, msg)."""
    template = (group.spec or {}).get(which)
    if not template:
        return None
    argv = hook_argv(template, group.values, group.spec.get('remote'))
    rc, out, err = run(argv, group.spec.get('timeout') or 30)
    msg = '' if rc == 0 else '%s hook %s failed (rc=%d): %s' % (which, quote(argv), rc, (err or out).strip()[-300:])
    return dict(ok=rc == 0, rc=rc, msg=msg)


def hook_warnings(results: Sequence[Optional[Dict[str, Any]]], label: Callable[[str], str] = str) -> List[str]:
    """Pure: the warnings of a run's image results - per group whose freeze failed, its images (``label``
    names them) and that their snapshot is only crash-consistent, with the freeze error; per group whose thaw
    failed, its images and the thaw error (the guest may still be frozen)."""
    groups, order = {}, []
    for r in results:
        if r and (r.get('freeze_error') or r.get('thaw_error')):
            key = r.get('group') or r['image']
            if key not in groups:
                order.append(key)
            groups.setdefault(key, []).append(r)
    out = []
    for key in order:
        first = groups[key][0]
        names = '%s %s' % ('image' if len(groups[key]) == 1 else 'images',
                           ', '.join(label(r['image']) for r in groups[key]))
        if first.get('freeze_error'):
            out.append('%s: snapshot %s is only crash-consistent - %s' % (names, first.get('snapshot'),
                                                                          first['freeze_error']))
        if first.get('thaw_error'):
            out.append('%s: %s - the guest may still be frozen' % (names, first['thaw_error']))
    return out


def run_group(group: Group, work: Callable[[str], Dict[str, Any]], check_mode: bool = False):
    """Freeze, snapshot every image of the group at once (``work(image)``), thaw (always).

    Returns ``[(image, result, error)]``; each result says how consistent its snapshot is (``consistency``)
    and carries the hook failures. In check mode no hook runs (they would change the guests).
    """
    if group.spec is None or check_mode:
        out = run_all(group.images, work, len(group.images))
        if group.spec is not None:
            for _i, r, _e in out:
                if r is not None:
                    r['consistency'] = 'would freeze (%s)' % group.key
        return out
    freeze = _hook(group, 'freeze')
    skip = freeze is not None and not freeze['ok'] and group.spec.get('on_freeze_failure') == 'skip'
    try:
        if skip:
            return [(i, None, RuntimeError('%s; not snapshotted (on_freeze_failure=skip)' % freeze['msg']))
                    for i in group.images]
        out = run_all(group.images, work, len(group.images))
    finally:
        thaw = _hook(group, 'thaw')
    state = GROUPED if freeze is None else FROZEN if freeze['ok'] else CRASH
    for _i, r, _e in out:
        if r is not None:
            r.update(consistency=state, group=group.key, group_images=list(group.images))
            if freeze is not None and not freeze['ok']:
                r['freeze_error'] = freeze['msg']
            if thaw is not None and not thaw['ok']:
                r['thaw_error'] = thaw['msg']
    return out
