# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure: which remote commands the ssh forced command (files/rbd-ssh-guard) lets through.

A pull-mode backup host needs only read-only rbd calls on the source: ``ls``, ``info``, ``snap ls``,
``diff`` and ``export-diff`` (optionally piped into ``zstd``).  Anything
else - another program, a write, a shell construct outside the one pipeline form we send - is refused.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shlex

READ_ONLY = (('ls',), ('info',), ('snap', 'ls'), ('diff',), ('export-diff',))
# global options that take a value, and value-less flags, that our client sends
_WITH_VALUE = ('--cluster', '--conf', '--id', '--keyring', '--rados-osd-op-timeout', '--rados-mon-op-timeout',
               '--client-mount-timeout', '--pool', '--namespace', '--image', '--snap', '--from-snap', '--format')
_FLAGS = ('--no-progress', '--whole-object')


def _rbd_ok(argv):
    if not argv or argv[0] != 'rbd':
        return False
    words = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in _WITH_VALUE:
            i += 2
            continue
        if a in _FLAGS:
            i += 1
            continue
        if a.startswith('-') and a != '-':
            return False
        words.append(a)
        i += 1
    for sub in READ_ONLY:
        if tuple(words[:len(sub)]) == sub:
            rest = words[len(sub):]
            # export-diff writes only to stdout ('-'); the others take no positional arguments from us
            return rest == ['-'] if sub == ('export-diff',) else rest == []
    return False


def allowed(command):
    """True when ``command`` (SSH_ORIGINAL_COMMAND) is a read-only rbd call we send, else False."""
    try:
        argv = shlex.split(command or '')
    except ValueError:
        return False
    if argv[:3] == ['bash', '-o', 'pipefail'] and len(argv) == 5 and argv[3] == '-c':
        stages = argv[4].split(' | ')
        if len(stages) != 2:
            return False
        try:
            first, second = shlex.split(stages[0]), shlex.split(stages[1])
        except ValueError:
            return False
        zstd = second[:1] == ['zstd'] and all(w in ('-q', '-c', '-T0') or (w[:1] == '-' and w[1:].isdigit())
                                              for w in second[1:])
        # the first stage must re-quote to itself: no shell syntax can hide in it
        requoted = ' '.join(shlex.quote(w) for w in first) == stages[0]
        return zstd and requoted and _rbd_ok(first) and 'export-diff' in first
    return _rbd_ok(argv)
