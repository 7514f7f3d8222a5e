# -*- coding: utf-8 -*-
"""_proc is the only place that starts a process, and every child runs in the C locale.

- a scan of every plugin file fails on another import of ``subprocess`` (or another way to start a process);
- the child's environment is the caller's (or os.environ) with LC_ALL=C, for each way _proc starts one;
- with a German locale really installed (``localedef`` into a temporary LOCPATH, no root needed) the stderr
  texts the callers match - libc's strerror as rbd prints it, sfdisk's "no partition table" - come through
  _proc in English, while the same tools run without it answer in German (the control that shows the test
  can fail).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _proc as P
from ansible_collections.ceph_rbd.backup.plugins.module_utils import _remote
from ansible_collections.ceph_rbd.backup.plugins.module_utils._filerestore import Exposure
from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import CommandError
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import Rbd, RbdError
from ansible_collections.ceph_rbd.backup.plugins.module_utils._worker import Worker

PLUGINS = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'plugins')

# -- only _proc starts processes -----------------------------------------------------------------------

STARTER_OS_CALLS = ('system', 'popen', 'fork', 'forkpty', 'posix_spawn', 'posix_spawnp')


def _starts(name):
    """Pure: whether a dotted name (a module, or a module's attribute) starts processes."""
    root, _dot, rest = name.partition('.')
    if root in ('subprocess', 'multiprocessing', 'pty'):
        return True
    if root == 'asyncio':
        return rest.startswith(('subprocess', 'create_subprocess'))
    if root == 'os':
        return rest in STARTER_OS_CALLS or rest.startswith(('exec', 'spawn'))
    return False


def process_starters(source):
    """Pure: 'line N: what' for every way ``source`` could start a process itself (an import of subprocess,
    multiprocessing, pty, asyncio's subprocesses, os.system/popen/fork/exec*/spawn*, or an __import__)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if _starts(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            dotted = [node.module] + ['%s.%s' % (node.module, a.name) for a in node.names]
            names = [n for n in dotted if _starts(n)][:1]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [n for n in ['%s.%s' % (node.value.id, node.attr)] if _starts(n)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == '__import__':
            names = ['__import__(...)']
        found += ['line %d: %s' % (node.lineno, n) for n in names]
    return found


def plugin_files():
    out = []
    for root, _dirs, files in os.walk(PLUGINS):
        out += [os.path.join(root, f) for f in files if f.endswith('.py')]
    return sorted(out)


def test_only_proc_starts_processes():
    files = plugin_files()
    assert len(files) > 20                      # the scan saw the plugins
    found = {}
    for path in files:
        with open(path) as f:
            starters = process_starters(f.read())
        if starters:
            found[os.path.relpath(path, PLUGINS)] = starters
    proc = found.pop(os.path.join('module_utils', '_proc.py'), [])
    assert found == {}, 'start processes through _proc (spawn, run, start_chain), not here'
    assert any('subprocess' in s for s in proc)    # the scan does see an import where there is one


@pytest.mark.parametrize('source', [
    'import subprocess',
    'import os, subprocess as sp',
    'from subprocess import Popen',
    'import multiprocessing.pool',
    'from pty import spawn',
    'from asyncio import create_subprocess_exec',
    'import asyncio\nasyncio.create_subprocess_shell("x")',
    'from asyncio.subprocess import PIPE',
    'import os\nos.system("true")',
    'import os\nos.execvp("true", ["true"])',
    'import os\nos.spawnlp(os.P_WAIT, "true", "true")',
    'import os\npid = os.fork()',
    'from os import posix_spawn',
    'import os\nos.popen("true")',
    'm = __import__("subprocess")',
])
def test_the_scan_finds_each_way_to_start_a_process(source):
    assert process_starters(source)


def test_the_scan_lets_the_rest_of_os_be():
    assert process_starters('import os, signal\nos.killpg(1, signal.SIGKILL)\nos.dup2(2, 1)\nos._exit(0)\n'
                            'from os import path\nimport asyncio\nasyncio.sleep(1)') == []


# -- every child in the C locale, with the rest of its environment -------------------------------------------

def test_child_env_sets_lc_all_and_keeps_everything_else():
    base = {'PATH': '/bin', 'PYTHONPATH': '/lib', 'CEPH_ARGS': '--id x', 'LANG': 'de_DE.UTF-8',
            'LC_MESSAGES': 'de_DE.UTF-8', 'LC_ALL': 'de_DE.UTF-8'}
    env = P.child_env(base)
    assert env == dict(base, LC_ALL='C')
    assert base['LC_ALL'] == 'de_DE.UTF-8'          # the caller's dict is left as it was
    assert P.child_env({}) == {'LC_ALL': 'C'}


PRINT_ENV = 'import json, os, sys; sys.stdout.write(json.dumps(dict(os.environ)))'


def _env_by_spawn(env=None):
    proc = P.spawn([sys.executable, '-c', PRINT_ENV], P.DEVNULL, P.PIPE, P.DEVNULL, env=env)
    out = proc.communicate(timeout=30)[0]
    return json.loads(out)


def _env_by_run():
    rc, out, err = P.run([sys.executable, '-c', PRINT_ENV], 30)
    assert rc == 0, err
    return json.loads(out)


def _env_by_chain():
    stages = P.start_chain([('env', [sys.executable, '-c', PRINT_ENV]), ('cat', ['cat'])], P.DEVNULL, P.PIPE)
    out = stages[-1].proc.communicate(timeout=30)[0]
    assert P.wait_stages(stages, 30) is None and P.first_failure(stages) is None
    return json.loads(out)


def _env_by_worker(env=None):
    """A Worker child that answers its first request with its environment (the J-frame protocol)."""
    code = ('import json, os, struct, sys\n'
            'def send(tag, data=b""):\n'
            '    sys.stdout.buffer.write(struct.pack(">cI", tag, len(data)) + data); sys.stdout.flush()\n'
            'send(b"R"); sys.stdin.readline(); send(b"J", json.dumps(dict(os.environ)).encode())\n')
    w = Worker({}, stall=30, argv=[sys.executable, '-c', code], env=env)
    try:
        return w.call({}, time.monotonic() + 30)
    finally:
        w.close()


GERMAN = {'LANG': 'de_DE.UTF-8', 'LC_MESSAGES': 'de_DE.UTF-8', 'LANGUAGE': 'de_DE:de', 'LC_ALL': 'de_DE.UTF-8'}


@pytest.mark.parametrize('start', [_env_by_spawn, _env_by_run, _env_by_chain, _env_by_worker])
def test_every_child_gets_lc_all_c_and_the_parents_environment(monkeypatch, start):
    for k, v in dict(GERMAN, RBD_TEST_MARKER='kept', PYTHONPATH='/somewhere').items():
        monkeypatch.setenv(k, v)
    seen = start()
    assert seen['LC_ALL'] == 'C'
    assert dict((k, seen.get(k)) for k in ('LANG', 'LC_MESSAGES', 'RBD_TEST_MARKER', 'PYTHONPATH', 'PATH')) == dict(
        LANG='de_DE.UTF-8', LC_MESSAGES='de_DE.UTF-8', RBD_TEST_MARKER='kept', PYTHONPATH='/somewhere',
        PATH=os.environ['PATH'])


@pytest.mark.parametrize('start', [_env_by_spawn, _env_by_worker])
def test_a_given_env_is_the_childs_whole_environment_with_lc_all_c(start):
    given = {'PATH': os.environ['PATH'], 'PYTHONPATH': '/fake/rados', 'FAKE_RBD': '{"dir": "/x"}',
             'LANG': 'de_DE.UTF-8'}
    assert start(env=given) == dict(given, LC_ALL='C')


def test_wait_for():
    proc = P.spawn(['sleep', '30'], P.DEVNULL, P.DEVNULL, P.DEVNULL)
    t0 = time.monotonic()
    assert P.wait_for(proc, 0.2) is None and time.monotonic() - t0 < 5
    P.kill_group(proc)
    assert P.wait_for(proc, 10) == -9


# -- ssh -O exit is bounded -------------------------------------------------------------------------------------

class _Helpers:
    closed = False

    def close(self):
        self.closed = True


def test_remote_close_bounds_ssh_o_exit(tmp_path, monkeypatch):
    """A multiplexing master that does not answer ``ssh -O exit``: close() gives up after EXIT_TIMEOUT."""
    bindir, calls = tmp_path / 'bin', tmp_path / 'calls'
    bindir.mkdir()
    (bindir / 'ssh').write_text('#!/bin/sh\necho "$@" >> %s\nexec sleep 3600\n' % calls)
    (bindir / 'ssh').chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    remote = _remote.Remote.__new__(_remote.Remote)      # no ssh connection: only what close() uses
    remote.host, remote.rbd = 'backup.example', _Helpers()
    remote.control_dir = str(tmp_path / 'cm-dir')
    remote.control_path = os.path.join(remote.control_dir, 'cm')
    os.mkdir(remote.control_dir)
    open(remote.control_path, 'w').close()
    monkeypatch.setattr(_remote.Remote, 'EXIT_TIMEOUT', 1)
    closer = threading.Thread(target=remote.close, daemon=True)
    t0 = time.monotonic()
    closer.start()
    closer.join(timeout=20)
    assert not closer.is_alive() and time.monotonic() - t0 < 10
    assert calls.read_text().split() == ['-o', 'ControlPath=%s' % remote.control_path, '-O', 'exit', 'backup.example']
    assert remote.rbd.closed and not os.path.exists(remote.control_dir)


# -- the stderr parsing with a German locale installed ----------------------------------------------------------

@pytest.fixture(scope='module')
def german(tmp_path_factory):
    """The environment of a German user: de_DE.UTF-8 compiled with localedef into a temporary LOCPATH."""
    if not shutil.which('localedef') or not os.path.exists('/usr/share/i18n/locales/de_DE'):
        pytest.skip("no locale source to compile de_DE.UTF-8 from: Debian's locales package is not installed")
    locpath = tmp_path_factory.mktemp('locales')
    r = subprocess.run(['localedef', '-i', 'de_DE', '-f', 'UTF-8', str(locpath / 'de_DE.UTF-8')],
                       capture_output=True, text=True, check=False, env=dict(os.environ, LC_ALL='C'))
    assert (locpath / 'de_DE.UTF-8' / 'LC_MESSAGES').is_dir(), 'localedef failed: %s' % r.stderr
    return dict(GERMAN, LOCPATH=str(locpath))


def untranslated_runner(argv, timeout, stdin_data=None):
    """What the runner did before _proc set LC_ALL: the child in the caller's locale."""
    r = subprocess.run(argv, input=stdin_data, capture_output=True, text=True, timeout=timeout, check=False)
    return r.returncode, r.stdout, r.stderr


def needs_translation(argv, english, env, package):
    """The control: ``argv`` run in the German environment must not say ``english`` (else its catalogue is
    missing and a pass below would prove nothing); returns what it said."""
    err = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, **env), check=False).stderr
    if english in err:
        pytest.skip('%s printed English under de_DE.UTF-8 (%r): install %s' % (argv[0], err.strip(), package))
    return err


def test_a_translated_tool_speaks_english_through_proc(german, tmp_path, monkeypatch):
    missing = str(tmp_path / 'missing')
    said = needs_translation(['ls', missing], 'No such file or directory', german, "Debian's libc-l10n")
    for k, v in german.items():
        monkeypatch.setenv(k, v)
    rc, _out, err = P.run(['ls', missing], 30)
    assert rc == 2 and err.strip() == "ls: cannot access '%s': No such file or directory" % missing, (err, said)


@pytest.fixture
def german_rbd(german, tmp_path, monkeypatch):
    """An ``rbd`` stand-in that fails like rbd on a missing image: libc's strerror text (rbd's '(2) No such
    file or directory'), translated where the locale says so; rc 1, so that only the text can tell."""
    script = tmp_path / 'rbd'
    script.write_text('#!/bin/sh\nls %s/missing-image >/dev/null\nexit 1\n' % tmp_path)
    script.chmod(0o755)
    needs_translation([str(script)], 'No such file', german, "Debian's libc-l10n")
    for k, v in german.items():
        monkeypatch.setenv(k, v)
    return str(script)


MISSING_IMAGE = [
    ('info', lambda rbd: rbd.info('p', 'img'), None),
    ('snapshots_or_none', lambda rbd: rbd.snapshots_or_none('p', 'img'), None),
    ('meta_get', lambda rbd: rbd.meta_get('p', 'img', 'key'), None),
    ('watchers', lambda rbd: rbd.watchers('p', 'img'), []),
    ('pool_exists', lambda rbd: rbd.pool_exists('p'), False),
]


@pytest.mark.parametrize('name, call, absent', MISSING_IMAGE, ids=[m[0] for m in MISSING_IMAGE])
def test_rbd_error_parsing_under_a_german_locale(german_rbd, name, call, absent):
    assert call(Rbd(binary=german_rbd, timeout=30)) == absent


@pytest.mark.parametrize('name, call, absent', MISSING_IMAGE, ids=[m[0] for m in MISSING_IMAGE])
def test_rbd_error_parsing_without_lc_all_misreads_german(german_rbd, name, call, absent):
    """The control: the same call in the user's locale takes the missing image for a failure."""
    with pytest.raises(RbdError, match='Datei oder Verzeichnis nicht gefunden'):
        call(Rbd(binary=german_rbd, timeout=30, runner=untranslated_runner))


@pytest.fixture
def unpartitioned(german, tmp_path, monkeypatch):
    """A work directory whose image has no partition table, and the German environment."""
    if not shutil.which('sfdisk'):
        pytest.skip("sfdisk is not installed (Debian's fdisk)")
    with open(str(tmp_path / 'image.raw'), 'wb') as f:
        f.truncate(4 << 20)
    needs_translation(['sfdisk', '--json', str(tmp_path / 'image.raw')],
                      'does not contain a recognized partition table', german, "Debian's util-linux-locales")
    for k, v in german.items():
        monkeypatch.setenv(k, v)
    return str(tmp_path)


def test_sfdisk_no_table_under_a_german_locale(unpartitioned):
    assert Exposure(unpartitioned, P.run, 30).partition_table() is None


def test_sfdisk_no_table_without_lc_all_misreads_german(unpartitioned):
    with pytest.raises(CommandError, match='keine erkannte Partitionstabelle'):
        Exposure(unpartitioned, untranslated_runner, 30).partition_table()
