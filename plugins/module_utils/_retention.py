# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure retention: which snapshots a policy keeps.

A policy is ``{last: N, hourly: N, daily: N, weekly: N, monthly: N, yearly: N}``
(all optional, non-negative).  A snapshot is kept if *any* rule keeps it:

- ``last: N`` keeps the N newest snapshots;
- a bucket rule ``daily: N`` keeps the newest snapshot of each of the N newest
  days that have a snapshot (restic/sanoid semantics), likewise per hour, ISO
  week, month and year (UTC);
- every name in ``keep`` (the replication base) is kept whatever the policy says.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

RULES = ('last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly')


def validate_policy(policy: Any) -> Tuple[Optional[Dict[str, int]], Optional[str]]:
    """Return (normalized policy, None) or (None, error message)."""
    if policy is None:
        return None, 'a retention policy is required'
    if not isinstance(policy, dict):
        return None, 'retention must be a dict like {last: 3, daily: 7}, got %r' % (policy,)
    unknown = sorted(set(policy) - set(RULES))
    if unknown:
        return None, 'unknown retention rule(s) %s; allowed: %s' % (', '.join(map(str, unknown)), ', '.join(RULES))
    out = {}
    for rule in RULES:
        value = policy.get(rule)
        if value is None:
            continue
        text = value.strip() if isinstance(value, str) else None
        if isinstance(value, bool) or not (isinstance(value, int) or (text and re.match(r'^-?[0-9]+$', text))):
            return None, 'retention %s must be a whole number, got %r' % (rule, value)
        number = int(value)
        if number < 0:
            return None, 'retention %s must not be negative, got %d' % (rule, number)
        out[rule] = number
    if not out:
        return None, 'retention policy %r keeps nothing: give at least one of %s' % (policy, ', '.join(RULES))
    return out, None


def bucket_key(when: datetime.datetime, rule: str) -> Tuple[int, ...]:
    """The bucket a UTC datetime falls into for one rule."""
    if rule == 'hourly':
        return (when.year, when.month, when.day, when.hour)
    if rule == 'daily':
        return (when.year, when.month, when.day)
    if rule == 'weekly':
        iso = when.isocalendar()
        return (iso[0], iso[1])
    if rule == 'monthly':
        return (when.year, when.month)
    if rule == 'yearly':
        return (when.year,)
    raise ValueError('not a bucket rule: %s' % rule)


def select(snaps: List[Dict[str, Any]], policy: Dict[str, int], keep: Iterable[str] = ()) -> Dict[str, Any]:
    """Decide keep/remove for ``snaps`` = [(name, datetime or None)] ordered oldest first.

    Returns ``(kept, removed)``: ``kept`` maps each kept name to the rules that keep
    it; ``removed`` lists the names to remove, oldest first.  A snapshot with no
    known time is only kept by ``last`` or ``keep``.
    """
    kept = {}

    def mark(name, why):
        kept.setdefault(name, []).append(why)

    newest_first = list(reversed(snaps))
    for name, _when in newest_first[:policy.get('last', 0)]:
        mark(name, 'last')
    for rule in RULES[1:]:
        count = policy.get(rule, 0)
        if not count:
            continue
        seen = []
        for name, when in newest_first:
            if when is None:
                continue
            key = bucket_key(when, rule)
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            mark(name, rule)
    names = set(n for n, _w in snaps)
    for name in keep or ():
        if name in names:
            mark(name, 'keep')
    removed = [n for n, _w in snaps if n not in kept]
    return kept, removed
