# -*- coding: utf-8 -*-
"""Every child _proc starts runs in the C locale.

- the child's environment is the caller's (or os.environ) with LC_ALL=C, for each way _proc starts one;
- with a German locale really installed (``localedef`` into a temporary LOCPATH, no root needed) the stderr
  texts the callers match - libc's strerror as rbd prints it, sfdisk's "no partition table" - come through
  _proc in English, while the same tools run without it answer in German (the control that shows the test
  can fail).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

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


GERMAN = {'LANG': 'de_DE.UTF-8', 'LC_MESSAGES': 'de_DE.UTF-8', 'LANGUAGE': 'de_DE:de', 'LC_ALL': 'de_DE.UTF-8'}


@pytest.mark.parametrize('start', [_env_by_spawn, _env_by_run, _env_by_chain])
def test_every_child_gets_lc_all_c_and_the_parents_environment(monkeypatch, start):
    for k, v in dict(GERMAN, RBD_TEST_MARKER='kept', PYTHONPATH='/somewhere').items():
        monkeypatch.setenv(k, v)
    seen = start()
    assert seen['LC_ALL'] == 'C'
    assert dict((k, seen.get(k)) for k in ('LANG', 'LC_MESSAGES', 'RBD_TEST_MARKER', 'PYTHONPATH', 'PATH')) == dict(
        LANG='de_DE.UTF-8', LC_MESSAGES='de_DE.UTF-8', RBD_TEST_MARKER='kept', PYTHONPATH='/somewhere',
        PATH=os.environ['PATH'])


@pytest.mark.parametrize('start', [_env_by_spawn])
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
