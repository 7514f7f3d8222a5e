# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way this collection starts, bounds and kills processes: no other module imports ``subprocess``
(tests/unit/plugins/module_utils/test_proc.py fails when one does).

- argv only, never a shell string (a remote shell gets one quoted word per argv element: :func:`quote`);
- every process in a process group of its own, so a kill takes its children too (ssh's, bash's);
- every process in the C locale (:func:`child_env`): the stderr texts the callers match (rbd's
  ``No such file``, sfdisk's ``does not contain a recognized partition table``) are English whatever
  the user's ``LANG``/``LC_*`` say;
- :func:`run` for a command run to its end, :func:`start_chain` for a pipeline, :func:`spawn` for a
  long-lived child the caller talks to (the librbd children, ``rbd export`` read by a thread);
- an overall timeout (:func:`run`) or, for pipelines, an inactivity timeout (the caller's pump) and a bound
  on how long a stage may take to finish once its input ended (:func:`wait_stages`);
- the exit code and the stderr tail of every stage, and one error family (:class:`CommandError`).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import shlex
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

STDERR_TAIL = 2000

# the callers' stdin/stdout/stderr for :func:`spawn` (so that they need not import subprocess)
PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL

# The locale of every child.  LC_ALL wins over LANG and every LC_* variable, and in the C locale gettext
# ignores LANGUAGE: rbd's strerror texts and util-linux's messages come out untranslated.
CHILD_LOCALE = 'C'


def quote(argv: Sequence[str]) -> str:
    """Pure: one shell-safe command string from an argv (each word quoted once)."""
    return ' '.join(shlex.quote(a) for a in argv)


class CommandError(Exception):
    """A command (or a stage of a pipeline) failed.  ``str()`` names the image, the command, rc and stderr."""

    def __init__(self, msg, cmd=None, rc=None, stderr=None, image=None, stage=None):
        super(CommandError, self).__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stderr = (stderr or '').strip()
        self.image = image
        self.stage = stage

    def __str__(self):
        parts = ['image %s: ' % self.image if self.image else '', self.msg]
        if self.cmd:
            parts.append(' (command: %s%s)' % (quote(self.cmd), ', rc=%s' % self.rc if self.rc is not None else ''))
        if self.stderr:
            parts.append(': %s' % self.stderr[-STDERR_TAIL:])
        return ''.join(parts)

    def as_dict(self):
        return dict(msg=str(self), cmd=self.cmd, rc=self.rc, stderr=self.stderr)


F_SETPIPE_SZ = 1031      # Linux (fcntl has no name for it before Python 3.10)


def grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """Make the pipe ``fd`` hold ``size`` bytes (64 KiB by default: a writer and its reader take turns);
    where the system refuses, the pipe stays as it is."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:
        pass


def child_env(base: Mapping[str, str]) -> Dict[str, str]:
    """Pure: the environment of a child - every variable of ``base`` (the caller's env, or os.environ: a
    librbd child needs its PYTHONPATH, PATH, CEPH_* ...) and LC_ALL=C over whatever locale it named."""
    env = dict(base)
    env['LC_ALL'] = CHILD_LOCALE
    return env


def spawn(argv: Sequence[str], stdin: Any, stdout: Any, stderr: Any,
          env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """Start argv (no shell) in a process group of its own, in the C locale (:func:`child_env` of ``env``,
    by default of os.environ), with no other fd of ours; ``stdin``/``stdout``/``stderr``: PIPE, DEVNULL, a
    file or an fd.  The caller bounds, kills (:func:`kill_group`) and reaps (:func:`wait_for`) it.
    Raises OSError when it cannot start."""
    return subprocess.Popen(list(argv), stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True,
                            close_fds=True, env=child_env(os.environ if env is None else env))


def wait_for(proc: subprocess.Popen, timeout: float) -> Optional[int]:
    """The exit code of ``proc``, waiting ``timeout`` s at most; None when it still runs then."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process started by this module and everything in its process group."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def run(argv: Sequence[str], timeout: float, stdin_data: Optional[str] = None) -> Tuple[int, str, str]:
    """Run argv (no shell) to its end; kill its whole process group after ``timeout`` s.

    Returns ``(rc, stdout, stderr)`` as text; rc -9 and a message when it timed out, 127 when it cannot start.
    """
    try:
        proc = spawn(argv, PIPE if stdin_data is not None else DEVNULL, PIPE, PIPE)
    except OSError as e:
        return 127, '', 'cannot run %s: %s' % (argv[0], e)
    try:
        out, err = proc.communicate(input=stdin_data.encode() if stdin_data is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        return -9, '', 'timed out after %s s (killed)' % timeout
    return proc.returncode, out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')


class Stage:
    """One process of a pipeline: its name for messages, argv, Popen and stderr (kept in a file, never a pipe
    that could fill up and block it)."""

    def __init__(self, name, argv, proc, errfile):
        self.name, self.argv, self.proc, self.errfile = name, argv, proc, errfile

    def stderr(self):
        try:
            self.errfile.seek(0)
            return self.errfile.read().decode('utf-8', 'replace')
        except (OSError, ValueError):
            return ''


def start_chain(named_argvs: Sequence[Tuple[str, List[str]]], first_stdin: Any, last_stdout: Any) -> List[Stage]:
    """Start ``a | b | c`` (a list of ``(name, argv)``) with a given stdin for a and stdout for c.

    If a stage cannot start, the stages already started are killed before the error propagates.
    """
    stages = []
    prev = first_stdin
    try:
        for i, (name, argv) in enumerate(named_argvs):
            errfile = tempfile.TemporaryFile()
            proc = spawn(argv, prev, last_stdout if i == len(named_argvs) - 1 else PIPE, errfile)
            if i > 0:
                prev.close()
            stages.append(Stage(name, argv, proc, errfile))
            prev = proc.stdout
    except Exception:
        kill_all(stages)
        raise
    return stages


def kill_all(stages: Iterable[Stage]) -> None:
    for st in stages:
        kill_group(st.proc)


def exited(stages: Iterable[Stage]) -> Dict[int, int]:
    """The exit codes of the stages that have already ended, by stage: taken before killing the rest, so
    that a failure is blamed on a stage that died on its own, not on one we killed."""
    return dict((id(st), st.proc.returncode) for st in stages if st.proc.poll() is not None)


def wait_stages(stages: Sequence[Stage], timeout: float) -> Optional[str]:
    """Wait for every stage to end, ``timeout`` s at most in all; kill them all past it.

    Returns the name of the first stage that did not end in time, or None.
    """
    deadline = time.monotonic() + timeout
    late = None
    for st in stages:
        if wait_for(st.proc, max(1, deadline - time.monotonic())) is None:
            kill_all(stages)
            st.proc.wait()
            late = late or st.name
    return late


def first_failure(stages: Sequence[Stage], codes: Optional[Dict[int, Optional[int]]] = None) -> Optional[Tuple[Stage, int]]:
    """The first stage, in pipe order, that exited non-zero (``codes``: exit codes by stage id, see
    :func:`exited`; default: every stage's own), as ``(stage, rc)``, or None."""
    for st in stages:
        rc = codes.get(id(st)) if codes is not None else st.proc.returncode
        if rc is not None and rc != 0:
            return st, rc
    return None
