# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure: the range of every number the modules and the role take, and the one check of them (issue #22).

Ansible checks that an ``int`` option is a whole number, and ``choices``; nothing checked that it made
sense: ``timeout: 0`` timed every image out, ``max_streams: 0`` became 1 without a word, a negative
``compression_level`` failed mid-stream after the snapshots were taken. Every module calls
:func:`range_problems` on its parameters first thing in ``main()`` (``_module.check_ranges``), before any
lock, snapshot or hook; the role calls it on its variables (filter ``ceph_rbd.backup.range_problems``) in its
first tasks.

A table row names an option by its path in the parameters: ``run_lock.ttl`` is the ``ttl`` of the dict
``run_lock``, ``groups.timeout`` the ``timeout`` of every element of the list ``groups`` (named
``groups[0].timeout`` in the message). An option that is not set (None, or a role variable's "") is not
checked.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
from collections import namedtuple
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.ceph_rbd.backup.plugins.module_utils._status import parse_age

# low and high (None: no upper bound) after ``parse``; ``kind`` says what a value is, for the message
Range = namedtuple('Range', 'low high kind parse')


def whole(value: Any) -> int:
    """Pure: a whole number from an int, an integral float or a string of digits (a template may leave '4');
    ValueError for anything else, a bool too (Ansible's int check lets ``true`` through as 1)."""
    if isinstance(value, bool):
        raise ValueError('a boolean is not a number')
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.match(r'^\s*[-+]?[0-9]+\s*$', value):
        return int(value)
    raise ValueError('not a whole number')


def rate(value: Any) -> int:
    """Pure: bytes per second from a number or a size like 50M (Ansible's human_to_bytes)."""
    if isinstance(value, bool):
        raise ValueError('a boolean is not a rate')
    return human_to_bytes(value if isinstance(value, int) else str(value))


def age(value: Any) -> int:
    """Pure: seconds from a number or an age like 26h (rbd_replication_status's warn_age, crit_age)."""
    if isinstance(value, bool):
        raise ValueError('a boolean is not an age')
    return parse_age(value)


SECONDS = 'a whole number of seconds'
# every call of rbd (and librados' op timeouts) and a stream without progress; a day outlasts any night
TIMEOUT = Range(1, 86400, SECONDS, whole)
# images worked on at once: threads of one process (the monitors batch the commits; more buys nothing)
PARALLEL = Range(1, 1024, 'a whole number', whole)
# data streams at once: each an ssh connection and two rbd processes (and two zstd), on both hosts
STREAMS = Range(1, 64, 'a whole number', whole)
# zstd -1 .. -19 (zstd's own range without --ultra; 0 and negative levels are not what -N says)
ZSTD_LEVEL = Range(1, 19, 'a zstd level', whole)
# how long an image another run may still be importing into is waited for
IMPORT_WAIT = Range(0, 3600, SECONDS, whole)
# the run lock's expiry after its last renewal; a killed run's lock stays for as long, a week at most
LOCK_TTL = Range(1, 604800, SECONDS, whole)
# a freeze or thaw hook; a guest is frozen while its freeze hook runs
HOOK_TIMEOUT = Range(1, 3600, SECONDS, whole)
PORT = Range(1, 65535, 'a TCP port', whole)
# 0 is a file system without a partition table; Linux has at most 256 partitions on a disk
PARTITION = Range(0, 256, 'a partition number', whole)
# 0 would mean no limit (and did, silently)
BWLIMIT = Range(1, None, 'bytes per second (like 50M)', rate)
AGE = Range(0, None, 'an age (seconds, or like 26h)', age)

# every number of every module: the options of one module that another lacks are simply not there
MODULE_RANGES = (
    ('timeout', TIMEOUT),
    ('parallel', PARALLEL),
    ('max_streams', STREAMS),
    ('compression_level', ZSTD_LEVEL),
    ('live_import_wait', IMPORT_WAIT),
    ('bwlimit', BWLIMIT),
    ('ttl', LOCK_TTL),
    ('run_lock.ttl', LOCK_TTL),
    ('remote.port', PORT),
    ('groups.timeout', HOOK_TIMEOUT),
    ('groups.remote.port', PORT),
    ('partition', PARTITION),
    ('warn_age', AGE),
    ('crit_age', AGE),
)

# the role's numbers, as the options they are passed to take them
ROLE_RANGES = (
    ('rbd_replicate_timeout', TIMEOUT),
    ('rbd_replicate_parallel', PARALLEL),
    ('rbd_replicate_streams', STREAMS),          # rbd_diff_transfer's max_streams and rbd_extent_verify's parallel
    ('rbd_replicate_compression_level', ZSTD_LEVEL),
    ('rbd_replicate_bwlimit', BWLIMIT),
    ('rbd_replicate_lock_ttl', LOCK_TTL),
    ('rbd_replicate_ssh_port', Range(0, 65535, "a TCP port (0: the other host's ansible_port, else 22)", whole)),
    ('rbd_replicate_consistency_groups.timeout', HOOK_TIMEOUT),
)


def range_problem(name: str, value: Any, allowed: Range) -> Optional[str]:
    """Pure: why ``value`` is not a valid ``name`` (a message that names it and its range), or None."""
    try:
        number = allowed.parse(value)
    except (ValueError, TypeError, OverflowError):
        number = None
    if number is not None and allowed.low <= number and (allowed.high is None or number <= allowed.high):
        return None
    span = 'at least %d' % allowed.low if allowed.high is None else 'from %d to %d' % (allowed.low, allowed.high)
    return '%s must be %s, %s; got %r' % (name, allowed.kind, span, value)


def values_at(values: Any, path: str, prefix: str = '') -> List[Tuple[str, Any]]:
    """Pure: (name, value) of every value that is set at the dotted ``path`` of ``values``; a list on the way
    is walked element by element (``groups.timeout`` -> ``groups[0].timeout``, ...)."""
    head, _dot, rest = path.partition('.')
    value = values.get(head) if isinstance(values, dict) else None
    name = prefix + head
    if value is None or value == '':
        return []
    if not rest:
        return [(name, value)]
    if isinstance(value, (list, tuple)):
        return [found for i, element in enumerate(value)
                for found in values_at(element, rest, '%s[%d].' % (name, i))]
    return values_at(value, rest, name + '.')


def range_problems(values: Dict[str, Any], table: Sequence[Tuple[str, Range]] = MODULE_RANGES) -> List[str]:
    """Pure: the message of every value in ``values`` (a module's parameters, or the role's variables with
    ``ROLE_RANGES``) that is out of its range, in the order of the table."""
    return [problem for path, allowed in table for name, value in values_at(values, path)
            for problem in [range_problem(name, value, allowed)] if problem]
