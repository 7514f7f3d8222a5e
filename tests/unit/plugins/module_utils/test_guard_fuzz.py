"""The ssh forced command under attack: property and fuzz tests of ``_guard.allowed`` and of ``files/rbd-ssh-guard``.

Two properties, over thousands of generated SSH_ORIGINAL_COMMAND strings:

(a) every command our client really builds - produced by the client code itself (``Rbd`` through an
    ``SshRunner``, ``stream_diff`` through ``remote_pipeline``) over hostile pool, namespace, image and
    snapshot names - is allowed;
(b) whatever the guard allows is accepted by :func:`oracle`, a strict reading of the command written here
    independently of the guard (its own option table, its own tokenizer for the bash script), and by
    :func:`rbd_and_ceph_view`, a model of how rbd itself (Shell::get_command_spec) and ceph's global_init
    (which picks ``--<config-option>[=value]`` out of any position of argv) read that argv.

A sample of a few hundred inputs is also run through the real guard script, with fake ``rbd``, ``zstd``,
``bash`` and a canary ``pwn`` alone on PATH, each recording its argv: what runs must be exactly what the oracle
read, refused commands must run nothing, and no file may appear.

Names starting with ``-`` are refused by design (see _guard's docstring) and are not generated for (a).
The examples are derandomized (no example database): CI runs the same inputs every time.
"""

import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings, strategies as st
from hypothesis.errors import NoSuchExample

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _guard, _transfer
from ansible_collections.ceph_rbd.backup.plugins.module_utils._guard import allowed
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, SshRunner
from ansible_collections.ceph_rbd.backup.plugins.module_utils._transfer import Side, TransferOptions

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
GUARD_SCRIPT = os.path.join(REPO, 'files', 'rbd-ssh-guard')
GUARD_LIB = os.path.join(REPO, 'plugins', 'module_utils')

COUNTS = {}            # strategy -> [tried, allowed]


def _settings(n, phases=tuple(Phase)):
    return settings(max_examples=n, derandomize=True, database=None, deadline=None, print_blob=False, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _count(kind, was_allowed):
    c = COUNTS.setdefault(kind, [0, 0])
    c[0] += 1
    c[1] += bool(was_allowed)


@pytest.fixture(scope='module', autouse=True)
def _report_counts(request):
    """Print (and keep in pytest's cache) how many inputs were tried and how many the guard let through."""
    t0 = time.monotonic()
    yield
    tried = sum(c[0] for c in COUNTS.values())
    line = 'guard fuzz: %d inputs tried in %.1f s (%s)' % (tried, time.monotonic() - t0, ', '.join(
        '%s %d, %d allowed' % (k, c[0], c[1]) for k, c in sorted(COUNTS.items())))
    if getattr(request.config, 'cache', None) is not None:
        request.config.cache.set('ceph_rbd_backup/guard_fuzz_counts', COUNTS)
    reporter = request.config.pluginmanager.get_plugin('terminalreporter')
    capture = request.config.pluginmanager.get_plugin('capturemanager')
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        sys.stderr.write(line + '\n')


# --------------------------------------------------------------------------------------------------
# The oracle: written from the specification, not from _guard's code.

MAX_ARG_STRLEN = 131072
CLIENT_OPTIONS = {
    '--cluster': 'name', '--conf': 'path', '--id': 'name', '--keyring': 'path',
    '--rados-osd-op-timeout': 'digits', '--rados-mon-op-timeout': 'digits', '--client-mount-timeout': 'digits',
}
VERBS = {   # verb -> (its options with a value, its flags)
    'ls': ({'--pool', '--namespace', '--format'}, set()),
    'info': ({'--pool', '--namespace', '--image', '--snap', '--format'}, set()),
    'snap ls': ({'--pool', '--namespace', '--image', '--format'}, set()),
    'diff': ({'--pool', '--namespace', '--image', '--snap', '--from-snap', '--format'}, {'--whole-object'}),
    'export-diff': ({'--pool', '--namespace', '--image', '--snap', '--from-snap'}, {'--whole-object', '--no-progress'}),
}
ALL_FLAGS = {'--whole-object', '--no-progress'}
ALL_WITH_VALUE = set(CLIENT_OPTIONS).union(*(v[0] for v in VERBS.values()))


def _value_ok(option, value):
    if value[:1] == '-':
        return False        # ceph's argv parser would read it as an option
    kind = CLIENT_OPTIONS.get(option, 'format' if option == '--format' else 'name-anything')
    if kind == 'digits':
        return value.isascii() and value.isdigit() and len(value) <= 10
    if kind == 'format':
        return value in ('json', 'plain', 'xml')
    if kind == 'name':
        return re.fullmatch(r'[A-Za-z0-9_][A-Za-z0-9_.-]*', value) is not None and len(value) < 256
    if kind == 'path':
        parts = value.split('/')
        return (parts[0] == '' and len(parts) > 1 and parts[1] not in ('dev', 'proc', 'sys')
                and all(p not in ('', '.', '..') and re.fullmatch(r'[A-Za-z0-9._+-]+', p) for p in parts[1:]))
    return '\0' not in value


def read_only_rbd(argv, with_options=False):
    """The verb ('ls', 'snap ls', ...) when argv is one of our read-only rbd calls, else None; with
    ``with_options``: (verb, {option: value or None for a flag}, in argv order)."""
    if not argv or argv[0] != 'rbd':
        return None
    rest, seen, positional = list(argv[1:]), {}, []
    while rest:
        word = rest.pop(0)
        if word == '-' or not word.startswith('-'):
            positional.append(word)
        elif word in ALL_FLAGS and word not in seen:
            seen[word] = None
        elif word in ALL_WITH_VALUE and word not in seen and rest and _value_ok(word, rest[0]):
            seen[word] = rest.pop(0)
        else:
            return None
    verb = 'snap ls' if positional[:2] == ['snap', 'ls'] else (positional or [None])[0]
    if verb not in VERBS:
        return None
    with_value, flags = VERBS[verb]
    if any(k not in with_value and k not in flags and k not in CLIENT_OPTIONS for k in seen):
        return None
    if '--pool' not in seen or (verb != 'ls' and '--image' not in seen):
        return None
    if positional[len(verb.split()):] != (['-'] if verb == 'export-diff' else []):
        return None
    return (verb, seen) if with_options else verb


SHELL_PLAIN = set(string.ascii_letters + string.digits + '_@%+=:,./-')


def shell_pipeline(script):
    """The stages (lists of words) of a script made only of plain characters, '...' and "'" quoting, single
    spaces between words and ' | ' between stages - the only shell our client writes - else None."""
    stages, words, word, i = [], [], None, 0
    while i < len(script):
        c = script[i]
        if c == "'":
            j = script.find("'", i + 1)
            if j < 0:
                return None
            word, i = (word or '') + script[i + 1:j], j + 1
        elif script.startswith('"\'"', i):
            word, i = (word or '') + "'", i + 3
        elif c in SHELL_PLAIN:
            word, i = (word or '') + c, i + 1
        elif c == ' ' and word is not None:
            words.append(word)
            word, i = None, i + 1
            if script.startswith('| ', i):
                stages.append(words)
                words, i = [], i + 2
        else:
            return None
    if word is None:
        return None
    return stages + [words + [word]]


def oracle(command):
    """The argvs the guard script would start for ``command`` if it is one of our read-only calls, else None."""
    if '\0' in command or len(command) >= MAX_ARG_STRLEN:
        return None
    try:
        argv = shlex.split(command)           # what files/rbd-ssh-guard execs
    except ValueError:
        return None
    if argv[:1] != ['bash']:
        return [argv] if read_only_rbd(argv) else None
    if len(argv) != 5 or argv[1:4] != ['-o', 'pipefail', '-c']:
        return None
    stages = shell_pipeline(argv[4])
    if not stages or len(stages) != 2:
        return None
    export, zstd = stages
    if read_only_rbd(export) != 'export-diff':
        return None
    if len(zstd) != 5 or zstd[:3] != ['zstd', '-q', '-c'] or zstd[4] != '-T0' \
            or not re.fullmatch(r'-(0|[1-9][0-9]?)', zstd[3]):
        return None
    return [argv, export, zstd]


RBD_SWITCHES = {'whole-object', 'no-progress', 'pretty-format', 'verbose', 'no-error'}
CONFIG_KEYS = {'--keyring', '--rados-osd-op-timeout', '--rados-mon-op-timeout', '--client-mount-timeout'}
CEPH_WITH_VALUE = {'--conf', '-c', '--cluster', '--id', '-i', '--name', '-n', '--keyring', '-k',
                   '--rados-osd-op-timeout', '--rados-mon-op-timeout', '--client-mount-timeout'}


def rbd_and_ceph_view(argv):
    """How rbd reads argv: (the command spec by Shell::get_command_spec, the options ceph's global_init scan
    applies).  The scan looks at every word starting with '-' that is not a value it already consumed."""
    pruned, i = [], 1
    while i < len(argv):             # Shell::prune_command_line_arguments drops a config key and the next word
        if argv[i] in CONFIG_KEYS:
            i += 2
            continue
        pruned.append(argv[i])
        i += 1
    spec, i = [], 0
    while i < len(pruned):
        arg = pruned[i]
        if arg == '--':
            return spec + pruned[i + 1:], None
        if arg.startswith('-') and arg != '-':
            if arg[2:] not in RBD_SWITCHES and '=' not in arg:
                i += 1
        else:
            spec.append(arg)
        i += 1
    ceph, i = [], 1
    while i < len(argv):
        arg = argv[i]
        if arg in CEPH_WITH_VALUE:
            ceph.append((arg, argv[i + 1] if i + 1 < len(argv) else None))
            i += 2
            continue
        if arg.startswith('-') and arg not in ALL_WITH_VALUE | ALL_FLAGS | {'-'}:
            ceph.append((arg, None))       # a config override, a short option, --opt=value: ceph would act on it
        i += 1
    return spec, ceph


def check_allowed_is_read_only(command):
    """Property (b) for one input; returns whether the guard allowed it."""
    ok = allowed(command)
    if ok:
        runs = oracle(command)
        assert runs is not None, 'the guard allowed what the oracle refuses: %r' % command
        rbd_argv = runs[0] if len(runs) == 1 else runs[1]
        verb, options = read_only_rbd(rbd_argv, with_options=True)
        spec, ceph = rbd_and_ceph_view(rbd_argv)
        want = verb.split() + (['-'] if verb == 'export-diff' else [])
        assert spec == want, ('rbd would run another command', command, spec)
        client = [(k, v) for k, v in options.items() if k in CLIENT_OPTIONS]
        assert ceph == client, ('ceph would apply other options than the client options', command, ceph)
    return ok


# --------------------------------------------------------------------------------------------------
# The commands our client really builds, by the client code itself.

HOSTILE_CHARS = ' \t\n\r\'"\\$`;&|<>()[]{}*?~#!=%,:@/.+-_aZ09\u00a0\u2028\u3000\u00e9\u202e'
SPECIAL_NAMES = ['vm', 'a b', "we ird $(touch x);`id` 'q\"", '$(pwn)', '`pwn`', 'a | b', "x' ; pwn ; '", ' | zstd',
                 "'", '"', '\n', 'a\nb', '; pwn', '&& pwn', '> PWNED', '$IFS', '*', '~', '#', 'rm', 'snap rm',
                 'x=--log-file=/tmp/PWNED', '\u00a0', 'é', 'a' * 300, "'" * 50, ' -', 'a --conf /dev/stdin',
                 'export-diff', '|', ' | ', "' | pwn | '"]
names = st.one_of(st.sampled_from(SPECIAL_NAMES),
                  st.text(alphabet=st.sampled_from(HOSTILE_CHARS), max_size=16),
                  st.text(alphabet=st.characters(codec='utf-8', exclude_characters='\0'), max_size=12),
                  ).map(lambda s: s.lstrip('-'))
client_options = st.fixed_dictionaries({
    'cluster': st.sampled_from([None, 'ceph', 'backup-site_2']),
    'conf': st.sampled_from([None, '/etc/ceph/ceph.conf', '/tmp/rbd-testbed/source/ceph.conf', '/opt/c+x/my.conf']),
    'user': st.sampled_from([None, 'backup-ro', 'admin', 'rbd.backup']),
    'keyring': st.sampled_from([None, '/etc/ceph/ceph.client.backup-ro.keyring', '/k', '/home/backup/.ceph/k']),
    'timeout': st.sampled_from([None, 0, 1, 30, 300, 86400]),
})
SSH = ['ssh', '-o', 'BatchMode=yes', '--', 'source']


class _Captured(Exception):
    pass


def _client_command(opts, verb, pool, namespace, image, snap, base, whole_object, level):
    sent = []

    def capture(argv, timeout, stdin_data=None):
        sent.append(argv[len(SSH)])
        return 0, '[]', ''

    rbd = Rbd(runner=SshRunner(SSH, local_runner=capture), **opts)
    if verb == 'ls':
        rbd.list_images(pool, namespace)
    elif verb == 'info':
        rbd.info(pool, image, namespace, snap)
    elif verb == 'snap ls':
        rbd.snapshots(pool, image, namespace)
    elif verb == 'diff':
        rbd.diff(pool, image, namespace, snap=snap, from_snap=base, whole_object=whole_object)
    else:
        def relay(upstream, downstream, idle_timeout, **kwargs):
            sent.append(upstream[0][1][len(SSH)])
            raise _Captured()
        src = Side(rbd, pool, namespace, remote_ssh=SSH)
        dst = Side(Rbd(), 'backup')
        real, _transfer.relay = _transfer.relay, relay
        try:
            _transfer.stream_diff(src, image, snap, base, dst, image, TransferOptions(
                compression='zstd' if level is not None else 'none', compression_level=level or 0))
        except _Captured:
            pass
        finally:
            _transfer.relay = real
    assert len(sent) == 1
    return sent[0]


def client_commands_for(verbs, levels):
    return st.builds(_client_command, client_options, st.sampled_from(verbs), names, st.one_of(st.none(), names),
                     names, st.one_of(st.none(), names), st.one_of(st.none(), names), st.booleans(), levels)


ZSTD_LEVELS = st.one_of(st.integers(min_value=1, max_value=19), st.sampled_from([0, 22]))
client_commands = client_commands_for(sorted(VERBS), st.one_of(st.none(), ZSTD_LEVELS))
client_pipelines = client_commands_for(['export-diff'], ZSTD_LEVELS)


@_settings(800)
@given(client_commands)
def test_every_command_our_client_builds_is_allowed(command):
    _count('client', True)
    assert oracle(command) is not None, command
    assert allowed(command), command
    check_allowed_is_read_only(command)


# --------------------------------------------------------------------------------------------------
# Hostile inputs.

ARGV0 = ['rbd', '/usr/bin/rbd', '/tmp/rbd', './rbd', 'rbd ', ' rbd', 'RBD', 'rbd2', 'rbd\n', 'bash', 'sh', 'env',
         'zstd', 'python3', 'pwn', 'LD_PRELOAD=/tmp/x.so', 'CEPH_ARGS=--log-file=PWNED', 'env CEPH_ARGS=-c/dev/stdin',
         'exec', 'command', 'nice', 'timeout 9', 'sudo', '\\rbd', 'r""bd', '$(echo rbd)', 'ceph', 'rados']
VERB_WORDS = ['ls', 'info', 'snap', 'ls', 'diff', 'export-diff', 'rm', 'remove', 'create', 'import', 'import-diff',
              'export', 'snap', 'rm', 'create', 'rollback', 'purge', 'protect', 'lock', 'add', 'feature', 'enable',
              'config', 'global', 'set', 'image-meta', 'mv', 'rename', 'trash', 'help', 'bench', 'map', 'device',
              'children', 'merge-diff', 'list', 'du', 'status', 'watch', 'journal', 'migration', 'sparsify', 'flatten']
OPTIONS = ['--pool', '--namespace', '--image', '--snap', '--from-snap', '--format', '--no-progress', '--whole-object',
           '--cluster', '--conf', '--id', '--keyring', '--rados-osd-op-timeout', '--rados-mon-op-timeout',
           '--client-mount-timeout', '-c', '-k', '-i', '-n', '-m', '-K', '-p', '--name', '--user', '--mon_host',
           '--mon-host', '--keyfile', '--secret', '--admin-socket', '--log-file', '--log_file', '--debug-rbd', '--exec',
           '--', '-', '-h', '--help', '--path', '--dest', '--pretty-format', '--export-format', '--log-to-stderr',
           '--run-dir', '--plugin-dir', '--ms-type', '--pool=rbd', '--conf=/dev/stdin', '--log-file=PWNED',
           '--admin-socket=PWNED.asok', '--keyring=/dev/stdin', '-c/dev/stdin', '-c=/dev/stdin', '--format=json',
           '--image=x', '--debug-ms=20', '--no-progress=1', '--rbd-default-pool=x', '---pool', '--POOL', '--pool ',
           '\u2013\u2013pool', '--keyring,/dev/stdin', '-q', '-c', '-T0', '-3', '-o', '-d', '--rm', '-v']
VALUES = ['rbd', 'vm', 'json', 'xml', 'plain', 'pretty', 'JSON', 'json ', '30', '-1', '0x10', '1e9', '\u0661\u0662',
          '/etc/ceph/ceph.conf', '/dev/stdin', '/dev/fd/0', '/proc/self/fd/0', '/proc/self/environ', '/sys/x',
          '/etc/ceph/../../dev/stdin', '/etc/ceph/./ceph.conf', '//dev/stdin', '/etc//ceph.conf', 'ceph.conf',
          '~/ceph.conf', '$HOME/k', '/etc/ceph/$cluster.conf', '/a,/dev/stdin', '/etc/ceph/ceph.conf ', '/k\n',
          '/home/backup/.ssh/authorized_keys', 'PWNED', 'admin', 'client.admin', '../x', 'a/b', '-', '--',
          '--log-file=PWNED', '-c', 'backup-ro', '', ' ', '.', '..', '/', '/etc/ceph/', '/etc/ce ph.conf']
SHELL = [';', '&&', '||', '|', '&', '$(pwn)', '`pwn`', '>', '>>', '<', '2>&1', '>PWNED', '>>PWNED', '<(pwn)',
         '*', '?', '[a]', '~', '\n', '#', '{a,b}', '!', '$IFS', '${IFS}', '\\', "'", '"', '$PATH', 'a\0b', '\u00a0',
         '\u2028', '\t', '\r', '\n pwn', '; pwn', '| pwn', '&& pwn', '$(pwn>PWNED)', '\x0b', '\x0c', '\u0085']
tokens = st.one_of(st.sampled_from(VERB_WORDS), st.sampled_from(OPTIONS), st.sampled_from(VALUES),
                   st.sampled_from(SHELL), names, st.text(alphabet=st.sampled_from(HOSTILE_CHARS), max_size=8))
TOKEN_LISTS = st.lists(tokens, max_size=14)
WORD_TOKENS = st.one_of(st.sampled_from(VERB_WORDS), st.sampled_from(SHELL), names)
SEPARATORS = [' '] * 6 + ['\t', '\n', '  ', '\u00a0', '\u2003', ';', ' ; ', '\x0b', '']


_STRATEGIES = {}
BOOLEANS = st.booleans()


def pick(draw, options):
    """draw(st.sampled_from(options)), with the strategy built once per list of options."""
    key = ('pick',) + tuple(options)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = st.sampled_from(list(options))
    return draw(_STRATEGIES[key])


def between(draw, low, high):
    """draw(st.integers(low, high)), with the strategy built once per bounds."""
    key = ('between', low, high)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = st.integers(low, high)
    return draw(_STRATEGIES[key])


def _rendered(draw, words):
    """Words joined the canonical way (shlex.quote, one space) most of the time, else raw or mixed."""
    how = pick(draw, ['canonical'] * 4 + ['raw', 'mixed'])
    if how == 'canonical':
        return ' '.join(shlex.quote(w) for w in words)
    parts = [w if how == 'raw' or draw(BOOLEANS) else shlex.quote(w) for w in words]
    out = parts[0] if parts else ''
    for p in parts[1:]:
        out += pick(draw, SEPARATORS) + p
    return out


def _grammar_argv(draw):
    argv0 = pick(draw, ARGV0 * 3 + ['rbd'] * 20)
    body = draw(TOKEN_LISTS)
    # often: a believable skeleton (verb first, options with values) with hostile words sprinkled in
    if draw(BOOLEANS):
        verb = pick(draw, ['ls', 'info', 'snap ls', 'diff', 'export-diff', 'snap rm', 'rm', 'export',
                           'import', 'snap create', 'lock add', 'feature disable', 'config global set'])
        skeleton = verb.split() + ['--pool', draw(names), '--image', draw(names)]
        if verb == 'export-diff':
            skeleton.append(pick(draw, ['-', '-', 'PWNED', '/dev/null', '--', '- -', '-\n']))
        for tok in body:
            skeleton.insert(between(draw, 0, len(skeleton)), tok)
        body = skeleton
    return [argv0] + body


@st.composite
def grammar_commands(draw):
    return _rendered(draw, _grammar_argv(draw))


ZSTD_STAGES = ['zstd -q -c -3 -T0', 'zstd -q -c -3 -T0 > PWNED', 'zstd -o PWNED', 'zstd -q -c -3 -T0 -o PWNED',
               'zstd -d', 'zstd --rm x', 'zstd -q -c --3 -T0', 'zstd -q -c -3 -T0;pwn', 'zstd -q -c -3 -T0 #',
               'zstd -q -c -3 -T0\npwn', 'pwn', 'sh', 'tee PWNED', "zstd '-q' -c -3 -T0", 'zstd -q -c -100 -T0',
               'zstd -q -c -03 -T0', 'zstd -q -c -3 -T0 ', 'zstd  -q -c -3 -T0', 'zstd -q -c -T0 -3', 'zstd -c',
               'zstd -q -c -3 -T0 | pwn', 'zstd -q -c -3 -T0 & pwn', 'zstd -q -c -3 -T0 $(pwn)', 'zstd -q -c -3 -T1',
               'zstd -q -c -3 -T0 -', '/usr/bin/zstd -q -c -3 -T0', 'zstd -q -c -\u0663 -T0',
               'zstd -q -c -3 -T0 2>PWNED']
PIPES = [' | '] * 8 + ['|', ' || ', ' ; ', '\n', ' && ', ' |& ', ' | pwn | ', ' ; pwn ; ', ' | tee PWNED | ', ' |  ',
                       '  | ', ' | \n', ' >PWNED | ']
BASH_PREFIXES = ['bash -o pipefail -c'] * 10 + ['bash -c', 'sh -o pipefail -c', '/bin/bash -o pipefail -c',
                                                'bash -o pipefail -o errexit -c', 'bash --rcfile PWNED -o pipefail -c',
                                                'bash -o pipefail -c -c', 'bash -o pipefail -x -c', 'bash -i -c',
                                                'bash  -o pipefail -c', 'bash -o pipefail -c pwn;']


SECOND_STAGES = st.one_of(st.sampled_from(ZSTD_STAGES[:1] * 10 + ZSTD_STAGES), grammar_commands())
ANY_CLIENT = st.one_of(client_commands, client_pipelines)


@st.composite
def pipeline_commands(draw):
    if draw(BOOLEANS):
        first = draw(client_commands)
        if first.startswith('bash '):
            first = shell_pipeline(shlex.split(first)[4])[0]
            first = ' '.join(shlex.quote(w) for w in first)
    else:
        first = _rendered(draw, _grammar_argv(draw))
    second = draw(SECOND_STAGES)
    script = first + pick(draw, PIPES) + second
    if between(draw, 0, 5) == 0:
        script += pick(draw, PIPES) + pick(draw, ZSTD_STAGES)
    quoted = shlex.quote(script) if between(draw, 0, 4) else pick(draw, ['"%s"', "'%s'", '%s']) % script
    tail = pick(draw, [''] * 8 + [' x', ' ; pwn', ' | pwn', ' >PWNED', '\npwn'])
    return pick(draw, BASH_PREFIXES) + ' ' + quoted + tail


HOSTILE_VALUES = st.one_of(st.sampled_from(VALUES), st.sampled_from(OPTIONS), st.sampled_from(OPTIONS),
                           st.sampled_from(SHELL), names, names.map(lambda s: '-' + s))
VERB_PHRASES = ['ls', 'info', 'snap ls', 'diff', 'export-diff', 'snap rm', 'rm', 'export', 'import', 'import-diff',
                'snap create', 'snap rollback', 'snap purge', 'lock add', 'lock rm', 'feature disable', 'mv',
                'config global set', 'image-meta set', 'trash mv', 'create', 'snap', 'list', 'snap list', 'help',
                'ls ls', 'export-diff export-diff', 'diff rm', 'ls snap', 'snap ls rm', 'merge-diff', 'export-diff -']
TAILS = ['-', 'PWNED', '/dev/null', '--', '/home/backup/.ssh/authorized_keys', '-\n', '', 'x', '/dev/stdout', '- -']
ZSTD_WORDS = ['-q', '-c', '-3', '-T0', '-o', 'PWNED', '-d', '--rm', '-f', '-D', '/dev/stdin', '--format=gzip', '-T1',
              '-19', '--ultra', '-22', '-03', '--3', '-', '--', '>PWNED', '|', 'pwn', '-100', '-0', '-v', 'zstd',
              '-1\n']


def _items(argv):
    """argv as [kind, words] items: argv0, an option with its value, a flag, a positional word."""
    items, i = [['argv0', argv[:1]]], 1
    while i < len(argv):
        if argv[i] in ALL_WITH_VALUE and i + 1 < len(argv):
            items.append(['pair', argv[i:i + 2]])
            i += 2
        else:
            items.append(['flag' if argv[i] in ALL_FLAGS else 'word', argv[i:i + 1]])
            i += 1
    return items


def _edit_rbd(draw, argv):
    """One targeted hostile edit of a valid rbd argv."""
    items = _items(argv)
    kind = pick(draw, ['value'] * 10 + ['pair'] * 3 + ['verb'] * 5 + ['tail'] * 4 + [
        'option', 'flag', 'argv0', 'dup', 'assign', 'drop', 'word'])
    pairs = [i for i, (k, _w) in enumerate(items) if k == 'pair']
    at = between(draw, 1, len(items))
    if kind in ('value', 'option', 'assign') and pairs:
        i = pick(draw, pairs)
        opt, val = items[i][1]
        if kind == 'value':
            items[i][1] = [opt, draw(HOSTILE_VALUES)]
        elif kind == 'option':
            items[i][1] = [pick(draw, OPTIONS), val]
        else:
            items[i] = ['flag', [opt + '=' + val]]
    elif kind == 'pair':
        items.insert(at, ['pair', [pick(draw, OPTIONS), draw(HOSTILE_VALUES)]])
    elif kind == 'flag':
        items.insert(at, ['flag', [pick(draw, OPTIONS)]])
    elif kind == 'verb':
        words = [i for i, (k, w) in enumerate(items) if k == 'word' and w != ['-']]
        first = words[0] if words else at
        items = [it for i, it in enumerate(items) if i not in words]
        items.insert(min(first, len(items)), ['word', pick(draw, VERB_PHRASES).split()])
    elif kind == 'tail':
        if items[-1][0] == 'word' and items[-1][1] == ['-'] and draw(BOOLEANS):
            items.pop()
        items.append(['word', pick(draw, TAILS).split(' ')])
    elif kind == 'argv0':
        items[0] = ['argv0', [pick(draw, ARGV0)]]
    elif kind == 'dup' and len(items) > 1:
        i = between(draw, 1, len(items) - 1)
        items.insert(between(draw, 1, len(items)), items[i])
    elif kind == 'drop' and len(items) > 1:
        del items[between(draw, 1, len(items) - 1)]
    else:
        items.insert(at, ['word', [draw(WORD_TOKENS)]])
    return [w for _k, words in items for w in words]


@st.composite
def edited_commands(draw):
    """A real client command (plain or pipeline) with one or two targeted hostile edits."""
    command = draw(ANY_CLIENT)
    argv = shlex.split(command)
    if argv[0] != 'bash':
        for _step in range(pick(draw, [1, 1, 1, 2])):
            argv = _edit_rbd(draw, argv)
        return ' '.join(shlex.quote(w) for w in argv) if between(draw, 0, 5) else _rendered(draw, argv)
    first, zstd = shell_pipeline(argv[4])
    prefix, sep, tail = 'bash -o pipefail -c', ' | ', ''
    quote = shlex.quote
    for _step in range(pick(draw, [1, 1, 1, 2])):
        kind = pick(draw, ['first'] * 3 + ['zstd'] * 3 + ['sep', 'prefix', 'tail', 'quote', 'third'])
        if kind == 'first':
            first = _edit_rbd(draw, first)
        elif kind == 'zstd':
            how = pick(draw, ['insert', 'replace', 'delete'])
            at = between(draw, 0, len(zstd) - (0 if how == 'insert' else 1))
            if how == 'delete' and zstd:
                del zstd[at]
            elif zstd or how == 'insert':
                zstd[at:at + (how == 'replace')] = [pick(draw, ZSTD_WORDS)]
        elif kind == 'sep':
            sep = pick(draw, PIPES)
        elif kind == 'prefix':
            prefix = pick(draw, BASH_PREFIXES)
        elif kind == 'tail':
            tail = pick(draw, [' x', ' ; pwn', ' | pwn', ' >PWNED', '\npwn', ' -c', ' \'\''])
        elif kind == 'quote':
            quote = pick(draw, ['"%s"', "'%s'", '%s', '$\'%s\'']).__mod__
        else:
            zstd = zstd + [pick(draw, ['|', ';', '&&', '||'])] + pick(draw, ZSTD_STAGES).split()
    script = ' '.join(shlex.quote(w) for w in first) + sep + ' '.join(
        w if w in ('|', ';', '&&', '||') else shlex.quote(w) for w in zstd)
    return prefix + ' ' + quote(script) + tail


INSERT_CHARS = list(HOSTILE_CHARS) + ['\0', '\x0b', '\x0c', '\u0085', '\u2003', '\ufeff', '$(pwn)', '`pwn`', ' | pwn',
                                      '; pwn', "'", ' --log-file=PWNED', ' -', '=', ' --', ' rm', ' snap rm', '>PWNED']


@st.composite
def mutated_commands(draw):
    command = draw(client_commands)
    for _step in range(between(draw, 1, 3)):
        kind = pick(draw, ['insert', 'delete', 'replace', 'duplicate', 'token-insert', 'token-replace',
                                     'token-duplicate', 'token-delete', 'token-swap'])
        if kind.startswith('token'):
            inner = command.startswith('bash ') and draw(BOOLEANS)
            try:
                outer = shlex.split(command)
                stages = shell_pipeline(outer[4]) if inner else None
            except (ValueError, IndexError):
                stages = None
            if inner and stages:
                stage = between(draw, 0, len(stages) - 1)
                words = stages[stage]
            else:
                try:
                    words = shlex.split(command)
                except ValueError:
                    continue
                stages = None
            if not words:
                continue
            at = between(draw, 0, len(words) - 1)
            if kind == 'token-insert':
                words.insert(between(draw, 0, len(words)), draw(tokens))
            elif kind == 'token-replace':
                words[at] = draw(tokens)
            elif kind == 'token-duplicate':
                words.insert(at, words[at])
            elif kind == 'token-delete':
                del words[at]
            else:
                j = between(draw, 0, len(words) - 1)
                words[at], words[j] = words[j], words[at]
            if stages:
                stages[stage] = words
                script = ' | '.join(' '.join(shlex.quote(w) for w in s) for s in stages)
                command = ' '.join(shlex.quote(w) for w in outer[:4] + [script])
            else:
                command = ' '.join(shlex.quote(w) for w in words)
        else:
            at = between(draw, 0, max(0, len(command) - 1))
            if kind == 'insert':
                command = command[:at] + pick(draw, INSERT_CHARS) + command[at:]
            elif kind == 'delete':
                command = command[:at] + command[at + 1:]
            elif kind == 'replace':
                command = command[:at] + pick(draw, INSERT_CHARS) + command[at + 1:]
            else:
                end = between(draw, at, min(len(command), at + 40))
                command = command[:end] + command[at:end] + command[end:]
    return command


@_settings(700)
@given(grammar_commands())
def test_hostile_rbd_commands_are_refused_unless_read_only(command):
    _count('grammar', check_allowed_is_read_only(command))


@_settings(500)
@given(pipeline_commands())
def test_hostile_pipelines_are_refused_unless_ours(command):
    _count('pipeline', check_allowed_is_read_only(command))


@_settings(700)
@given(mutated_commands())
def test_mutations_of_real_commands_are_refused_unless_read_only(command):
    _count('mutated', check_allowed_is_read_only(command))


@_settings(1000)
@given(edited_commands())
def test_targeted_edits_of_real_commands_are_refused_unless_read_only(command):
    _count('edited', check_allowed_is_read_only(command))


@_settings(300)
@given(st.text(alphabet=st.sampled_from(HOSTILE_CHARS + '\0'), max_size=200) |
       st.text(max_size=60) | st.binary(max_size=80).map(lambda b: b.decode('latin-1')))
def test_random_strings(command):
    _count('random', check_allowed_is_read_only(command))


def test_the_holes_found_stay_closed():
    """One input for each hole the fuzzing found in the former guard."""
    base = 'rbd --conf /etc/ceph/ceph.conf --id backup-ro --keyring /k '
    holes = [
        base + 'info --pool --log-file=PWNED --image --debug-rbd=20 --snap s',      # ceph applies hidden overrides
        base + 'ls --pool --conf=/etc/ceph/evil.conf',                              # a second, hidden conf
        base + 'ls --namespace --admin-socket=/tmp/x.asok --pool p',
        'rbd --conf /dev/stdin ls --pool p',                                         # conf fed by the caller
        'rbd --conf /proc/self/fd/0 ls --pool p',
        'rbd --keyring /etc/ceph/../../dev/stdin ls --pool p',
        "rbd --keyring '/k,/dev/stdin' ls --pool p",
        "rbd --conf '/etc/ceph/$cluster.conf' ls --pool p",
        'rbd --id ../../x ls --pool p',
        'rbd --format --log-file=PWNED ls --pool p',
        'rbd --pool a --pool b ls',                                                  # repeated options
        'rbd ls --pool p --image i',                                                 # an option ls never gets
        'rbd ls --pool p --pool',                                                    # an option without value
        "bash -o pipefail -c 'rbd ls --pool export-diff | zstd -q -c -3 -T0'",      # export-diff only as a value
        "bash -o pipefail -c 'rbd export-diff --pool p --image i - | zstd -c -q -T0 -3 -T0'",
        "bash -o pipefail -c 'rbd export-diff --pool p --image i - | zstd -q -c -3 -T0\n-c'",   # a 2nd command
        'rbd ls --pool "p"',                                                         # not our quoting
        'rbd ls --pool p\0',
        'rbd ls --pool ' + 'a' * MAX_ARG_STRLEN,
    ]
    for command in holes:
        assert not allowed(command), command
    # ... while the client's own commands over the same names still pass
    assert allowed(base + "ls --pool 'a | b' --format json")
    assert allowed("bash -o pipefail -c 'rbd export-diff --no-progress --pool p --image '\"'\"'a | b'\"'\"' - | "
                   "zstd -q -c -3 -T0'")


def test_names_starting_with_a_dash_are_refused_by_design():
    """ceph's global_init would read such a value as an option (``--image --log-file=x``)."""
    opts = dict(cluster=None, conf=None, user=None, keyring=None, timeout=30)
    for name in ('-vm', '--log-file=PWNED', '-', '--'):
        assert not allowed(_client_command(opts, 'info', 'rbd', None, name, None, None, False, None))
        assert not allowed(_client_command(opts, 'ls', name, None, 'vm', None, None, False, None))


def test_long_names_are_allowed_up_to_what_linux_can_pass():
    opts = dict(cluster=None, conf='/etc/ceph/ceph.conf', user='backup-ro', keyring=None, timeout=30)
    for name in ('a' * 4096, "'" * 2000, ' | ' * 1000):
        command = _client_command(opts, 'export-diff', 'rbd', 'ns', name, name, 'base', False, 3)
        assert len(command) < MAX_ARG_STRLEN and allowed(command)
    t0 = time.monotonic()
    assert not allowed(_client_command(opts, 'export-diff', 'rbd', None, "'" * 8000, None, None, False, 3))
    assert not allowed('rbd ls --pool ' + '\'"\'"\'' * 30000)
    assert time.monotonic() - t0 < 5


# --------------------------------------------------------------------------------------------------
# The weakened guards: the fuzzing above must catch each of them (proof that these tests can fail).

def _first_hole(strategy):
    try:
        return find(strategy, lambda c: allowed(c) and oracle(c) is None,
                    settings=settings(max_examples=3000, derandomize=True, database=None, deadline=None,
                                      phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    except NoSuchExample:
        return None


@pytest.mark.parametrize('weakening', [
    dict(names=True),                                  # names may start with '-' (ceph reads them as options)
    dict(name='--conf', check=lambda v: True),         # any conf path (/dev/stdin)
    dict(name='--format', check=lambda v: True),
    dict(zstd=lambda argv: argv[:1] == ['zstd']),      # any zstd flags
    dict(export_any_path=True),                        # export-diff to a file
    dict(any_verb=True),                               # any rbd subcommand
])
def test_a_weakened_guard_is_caught(monkeypatch, weakening):
    if 'names' in weakening:
        for option in ('--pool', '--namespace', '--image', '--snap', '--from-snap'):
            monkeypatch.setitem(_guard._VALUE_CHECK, option, lambda v: True)
    if 'name' in weakening:
        monkeypatch.setitem(_guard._VALUE_CHECK, weakening['name'], weakening['check'])
    if 'zstd' in weakening:
        monkeypatch.setattr(_guard, '_zstd_ok', weakening['zstd'])
    real = _guard._rbd_ok
    if 'export_any_path' in weakening:
        def weak(argv, subcommands=_guard.READ_ONLY):
            return real(argv[:-1] + ['-'], subcommands)
        monkeypatch.setattr(_guard, '_rbd_ok', weak)
    if 'any_verb' in weakening:
        writes = [(verb,) for verb in ('rm', 'export', 'import', 'create', 'purge', 'rollback', 'mv', 'import-diff')]
        for verb in writes:
            monkeypatch.setitem(_guard._PER_COMMAND, verb, (tuple(_guard._VALUE_CHECK), tuple(_guard._FLAGS)))

        def weak_verbs(argv, subcommands=None):
            return real(argv, subcommands or _guard.READ_ONLY + tuple(writes))
        monkeypatch.setattr(_guard, '_rbd_ok', weak_verbs)
    hole = _first_hole(edited_commands())
    assert hole is not None, 'the fuzzing missed a weakened guard: %r' % weakening


# --------------------------------------------------------------------------------------------------
# The real script, run: what is exec'd is exactly what the oracle read, and nothing else runs.

FAKE = '''#!/bin/sh
# records its name and argv (NUL-separated, count first) in a file of its own
printf '%%s\\0' "$#" "${0##*/}" "$@" > "$GUARD_FUZZ_LOG/$$.rec"
%s
'''


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp('guard')
    bin_dir = root / 'bin'
    bin_dir.mkdir()
    for name, tail in (('rbd', ''), ('zstd', ''), ('pwn', ''), ('bash', 'exec /bin/bash "$@"')):
        path = bin_dir / name
        path.write_text(FAKE % tail)
        path.chmod(0o755)
    return root


def _records(log_dir):
    runs = []
    for name in sorted(os.listdir(log_dir)):
        with open(os.path.join(log_dir, name), 'rb') as f:
            fields = f.read().split(b'\0')[:-1]
        count = int(fields[0])
        runs.append([w.decode('utf-8', 'surrogateescape') for w in fields[1:count + 2]])
    return sorted(runs)


def _run_guard(sandbox, command, index):
    work = sandbox / ('w%d' % index)
    log = work / 'log'
    log.mkdir(parents=True)
    env = dict(SSH_ORIGINAL_COMMAND=command, RBD_GUARD_LIB=GUARD_LIB, PATH=str(sandbox / 'bin'),
               HOME=str(work), TMPDIR=str(work), GUARD_FUZZ_LOG=str(log), LANG='C.UTF-8')
    python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
    proc = subprocess.Popen([python, GUARD_SCRIPT], cwd=str(work), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return work, log, proc


exec_inputs = st.one_of(client_commands, client_pipelines, edited_commands(), edited_commands(), mutated_commands(),
                        grammar_commands(), pipeline_commands())


@_settings(25, phases=(Phase.explicit, Phase.generate))   # no shrinking: each example runs 8 processes
@given(st.lists(exec_inputs.filter(lambda c: '\0' not in c and c.strip()), min_size=8, max_size=8))
def test_the_script_execs_exactly_what_the_oracle_read(sandbox, commands):
    started = [(command,) + _run_guard(sandbox, command, i) for i, command in enumerate(commands)]
    try:
        for command, work, log, proc in started:
            err = proc.communicate(timeout=60)[1]
            ok = allowed(command)
            _count('executed', ok)
            if not ok:
                assert proc.returncode == 126 and b'refused' in err, (command, proc.returncode, err)
                assert _records(str(log)) == [], ('a refused command ran something', command, _records(str(log)))
            else:
                expected = oracle(command)
                assert expected is not None, 'the guard allowed what the oracle refuses: %r' % command
                assert proc.returncode == 0, (command, err)
                assert _records(str(log)) == sorted(expected), ('what ran is not what the oracle read', command)
            assert sorted(os.listdir(str(work))) == ['log'], ('a file appeared', command, os.listdir(str(work)))
    finally:
        for command, work, log, proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(str(work), ignore_errors=True)
