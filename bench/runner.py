"""The bench's state and its ways to run things: pools, role runs, baseline scripts, the safety guards."""

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Tuple

from . import analysis, link
from .cluster import Bed, Cluster, testbed_env
from .common import GiB, HERE, PLAYBOOK, RUN_ID, NoSpace, human, log
from .watch import ProcWatcher


class Bench:
    """One bench run: the test bed, the pools it made, the /proc watcher, the results and notes so far."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.env = testbed_env()
        self.bed = Bed(self.env)
        self.pools = []                        # pools we created (on both clusters)
        self.tmp = tempfile.mkdtemp(prefix='rbd-bench-')
        self.remote_tmp = '/root/.ansible/tmp/bench-%s-%d' % (RUN_ID, os.getpid())
        marker = 'python3-bench-%s-%d' % (RUN_ID, os.getpid())
        self.python = os.path.join(self.tmp, 'python3')
        with open(self.python, 'w') as f:
            f.write('#!/bin/bash\nexec -a %s /usr/bin/python3 "$@"\n' % marker)
        os.chmod(self.python, 0o755)
        self.watcher = ProcWatcher(marker, self.python)
        self.watcher.start()
        self.results = collections.OrderedDict()
        self.p1_ready = None                   # the p1 image, shared by p1, p3 and p4
        self.p4_large = None                   # the p3 runs' module peaks, for p4
        self.p2_ready = None                   # the p2 pools, for prof
        self.notes = []
        self._runs = 0

    # -- pools ----------------------------------------------------------
    def make_pool(self, case: str, clusters: Optional[Sequence[Cluster]] = None) -> str:
        """Pool ``bench-<case>-<run id>`` on both clusters (or on ``clusters``)."""
        name = 'bench-%s-%s' % (case, RUN_ID)
        for c in clusters or (self.bed.src, self.bed.dst):
            c.create_pool(name)
        self.pools.append(name)
        return name

    def drop_pool(self, name: str) -> None:
        for c in (self.bed.src, self.bed.dst):
            c.remove_pool(name)
        if name in self.pools:
            self.pools.remove(name)

    def preflight(self) -> None:
        """Refuse to start on an unhealthy bed: a full OSD blocks every write (the run would hang)."""
        link.link_down()     # a shaped link left by a killed run
        for c in (self.bed.src, self.bed.dst):
            proc = c.run('health', tool='ceph', check=False, timeout=60)
            text = (proc.stdout + proc.stderr).decode(errors='replace').strip()
            if proc.returncode != 0 or 'full' in text.lower() or 'osd(s) down' in text.lower():
                raise RuntimeError('the %s cluster is not usable: %s' % (c.name, text[:300]))

    def cleanup(self) -> None:
        """At the end (also after Ctrl-C / SIGTERM): no shaped link, no pools (unless --keep-pools)."""
        link.link_down()
        for name in list(self.pools):
            if self.args.keep_pools:
                log('keeping pool %s (--keep-pools)' % name)
                continue
            try:
                self.drop_pool(name)
                log('removed pool %s on both clusters' % name)
            except Exception as e:  # pragma: no cover
                log('could not remove pool %s: %s' % (name, e))
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.remote_tmp, ignore_errors=True)

    # -- baseline scripts -----------------------------------------------
    def bash(self, script: str, timeout: Optional[int] = None) -> Tuple[float, int, List[Tuple[str, float]], str]:
        """Run a bash script (set -euo pipefail); return (wall seconds, rc, step stamps, stderr).
        After --run-timeout s it is killed, with the rbd processes it started on the other "host"."""
        t0 = time.monotonic()
        proc = subprocess.Popen(['bash', '-c', 'set -euo pipefail\nt() { echo "T $1 $EPOCHREALTIME" >&2; }\n'
                                 + script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout or self.args.run_timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.kill_remote_rbd()
            out, err = proc.communicate()
            err += '\nKILLED after %ds' % (timeout or self.args.run_timeout)
            self.notes.append('a baseline command hung and was killed after %ds: %s' % (
                timeout or self.args.run_timeout, script.strip().splitlines()[-1][:200]))
        wall = time.monotonic() - t0
        stamps = []
        other = []
        for line in err.splitlines():
            if line.startswith('T '):
                _t, name, ts = line.split()
                stamps.append((name, float(ts)))
            else:
                other.append(line)
        return wall, proc.returncode, stamps, '\n'.join(other) + out

    @staticmethod
    def kill_remote_rbd() -> None:
        """SIGKILL rbd processes working on our pools (names end in our run id): ours by construction."""
        tag = ('-%s/' % RUN_ID).encode()
        for d in os.listdir('/proc'):
            if not d.isdigit():
                continue
            try:
                with open('/proc/%s/cmdline' % d, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == b'rbd' and any(tag in a for a in argv):
                try:
                    os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass

    # -- role runs ------------------------------------------------------
    def run_bounded(self, cmd: List[str], logfile: IO, env: Dict[str, str], label: str,
                    timeout: Optional[int] = None) -> subprocess.Popen:
        """Run an ansible command; after ``timeout`` (default --run-timeout) s kill it and our module
        processes (a module can hang: the bench must not).  Returns the Popen with returncode (-9 when it was
        killed)."""
        timeout = timeout or self.args.run_timeout
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stuck = self.watcher.live()
            log('%s: no end after %ds: killing it and our module processes %s (%s)' % (
                label, timeout, [p['pid'] for p in stuck],
                ', '.join('%s %.0fs' % (p['module'] or '?', time.time() - p['first']) for p in stuck)))
            self.notes.append('%s hung for %ds and was killed; stuck module processes: %s' % (
                label, timeout, ', '.join(
                    '%s (pid %d, %.0fs)' % (p['module'] or '?', p['pid'], time.time() - p['first']) for p in stuck)))
            self.kill_modules()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        return proc

    def kill_modules(self) -> None:
        """SIGKILL the module processes of our own runs still alive (marked with our wrapper's argv[0])."""
        for p in self.watcher.live():
            try:
                with open('/proc/%d/cmdline' % p['pid'], 'rb') as f:
                    if f.read().split(b'\0')[0] != self.watcher.marker:
                        continue
                os.kill(p['pid'], signal.SIGKILL)
            except OSError:
                pass

    def role(self, pool: str, extra: Optional[dict] = None, label: str = '',
             env_extra: Optional[Dict[str, str]] = None, inventory: Optional[str] = None,
             playbook: str = PLAYBOOK, timeout: Optional[int] = None) -> dict:
        """One ansible-playbook run of the replicate playbook, or ``playbook`` (the test bed's inventory, or
        ``inventory``), killed after ``timeout`` s (default --run-timeout); returns wall time, rc, per-task
        times, the set_stats data (``custom``)."""
        self._runs += 1
        out = os.path.join(self.tmp, 'timer-%d.json' % self._runs)
        logf = os.path.join(self.tmp, 'play-%d.log' % self._runs)
        evars = dict(rbd_replicate_pools=[dict(pool=pool)])
        evars.update(extra or {})
        env = self.bed.ansible_env(dict(
            ANSIBLE_CALLBACK_PLUGINS=str(HERE / 'callback_plugins'), ANSIBLE_CALLBACKS_ENABLED='bench_timer',
            BENCH_TIMER_OUT=out, ANSIBLE_REMOTE_TEMP=self.remote_tmp, ANSIBLE_LOCAL_TEMP=self.tmp), env_extra or {})
        evars['ansible_python_interpreter'] = self.python
        cmd = ['ansible-playbook', '-i', inventory or self.bed.inventory, playbook, '-e', json.dumps(evars)]
        w0 = time.time()
        t0 = time.monotonic()
        with open(logf, 'w') as f:
            proc = self.run_bounded(cmd, f, env, label, timeout)
        wall = time.monotonic() - t0
        w1 = time.time()
        timer = {}
        if os.path.exists(out):
            with open(out) as f:
                timer = json.load(f)
        text = Path(logf).read_text(errors='replace')
        if proc.returncode != 0:
            log('role run %s FAILED rc=%d: %s' % (label, proc.returncode, text[-1500:]))
        procs = analysis.attribute(self.watcher.take(w0, w1), timer.get('tasks', []))
        return dict(wall=wall, rc=proc.returncode, w0=w0, w1=w1, tasks=timer.get('tasks', []),
                    custom=timer.get('custom', {}), procs=procs, tail=text[-800:] if proc.returncode else '')

    # -- disk ----------------------------------------------------------
    def ensure_space(self, src_bytes: int, dst_bytes: int, what: str, wait: int = 90) -> None:
        """ensure_space_now, retried for ``wait`` seconds: removed pools free their space progressively."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.ensure_space_now(src_bytes, dst_bytes, what)
            except NoSpace:
                if time.monotonic() > deadline:
                    raise
                time.sleep(10)

    def ensure_space_now(self, src_bytes: int, dst_bytes: int, what: str) -> None:
        """Refuse to write when a test-bed OSD or the host disk could fill up.

        The OSDs are sparse files; bluestore spreads its writes over the whole device, so a file grows
        with the bytes written, and an OSD that fills blocks everybody's I/O.  Before each heavy step:
        each OSD must stay under --max-osd-use of its device after the step's writes (snapshots keep
        old data), and the host disk must keep --min-free GiB even if the files grow by that much."""
        growth = 0
        for cluster, nbytes in ((self.bed.src, src_bytes), (self.bed.dst, dst_bytes)):
            try:
                used, size = _osd_usage(cluster)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
                raise NoSpace('cannot read the %s OSD usage (%s): not writing' % (cluster.name, e)) from e
            if used + nbytes > self.args.max_osd_use * size:
                raise NoSpace('%s would write ~%s on the %s cluster, whose OSD has %s of %s allocated '
                              '(limit %.0f%%, --max-osd-use)' % (what, human(nbytes), cluster.name, human(used),
                                                                 human(size), 100 * self.args.max_osd_use))
            st = os.stat(os.path.join(os.path.dirname(cluster.conf), 'osd0.img'))
            growth += min(nbytes, max(0, st.st_size - st.st_blocks * 512))
        free = disk_free(self.env['RBD_TESTBED_DIR'])
        if free < growth * 1.15 + self.args.min_free * GiB:
            raise NoSpace('%s could grow the OSD files by ~%s, the host disk has %s free (keeping %g GiB, '
                          '--min-free)' % (what, human(growth), human(free), self.args.min_free))


def _osd_usage(cluster):
    """(allocated bytes, device bytes) of a test-bed OSD, from its admin socket and its block file."""
    d = os.path.dirname(cluster.conf)
    block = os.path.join(d, 'osd0.img')
    proc = subprocess.run(['ceph', '--admin-daemon', os.path.join(d, 'run', 'osd.0.asok'), 'perf', 'dump'],
                          capture_output=True, text=True, timeout=30, check=False)
    perf = json.loads(proc.stdout)
    used = perf['bluestore']['bluestore_allocated'] + perf['bluefs'].get('db_used_bytes', 0)
    return used, os.stat(block).st_size


def disk_free(path: str) -> int:
    """Bytes free for us on the file system of ``path``."""
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize
