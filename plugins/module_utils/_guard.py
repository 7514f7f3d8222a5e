# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure: which remote commands the ssh forced command (files/rbd-ssh-guard) lets through.

A pull-mode backup host needs only read-only rbd calls on the source: ``ls``, ``info``, ``snap ls``,
``diff`` and ``export-diff`` to stdout (optionally piped into ``zstd``).  Anything else - another
program, a write, a shell construct outside the one pipeline form we send - is refused.

The guard accepts exactly the strings our client builds (``_rbd.remote_command`` and
``_stream.remote_pipeline``) and fails closed on everything else:

- the command must be the canonical ``shlex.quote`` rendering of its words (so is the script of the
  ``bash -o pipefail -c`` form, word for word: no shell syntax can hide in it);
- each option is one we send, for the subcommand we send it with, at most once, as a separate word
  followed by its value (no ``--opt=value``, no short options, no ``--``);
- no value starts with ``-``: ceph's own argv parser (global_init) picks ``--<config-option>[=value]``
  out of *any* position, so ``rbd --pool --log-file=/x ls`` would make librados write where the caller
  wants; an image, pool, namespace or snapshot name starting with ``-`` is therefore refused too;
- ``--conf``/``--keyring`` must be plain absolute paths (``[A-Za-z0-9._+-]`` components, no ``.``/``..``,
  not under /dev, /proc or /sys): no ``/dev/stdin`` or ``/proc/self/fd/0`` conf fed by the caller, no
  ``$meta`` expansion, no comma list; ``--id``/``--cluster`` are plain names (they become parts of
  paths); timeouts are digits; ``--format`` is json, plain or xml;
- the zstd stage is exactly ``zstd -q -c -LEVEL -T0``; the whole command is at most MAX_COMMAND
  characters and contains no NUL.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import shlex

READ_ONLY = (('ls',), ('info',), ('snap', 'ls'), ('diff',), ('export-diff',))

# Linux refuses an argument or environment string longer than this (MAX_ARG_STRLEN - 1): sshd could not
# even pass a longer SSH_ORIGINAL_COMMAND, and bash could not be given a longer script.
MAX_COMMAND = 131071

_PATH_COMPONENT = re.compile(r'[A-Za-z0-9._+-]+\Z')
_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}\Z')
_DIGITS = re.compile(r'[0-9]{1,10}\Z')
_ZSTD_LEVEL = re.compile(r'-(0|[1-9][0-9]?)\Z')


def _plain_path(value):
    if not value.startswith('/') or len(value) > 4096:
        return False
    parts = value[1:].split('/')
    if parts[0] in ('dev', 'proc', 'sys'):
        return False
    return all(_PATH_COMPONENT.match(p) and p not in ('.', '..') for p in parts)


def _any_name(value):
    """An image, pool, namespace or snapshot name: anything (our client quotes it) except a leading '-'."""
    return not value.startswith('-')


# option -> check of its value
_VALUE_CHECK = {
    '--cluster': _NAME.match,
    '--conf': _plain_path,
    '--id': _NAME.match,
    '--keyring': _plain_path,
    '--rados-osd-op-timeout': _DIGITS.match,
    '--rados-mon-op-timeout': _DIGITS.match,
    '--client-mount-timeout': _DIGITS.match,
    '--format': ('json', 'plain', 'xml').__contains__,
    '--pool': _any_name,
    '--namespace': _any_name,
    '--image': _any_name,
    '--snap': _any_name,
    '--from-snap': _any_name,
}
# the client options (client_args) may come with every subcommand
_GLOBAL = ('--cluster', '--conf', '--id', '--keyring', '--rados-osd-op-timeout', '--rados-mon-op-timeout',
           '--client-mount-timeout')
# subcommand -> (options with a value, value-less flags) we send with it
_PER_COMMAND = {
    ('ls',): (('--pool', '--namespace', '--format'), ()),
    ('info',): (('--pool', '--namespace', '--image', '--snap', '--format'), ()),
    ('snap', 'ls'): (('--pool', '--namespace', '--image', '--format'), ()),
    ('diff',): (('--pool', '--namespace', '--image', '--snap', '--from-snap', '--format'), ('--whole-object',)),
    ('export-diff',): (('--pool', '--namespace', '--image', '--snap', '--from-snap'),
                       ('--whole-object', '--no-progress')),
}
_WITH_VALUE = frozenset(_VALUE_CHECK)
_FLAGS = frozenset(('--whole-object', '--no-progress'))


def _render(words):
    return ' '.join(shlex.quote(w) for w in words)


def _split_canonical(text):
    """The words of ``text`` if it is exactly their shlex.quote rendering, else None."""
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    return words if words and _render(words) == text else None


def _rbd_ok(argv, subcommands=READ_ONLY):
    if not argv or argv[0] != 'rbd':
        return False
    words, options, flags = [], {}, set()
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in _FLAGS:
            if a in flags:
                return False                    # repeated
            flags.add(a)
            i += 1
        elif a in _WITH_VALUE:
            if a in options or i + 1 == len(argv):
                return False                    # repeated, or no value
            options[a] = argv[i + 1]            # checked below: no value may start with '-'
            i += 2
        elif a.startswith('-') and a != '-':
            return False                        # any other option, --opt=value, short options, --
        else:
            words.append(a)
            i += 1
    for sub in subcommands:
        if tuple(words[:len(sub)]) != sub:
            continue
        with_value, allowed_flags = _PER_COMMAND[sub]
        if not flags.issubset(allowed_flags):
            return False
        for opt, value in options.items():
            if (opt not in with_value and opt not in _GLOBAL) or not _VALUE_CHECK[opt](value):
                return False
        if '--pool' not in options or (sub != ('ls',) and '--image' not in options):
            return False
        rest = words[len(sub):]
        # export-diff writes only to stdout ('-'); the others take no positional arguments from us
        return rest == ['-'] if sub == ('export-diff',) else rest == []
    return False


def _zstd_ok(argv):
    return len(argv) == 5 and argv[:3] == ['zstd', '-q', '-c'] and bool(_ZSTD_LEVEL.match(argv[3])) \
        and argv[4] == '-T0'


def allowed(command):
    """True when ``command`` (SSH_ORIGINAL_COMMAND) is a read-only rbd call we send, else False."""
    if not command or len(command) > MAX_COMMAND or '\0' in command:
        return False
    argv = _split_canonical(command)
    if argv is None:
        return False
    if argv[0] != 'bash':
        return _rbd_ok(argv)
    if len(argv) != 5 or argv[1:4] != ['-o', 'pipefail', '-c']:
        return False
    # bash -o pipefail -c '<rbd export-diff ... - | zstd -q -c -N -T0': both stages rendered word by
    # word with shlex.quote, so bash parses the script into exactly these words.
    try:
        words = shlex.split(argv[4])
    except ValueError:
        return False
    if len(words) < 7 or words[-6] != '|':
        return False
    first, second = words[:-6], words[-5:]
    if _render(first) + ' | ' + _render(second) != argv[4]:
        return False
    return _zstd_ok(second) and _rbd_ok(first, subcommands=(('export-diff',),))
