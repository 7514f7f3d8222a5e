# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure snapshot logic: naming, parsing, base selection and the transfer plan.

No I/O here.  A *snapshot* is a dict as ``rbd snap ls --format json`` prints it
(at least ``id`` and ``name``; ``timestamp`` optional).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import re
from typing import Any, Dict, Iterable, List, Optional

STAMP_FORMAT = '%Y%m%dT%H%M%SZ'
_STAMP_RE = re.compile(r'(\d{8}T\d{6}Z)$')
# rbd's own timestamp format in `snap ls --format json`, e.g. "Thu Nov 26 11:40:59 2026"
RBD_TIME_FORMAT = '%a %b %d %H:%M:%S %Y'
# Characters a snapshot name cannot carry through an rbd spec or our own quoting.
_BAD_SNAP_CHARS = re.compile(r'[@/\x00-\x1f]')

ACTION_INITIAL = 'initial'
ACTION_INCREMENTAL = 'incremental'
ACTION_UP_TO_DATE = 'up_to_date'
ACTION_REBUILD = 'rebuild'


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def make_name(prefix: str, now: Optional[datetime.datetime] = None) -> str:
    """``<prefix><UTC timestamp to the second>``, e.g. ``backup-20261126T114059Z``."""
    now = now or utcnow()
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc)
    return prefix + now.strftime(STAMP_FORMAT)


def validate_snapshot_name(name: str) -> Optional[str]:
    """Return an error string, or None if ``name`` is usable as an rbd snapshot name."""
    if not name:
        return 'a snapshot name must not be empty'
    if _BAD_SNAP_CHARS.search(name):
        return 'snapshot name %r must not contain "@", "/" or control characters' % name
    return None


def parse_stamp(name: str, prefix: str) -> Optional[datetime.datetime]:
    """The UTC time encoded in a prefixed snapshot name, or None."""
    if not name.startswith(prefix):
        return None
    m = _STAMP_RE.search(name[len(prefix):])
    if not m or len(name) - len(prefix) != len(m.group(1)):
        return None
    try:
        return datetime.datetime.strptime(m.group(1), STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def snapshot_time(snap: Dict[str, Any], prefix: str) -> Optional[datetime.datetime]:
    """When a snapshot was taken: from its name when it carries our stamp, else rbd's timestamp.

    rbd prints its timestamp in the cluster host's local time zone; our own names are
    always UTC, so only foreign-named snapshots depend on it.
    """
    t = parse_stamp(snap['name'], prefix)
    if t is not None:
        return t
    ts = snap.get('timestamp')
    if ts:
        try:
            return datetime.datetime.strptime(ts, RBD_TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            pass
    return None


def with_prefix(snaps: Iterable[Dict[str, Any]], prefix: str) -> List[Dict[str, Any]]:
    """The snapshots whose name starts with ``prefix``, ordered by id (oldest first)."""
    return sorted((s for s in snaps if s['name'].startswith(prefix)), key=lambda s: s['id'])


def newest(snaps: Iterable[Dict[str, Any]], prefix: str) -> Optional[str]:
    """Name of the newest prefixed snapshot (highest id), or None."""
    own = with_prefix(snaps, prefix)
    return own[-1]['name'] if own else None


def choose_base(source_snaps: List[Dict[str, Any]], dest_names: Iterable[str], prefix: str,
                target: Optional[str] = None) -> Optional[str]:
    """The newest prefixed snapshot that exists on both sides and is older than ``target``.

    Ordered by snapshot id on the source (creation order), never by date arithmetic:
    skipped days and several runs a day both work.  Returns a name or None.
    """
    dest_names = set(dest_names)
    target_id = None
    if target is not None:
        for s in source_snaps:
            if s['name'] == target:
                target_id = s['id']
    best = None
    for s in with_prefix(source_snaps, prefix):
        if target_id is not None and s['id'] >= target_id:
            continue
        if s['name'] == target:
            continue
        if s['name'] in dest_names:
            best = s['name']
    return best


def plan_transfer(source_snaps: List[Dict[str, Any]], dest_snaps: Optional[List[Dict[str, Any]]], prefix: str,
                  target: str) -> Dict[str, Optional[str]]:
    """What bringing the destination up to ``target`` takes.

    ``dest_snaps`` is None when the destination image does not exist.
    Returns ``dict(action=..., base=...)``; the action is one of
    initial (no destination image), up_to_date (target already there),
    incremental (from a common base) and rebuild (the destination exists but
    shares no snapshot with the source: it must be rebuilt, not overwritten).
    """
    if dest_snaps is None:
        return dict(action=ACTION_INITIAL, base=None)
    dest_names = [s['name'] for s in dest_snaps]
    if target in dest_names:
        return dict(action=ACTION_UP_TO_DATE, base=target)
    base = choose_base(source_snaps, dest_names, prefix, target)
    if base is None:
        return dict(action=ACTION_REBUILD, base=None)
    return dict(action=ACTION_INCREMENTAL, base=base)


def aside_name(image: str, now: Optional[datetime.datetime] = None) -> str:
    """Where a destination image that must be rebuilt is renamed to (kept, never deleted)."""
    return '%s.replaced-%s' % (image, (now or utcnow()).strftime(STAMP_FORMAT))


def rebuild_name(image: str) -> str:
    """The temporary name a rebuilt destination image is imported under."""
    return '%s.rebuilding' % image


def orphaned_names(source_names: Iterable[str], dest_names: Iterable[str]) -> List[str]:
    """Pure: destination images whose source image is gone (our own rebuild leftovers excepted)."""
    source = set(source_names)
    return sorted(n for n in dest_names
                  if n not in source and '.replaced-' not in n and not n.endswith('.rebuilding'))
