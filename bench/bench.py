#!/usr/bin/env python3
"""Benchmark of the ceph_rbd.backup collection against the old per-image script (a benchmark, not a test).

Runs against the two-cluster test bed (``bash tests/testbed/testbed.sh up``; ``make bench`` does that
first).  Every case measures the role and its baseline *side by side in the same run*, alternating
which one goes first, and reports medians of N runs and the ratio between them: absolute seconds on a
shared 2-core machine mean little, ratios measured together mean more.  See bench/README.md.

Cases (``--cases``, run in this order):

  p1    throughput: SIZE of fresh changes on one image (unique random bytes, 1/16 zero runs), one
        incremental run of the role (``rbd_replicate_verify: extents``; ``rbd_replicate_retention_dest:
        {last: 1}`` so that the test bed's small backup OSD holds 2 versions of the image, not 4: the
        prune step still removes one snapshot per run, as in a steady state) vs the old script's steps (snap
        create; export-diff | ssh import-diff with OpenSSH's default cipher; rbd diff | md5sum on both
        sides) on the same source image (its own snapshots) into an image of another backup pool.
  p3    role runs on SIZE of fresh changes with verify none, data (against the digest the transfer takes
        of its stream: the role's default) and data with a second read of the source, in rotating
        order: what a verify variant adds = its median minus verify none's, / the transfer seconds.
  p4    peak RSS (VmHWM) of the module processes, polled from /proc at 20 Hz: in the p3 role runs
        (SIZE) and in role runs on a small change (verify data): flat, and under 100 MiB?
  p1z   as p1 with ``rbd_replicate_compression: zstd`` on partly compressible data (per MiB: 512 KiB
        random, 448 KiB log text, 64 KiB zeros) vs the old script on the same data, both over an ssh
        link shaped to --link (default 1gbit: an off-site link; tc htb on lo for the ssh port only;
        ``--link none``: plain loopback, where bandwidth is free and zstd only costs CPU).
  ovh   the fixed cost of a role run (1 unchanged 1 MiB image), ssh pipelining off vs on.
  ab    ``rbd import-diff -`` (stdin: one write in flight) vs ``rbd import-diff /dev/stdin`` (another
        fd: rbd_concurrent_management_ops writes in flight), same diff, direct local pipe, no ssh.
  p2    scale: COUNT images of 1 MiB with a few KiB written, replicated once, nothing changed: a full
        nightly role run vs a serial per-image CLI loop (snap create; ssh snap ls for the base;
        export-diff | ssh import-diff; rbd diff | md5sum both sides; snap rm both sides), the loop
        timed on a SAMPLE of images and scaled to COUNT.
  prof  after p2: the transfer code in-process on a few unchanged images, every client call timed,
        stream as is vs over the multiplexed ssh connection; and the same queries through python3-rbd.

Writes bench/results/latest.json (and a time-stamped copy) and prints a markdown table.  Only pools
named ``bench-<case>-<run id>`` are created and they are removed at the end.  Before each heavy step
it checks that neither a test-bed OSD nor the host disk can fill up (--max-osd-use, --min-free), and
it kills an ansible run (and its own module processes) that hangs (--run-timeout).
"""

import argparse
import collections
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / 'tests' / 'integration'))
import conftest  # noqa: E402  (the integration suite's Bed/Cluster helpers)
from conftest import Bed, librbd  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
PLAYBOOK = 'ceph_rbd.backup.replicate'
RUN_ID = '%04x' % (os.getpid() & 0xffff)
T_START = time.monotonic()


def log(msg):
    sys.stderr.write('[bench %6.0fs] %s\n' % (time.monotonic() - T_START, msg))
    sys.stderr.flush()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def human(n):
    for unit, div in (('GiB', GiB), ('MiB', MiB), ('KiB', 1024)):
        if n >= div:
            v = n / div
            return ('%d %s' % (v, unit)) if v == int(v) else ('%.1f %s' % (v, unit))
    return '%d B' % n


# --------------------------------------------------------------------------- data

ZERO_RUN = 64 * 1024


def _log_text(n):
    lines = []
    i = 0
    size = 0
    while size < n:
        line = ('2026-11-26T03:%02d:%02d.%06dZ web-%02d nginx[%d]: 10.1.%d.%d - - "GET /api/v1/items/%d?page=%d '
                'HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.%03d\n'
                % (i // 60 % 60, i % 60, (i * 7919) % 1000000, i % 16, 1000 + i % 97, i % 256, (i * 13) % 256,
                   i * 31 % 100000, i % 50, (200, 200, 200, 304, 404)[i % 5], 512 + i * 17 % 9000, i % 1000))
        lines.append(line)
        size += len(line)
        i += 1
    return ''.join(lines).encode()[:n]


_TEXT = None


def make_chunk(n, kind, salt=0):
    """n bytes (a multiple of 1 MiB) of fresh data.

    random:        per MiB, unique random bytes with one 64 KiB zero run (inside a 4 MiB object, so the
                   extent lists of both sides stay equal after import-diff re-sparsifies the zeros).
    compressible:  per MiB, 256 KiB random, 64 KiB zeros, 448 KiB log text, 256 KiB random (zstd -1: ~0.55).
    """
    global _TEXT
    assert n % MiB == 0
    if kind == 'random':
        buf = bytearray(os.urandom(n))
        for m in range(n // MiB):
            z = ((m + salt) * 37 % 15) * ZERO_RUN
            buf[m * MiB + z:m * MiB + z + ZERO_RUN] = bytes(ZERO_RUN)
        return bytes(buf)
    if kind == 'compressible':
        if _TEXT is None:
            _TEXT = _log_text(MiB - MiB // 2 - ZERO_RUN)
        rnd = os.urandom(n // 2)
        parts = []
        q = MiB // 4
        zeros = bytes(ZERO_RUN)
        for m in range(n // MiB):
            # the zero run never reaches the end of a 4 MiB object: import-diff would truncate the
            # object there and the extents check (rbd diff of both sides) would then differ
            parts += [rnd[2 * m * q:(2 * m + 1) * q], zeros, _TEXT, rnd[(2 * m + 1) * q:(2 * m + 2) * q]]
        return b''.join(parts)
    raise ValueError(kind)


def write_fresh(cluster, targets, size, kind, offset=0, chunk=16 * MiB, inflight=8):
    """Write the same fresh `size` bytes at `offset` to every (pool, image) of `targets` (librbd aio)."""
    ios, imgs = [], []
    try:
        for pool, image in targets:
            io = cluster.cluster.open_ioctx(pool)
            ios.append(io)
            imgs.append(librbd.Image(io, image))
        pending = collections.deque()
        errors = []

        def drain(limit):
            while len(pending) > limit:
                comp, _buf = pending.popleft()
                comp.wait_for_complete_and_cb()
                r = comp.get_return_value()
                if r < 0:
                    errors.append(r)

        salt = int(time.time())
        for off in range(offset, offset + size, chunk):
            n = min(chunk, offset + size - off)
            buf = make_chunk(n, kind, salt + off // MiB)
            for img in imgs:
                pending.append((img.aio_write(buf, off, lambda c: None), buf))
            drain(inflight)
        drain(0)
        if errors:
            raise RuntimeError('aio_write failed: %s' % errors[:3])
    finally:
        for img in imgs:
            img.close()
        for io in ios:
            io.close()


# --------------------------------------------------------------------------- /proc watcher

class ProcWatcher(threading.Thread):
    """Polls /proc for the module python processes of our own ansible runs and records, per process:
    first/last seen, peak VmHWM/VmRSS, CPU seconds, and the peak RSS of its direct children (rbd, ssh,
    zstd).  Our runs use a python wrapper (ansible_python_interpreter) that execs /usr/bin/python3 under
    the argv[0] ``marker``: with ssh pipelining (the test bed's inventory) the command line of a module
    process names no module, so the module is the one of the task that was running when it started."""

    def __init__(self, marker, wrapper=None, interval=0.05):
        super().__init__(daemon=True)
        self.marker = marker.encode()
        self.wrapper = wrapper.encode() if wrapper else None
        self.ignore = set()
        self.interval = interval
        self.active = {}
        self.done = []
        self._halt = threading.Event()
        self.lock = threading.Lock()
        self.tick = os.sysconf('SC_CLK_TCK')

    def run(self):
        while not self._halt.is_set():
            try:
                self.poll()
            except Exception as e:  # pragma: no cover - never let the watcher die
                log('watcher: %s' % e)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(5)
        self.poll()
        with self.lock:
            for pid in list(self.active):
                self.done.append(self.active.pop(pid))

    @staticmethod
    def _read(path):
        with open(path, 'rb') as f:
            return f.read()

    def _status(self, pid):
        st = {}
        for line in self._read('/proc/%d/status' % pid).decode(errors='replace').splitlines():
            k, _, v = line.partition(':')
            if k in ('VmHWM', 'VmRSS'):
                st[k] = int(v.split()[0]) * 1024
        stat = self._read('/proc/%d/stat' % pid).decode(errors='replace')
        fields = stat[stat.rfind(')') + 2:].split()
        st['cpu'] = (int(fields[11]) + int(fields[12])) / self.tick
        return st

    def _ppid(self, pid):
        try:
            stat = self._read('/proc/%d/stat' % pid).decode(errors='replace')
            return int(stat[stat.rfind(')') + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def poll(self):
        now = time.time()
        pids = set(int(p) for p in os.listdir('/proc') if p.isdigit())
        with self.lock:
            for pid in list(self.active):
                if pid not in pids:
                    self.done.append(self.active.pop(pid))
            for pid in self.ignore - pids:
                self.ignore.discard(pid)
            for pid in pids:
                if pid in self.active or pid in self.ignore:
                    continue
                try:
                    cmd = self._read('/proc/%d/cmdline' % pid)
                except OSError:
                    continue
                argv = cmd.split(b'\0')
                if argv[0] != self.marker:
                    # read every new process once; only a future module process (the wrapper, or the
                    # shell that runs it, or a fork of them) is read again until it execs python
                    if not (self.wrapper and self.wrapper in cmd) and cmd:
                        self.ignore.add(pid)
                    continue
                if self._ppid(pid) in self.active:
                    continue       # a child the module forked, caught before its exec
                m = re.search(rb'AnsiballZ_(\w+)\.py', cmd)
                self.active[pid] = dict(pid=pid, module=m.group(1).decode() if m else None, first=now, last=now,
                                        hwm=0, rss=0, cpu=0.0, children={}, cmd=cmd)
            for pid, rec in list(self.active.items()):
                try:
                    if self._read('/proc/%d/cmdline' % pid) != rec['cmd']:
                        del self.active[pid]     # exec'd: it was not a module process
                        continue
                    st = self._status(pid)
                except (OSError, ValueError, IndexError):
                    continue
                rec['last'] = now
                rec['hwm'] = max(rec['hwm'], st.get('VmHWM', 0))
                rec['rss'] = max(rec['rss'], st.get('VmRSS', 0))
                rec['cpu'] = max(rec['cpu'], st['cpu'])
                try:
                    kids = self._read('/proc/%d/task/%d/children' % (pid, pid)).split()
                except OSError:
                    kids = []
                for k in kids:
                    k = int(k)
                    try:
                        kc = self._read('/proc/%d/cmdline' % k).split(b'\0')
                        kst = self._status(k)
                    except (OSError, ValueError, IndexError):
                        continue
                    name = os.path.basename(kc[0]).decode(errors='replace')
                    if name == 'rbd':
                        name = 'rbd ' + next((a.decode() for a in kc[1:] if a in (
                            b'import-diff', b'export-diff', b'export', b'diff')), '?')
                    key = '%s[%d]' % (name, k)
                    rec['children'][key] = max(rec['children'].get(key, 0), kst.get('VmHWM', 0))

    def live(self):
        with self.lock:
            return [dict(pid=p['pid'], module=p['module'], first=p['first']) for p in self.active.values()]

    def take(self, t0, t1):
        """Finished (or still running) records that started within [t0, t1]."""
        with self.lock:
            recs = [r for r in self.done + list(self.active.values()) if t0 <= r['first'] <= t1]
        return [dict((k, v) for k, v in r.items() if k != 'cmd') for r in recs]


# --------------------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        env = conftest._env_file(os.path.join(os.environ.get('RBD_TESTBED_DIR', '/tmp/rbd-testbed'), 'env.sh'))
        self.bed = Bed(env)
        self.env = env
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
        self.ssh = ['ssh', '-p', str(env.get('SSH_PORT', 2222)), '-o', 'BatchMode=yes',
                    '-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % env['RBD_TESTBED_DIR'],
                    '-o', 'StrictHostKeyChecking=yes', 'root@%s' % env.get('DST_HOST', '127.0.0.3')]
        self.p1_ready = None
        self.p4_large = None
        self.notes = []
        self._runs = 0

    # -- pools ----------------------------------------------------------
    def make_pool(self, case, clusters=None):
        name = 'bench-%s-%s' % (case, RUN_ID)
        for c in clusters or (self.bed.src, self.bed.dst):
            c.create_pool(name)
        self.pools.append(name)
        return name

    def drop_pool(self, name):
        for c in (self.bed.src, self.bed.dst):
            c.remove_pool(name)
        if name in self.pools:
            self.pools.remove(name)

    def cleanup(self):
        self.link_down()
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

    # -- command helpers ------------------------------------------------
    def src_rbd(self):
        return ['rbd'] + self.bed.src.args()

    def dst_rbd_str(self):
        return ' '.join(shlex.quote(a) for a in ['rbd'] + self.bed.dst.args())

    def bash(self, script, timeout=None):
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
                _, name, ts = line.split()
                stamps.append((name, float(ts)))
            else:
                other.append(line)
        return wall, proc.returncode, stamps, '\n'.join(other) + out

    def kill_remote_rbd(self):
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

    def preflight(self):
        """Refuse to start on an unhealthy bed: a full OSD blocks every write (the run would hang)."""
        self.link_down()     # a shaped link left by a killed run
        for c in (self.bed.src, self.bed.dst):
            proc = c.run('health', tool='ceph', check=False, timeout=60)
            text = (proc.stdout + proc.stderr).decode(errors='replace').strip()
            if proc.returncode != 0 or 'full' in text.lower() or 'osd(s) down' in text.lower():
                raise RuntimeError('the %s cluster is not usable: %s' % (c.name, text[:300]))

    def run_bounded(self, cmd, logfile, env, label):
        """Run an ansible command; after --run-timeout s kill it and our module processes (a module can
        hang: the bench must not).  Returns the Popen with returncode (-9 when it was killed)."""
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            proc.wait(timeout=self.args.run_timeout)
        except subprocess.TimeoutExpired:
            stuck = self.watcher.live()
            log('%s: no end after %ds: killing it and our module processes %s (%s)' % (
                label, self.args.run_timeout, [p['pid'] for p in stuck],
                ', '.join('%s %.0fs' % (p['module'] or '?', time.time() - p['first']) for p in stuck)))
            self.notes.append('%s hung for %ds and was killed; stuck module processes: %s' % (
                label, self.args.run_timeout, ', '.join(
                    '%s (pid %d, %.0fs)' % (p['module'] or '?', p['pid'], time.time() - p['first']) for p in stuck)))
            self.kill_modules()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
        return proc

    def kill_modules(self):
        """SIGKILL the module processes of our own runs still alive (marked with our wrapper's argv[0])."""
        for p in self.watcher.live():
            try:
                with open('/proc/%d/cmdline' % p['pid'], 'rb') as f:
                    if f.read().split(b'\0')[0] != self.watcher.marker:
                        continue
                os.kill(p['pid'], signal.SIGKILL)
            except OSError:
                pass

    def role(self, pool, extra=None, label='', env_extra=None):
        """One ansible-playbook run of the replicate playbook; returns wall time, rc, per-task times."""
        self._runs += 1
        out = os.path.join(self.tmp, 'timer-%d.json' % self._runs)
        logf = os.path.join(self.tmp, 'play-%d.log' % self._runs)
        evars = dict(rbd_replicate_pools=[dict(pool=pool)])
        evars.update(extra or {})
        env = self.bed.ansible_env()
        env.update(ANSIBLE_CALLBACK_PLUGINS=str(HERE / 'callback_plugins'), ANSIBLE_CALLBACKS_ENABLED='bench_timer',
                   BENCH_TIMER_OUT=out, ANSIBLE_REMOTE_TEMP=self.remote_tmp, ANSIBLE_LOCAL_TEMP=self.tmp)
        env.update(env_extra or {})
        evars['ansible_python_interpreter'] = self.python
        cmd = ['ansible-playbook', '-i', self.bed.inventory, PLAYBOOK, '-e', json.dumps(evars)]
        w0 = time.time()
        t0 = time.monotonic()
        with open(logf, 'w') as f:
            proc = self.run_bounded(cmd, f, env, label)
        wall = time.monotonic() - t0
        w1 = time.time()
        timer = {}
        if os.path.exists(out):
            with open(out) as f:
                timer = json.load(f)
        text = Path(logf).read_text(errors='replace')
        if proc.returncode != 0:
            log('role run %s FAILED rc=%d: %s' % (label, proc.returncode, text[-1500:]))
        procs = attribute(self.watcher.take(w0, w1), timer.get('tasks', []))
        return dict(wall=wall, rc=proc.returncode, w0=w0, w1=w1, tasks=timer.get('tasks', []),
                    custom=timer.get('custom', {}), procs=procs, tail=text[-800:] if proc.returncode else '')

    # -- disk ----------------------------------------------------------
    def _osd_usage(self, cluster):
        """(allocated bytes, device bytes) of a test-bed OSD, from its admin socket and its block file."""
        d = os.path.dirname(cluster.conf)
        block = os.path.join(d, 'osd0.img')
        proc = subprocess.run(['ceph', '--admin-daemon', os.path.join(d, 'run', 'osd.0.asok'), 'perf', 'dump'],
                              capture_output=True, text=True, timeout=30)
        perf = json.loads(proc.stdout)
        used = perf['bluestore']['bluestore_allocated'] + perf['bluefs'].get('db_used_bytes', 0)
        return used, os.stat(block).st_size

    def ensure_space(self, src_bytes, dst_bytes, what, wait=90):
        """ensure_space_now, retried for ``wait`` seconds: removed pools free their space progressively."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.ensure_space_now(src_bytes, dst_bytes, what)
            except NoSpace:
                if time.monotonic() > deadline:
                    raise
                time.sleep(10)

    def ensure_space_now(self, src_bytes, dst_bytes, what):
        """Refuse to write when a test-bed OSD or the host disk could fill up.

        The OSDs are sparse files; bluestore spreads its writes over the whole device, so a file grows
        with the bytes written, and an OSD that fills blocks everybody's I/O.  Before each heavy step:
        each OSD must stay under --max-osd-use of its device after the step's writes (snapshots keep
        old data), and the host disk must keep --min-free GiB even if the files grow by that much."""
        growth = 0
        for cluster, nbytes in ((self.bed.src, src_bytes), (self.bed.dst, dst_bytes)):
            try:
                used, size = self._osd_usage(cluster)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
                raise NoSpace('cannot read the %s OSD usage (%s): not writing' % (cluster.name, e))
            if used + nbytes > self.args.max_osd_use * size:
                raise NoSpace('%s would write ~%s on the %s cluster, whose OSD has %s of %s allocated '
                              '(limit %.0f%%, --max-osd-use)' % (what, human(nbytes), cluster.name, human(used),
                                                                 human(size), 100 * self.args.max_osd_use))
            st = os.stat(os.path.join(os.path.dirname(cluster.conf), 'osd0.img'))
            growth += min(nbytes, max(0, st.st_size - st.st_blocks * 512))
        vfs = os.statvfs(self.env['RBD_TESTBED_DIR'])
        free = vfs.f_bavail * vfs.f_frsize
        if free < growth * 1.15 + self.args.min_free * GiB:
            raise NoSpace('%s could grow the OSD files by ~%s, the host disk has %s free (keeping %g GiB, '
                          '--min-free)' % (what, human(growth), human(free), self.args.min_free))

    # -- P1 setup -------------------------------------------------------
    def p1_setup(self, size, tag='p1'):
        """One source image (pool P, image vm) sent by both pipelines: the role to P on the backup
        cluster, the old script (its own snapshots old-NNNN) to image vm of pool Pold on the backup
        cluster.  Both read the same changed extents; the source is written once per run."""
        if self.p1_ready and self.p1_ready['size'] == size:
            return self.p1_ready
        self.ensure_space(3 * size, 3 * size, 'p1 (snapshots keep up to 3 versions of the image per side)')
        pool = self.make_pool(tag)
        old_pool = self.make_pool(tag + 'old', clusters=(self.bed.dst,))
        src, dst = self.bed.src, self.bed.dst
        src.create(pool, 'vm', size)
        dst.create(old_pool, 'vm', size)
        src.write(pool, 'vm', 0, os.urandom(4 * MiB))
        log('p1 setup: initial replication of a %s image with 4 MiB written (role, old script)' % human(size))
        init_role = self.role(pool, dict(rbd_replicate_verify='extents', rbd_replicate_retention_dest=dict(last=1)),
                              'p1-initial')
        if init_role['rc']:
            raise RuntimeError('p1: the initial role run failed: %s' % failed_msg(init_role))
        snap = 'old-0000'
        s = ' '.join(shlex.quote(a) for a in self.src_rbd())
        ssh = ' '.join(shlex.quote(a) for a in self.ssh)
        wall, rc, _st, err = self.bash(
            '%s snap create %s/vm@%s\n%s export-diff --no-progress %s/vm@%s - | %s %s\n'
            % (s, pool, snap, s, pool, snap, ssh,
               shlex.quote('%s import-diff --no-progress - %s/vm' % (self.dst_rbd_str(), old_pool))))
        if rc:
            raise RuntimeError('old script initial replication failed: %s' % err)
        self.p1_ready = dict(size=size, pool=pool, old_pool=old_pool, old_snap=snap, seq=0,
                             initial=dict(role_wall=init_role['wall'], old_wall=wall))
        return self.p1_ready

    # -- a shaped ssh link (p1z) ---------------------------------------
    def _tc(self, *args, check=True):
        return subprocess.run(['tc'] + list(args), capture_output=True, text=True, check=check)

    def link_down(self):
        """Remove our shaping from lo (also a stale one left by a killed run: the htb root handle 1:)."""
        if shutil.which('tc') and 'htb 1:' in self._tc('qdisc', 'show', 'dev', 'lo', check=False).stdout:
            self._tc('qdisc', 'del', 'dev', 'lo', 'root', check=False)

    def link_up(self, rate):
        """Shape the test bed's ssh traffic (port SSH_PORT, both directions) on lo to ``rate``; the clusters'
        own traffic (other ports) is not shaped."""
        port = str(self.env.get('SSH_PORT', 2222))
        self.link_down()
        self._tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10')
        self._tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '100gbit')
        self._tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', rate, 'ceil', rate)
        for direction in ('sport', 'dport'):
            self._tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
                     'match', 'ip', direction, port, '0xffff', 'flowid', '1:20')

    def with_link(self, rate, step):
        if not rate or rate == 'none':
            return step()
        log('shaping the ssh link (port %s on lo) to %s' % (self.env.get('SSH_PORT', 2222), rate))
        self.link_up(rate)
        try:
            return step()
        finally:
            self.link_down()

    def p1_teardown(self):
        if self.p1_ready:
            self.drop_pool(self.p1_ready['pool'])
            self.drop_pool(self.p1_ready['old_pool'])
            self.p1_ready = None

    def old_incremental(self, pool, old_pool, prev, new):
        """The old script's steps for one image (timed), then drop PREV on both sides (untimed)."""
        s = ' '.join(shlex.quote(a) for a in self.src_rbd())
        ssh = ' '.join(shlex.quote(a) for a in self.ssh)
        d = self.dst_rbd_str()
        script = '\n'.join([
            't start',
            '%s snap create %s/vm@%s' % (s, pool, new),
            't snap',
            '%s export-diff --no-progress --from-snap %s %s/vm@%s - | %s %s'
            % (s, prev, pool, new, ssh, shlex.quote('%s import-diff --no-progress - %s/vm' % (d, old_pool))),
            't transfer',
            'a=$(%s diff --from-snap %s %s/vm@%s --format json | md5sum)' % (s, prev, pool, new),
            'b=$(%s %s)' % (ssh, shlex.quote('%s diff --from-snap %s %s/vm@%s --format json | md5sum'
                                             % (d, prev, old_pool, new))),
            't verify',
            '[ "$a" = "$b" ] || echo "EXTENTS MISMATCH" >&2',
        ])
        wall, rc, stamps, err = self.bash(script)
        steps = {}
        for (n0, t0), (n1, t1) in zip(stamps, stamps[1:]):
            steps[n1] = round(t1 - t0, 3)
        self.bash('%s snap rm --no-progress %s/vm@%s\n%s %s' % (
            s, pool, prev, ssh, shlex.quote('%s snap rm --no-progress %s/vm@%s' % (d, old_pool, prev))))
        return dict(wall=wall, rc=rc, steps=steps, mismatch='EXTENTS MISMATCH' in err, err=err[-500:] if rc else '')

    # -- cases ----------------------------------------------------------
    def case_p1(self, key, kind, compression):
        size = self.args.size
        st = self.p1_setup(size, key)
        runs = []
        extra = dict(rbd_replicate_verify='extents', rbd_replicate_retention_dest=dict(last=1))
        if compression:
            extra['rbd_replicate_compression'] = compression
        for i in range(self.args.runs):
            try:
                self.ensure_space(size, 2 * size, '%s run %d' % (key, i + 1))
            except NoSpace as e:
                log('%s: stopping after %d runs: %s' % (key, len(runs), e))
                self.notes.append('%s: %d of %d runs: %s' % (key.upper(), len(runs), self.args.runs, e))
                break
            log('%s run %d/%d: writing %s of fresh %s data (not timed)'
                % (key, i + 1, self.args.runs, human(size), kind))
            write_fresh(self.bed.src, [(st['pool'], 'vm')], size, kind)
            st['seq'] += 1
            new = 'old-%04d' % st['seq']
            order = ('role', 'old') if i % 2 == 0 else ('old', 'role')
            rec = dict(order=order)
            for who in order:
                if who == 'role':
                    r = self.role(st['pool'], extra, '%s#%d' % (key, i))
                    rec['role'] = r['wall']
                    rec['role_rc'] = r['rc']
                    rec['role_tasks'] = task_table(r)
                    rec['role_error'] = failed_msg(r)
                    xf = transfer_images(r)
                    x = xf[0] if xf else {}
                    rec.update(role_transfer_s=x.get('seconds'), role_stream_s=x.get('stream_seconds'),
                               role_bytes=x.get('bytes'), role_data_bytes=x.get('data_bytes'),
                               role_snapshot=x.get('snapshot'), role_base=x.get('base'))
                    rec['role_peak_hwm'] = peaks_of(r['procs'])
                    rec['role_procs'] = [dict(module=p['module'], start=round(p['first'] - r['w0'], 2),
                                              seconds=round(p['last'] - p['first'], 2), cpu=p['cpu'],
                                              hwm_mib=round(p['hwm'] / MiB, 1)) for p in r['procs']]
                    rec['role_task_times'] = [dict(name=t['name'].split(' : ', 1)[-1][:40],
                                                   start=round(t['start'] - r['w0'], 2),
                                                   wall=round((t.get('end') or t['start']) - t['start'], 2))
                                              for t in r['tasks']]
                else:
                    o = self.old_incremental(st['pool'], st['old_pool'], st['old_snap'], new)
                    st['old_snap'] = new
                    rec.update(old=o['wall'], old_rc=o['rc'], old_steps=o['steps'],
                               old_extents_mismatch=o['mismatch'])
            rec['ratio'] = rec['role'] / rec['old']
            log('%s run %d: role %.1fs (its transfer %.1fs), old script %.1fs (its transfer %.1fs): role/old %.2f'
                % (key, i + 1, rec['role'], rec['role_transfer_s'] or -1, rec['old'],
                   rec['old_steps'].get('transfer', -1), rec['ratio']))
            runs.append(rec)
        if not runs:
            return
        all_runs = runs
        runs = [r for r in all_runs if not r['role_rc'] and not r['old_rc']] or all_runs
        res = dict(size=size, kind=kind, compression=compression or 'none', runs=all_runs,
                   good_runs=len([r for r in all_runs if not r['role_rc'] and not r['old_rc']]),
                   initial=st['initial'],
                   role_median=median([r['role'] for r in runs]), old_median=median([r['old'] for r in runs]),
                   role_transfer_median=median([r['role_transfer_s'] for r in runs]),
                   role_stream_median=median([r['role_stream_s'] for r in runs]),
                   old_transfer_median=median([r['old_steps'].get('transfer') for r in runs]),
                   old_verify_median=median([r['old_steps'].get('verify') for r in runs]),
                   role_extents_verify_median=median([sum(t['wall'] for t in r['role_tasks']
                                                          if t['module'] == 'rbd_extent_verify') for r in runs]),
                   ratio_median=median([r['ratio'] for r in runs]),
                   failed_role_runs=sum(1 for r in all_runs if r['role_rc']),
                   failed_old_runs=sum(1 for r in all_runs if r['old_rc']),
                   extents_mismatch_old_runs=sum(1 for r in all_runs if r.get('old_extents_mismatch')),
                   role_peak_hwm=max_peaks([r['role_peak_hwm'] for r in all_runs]),
                   profile=median_profile([r['role_tasks'] for r in runs]))
        if key == 'p1z':
            res['link'] = self.args.link
        res['ratio_of_medians'] = res['role_median'] / res['old_median']
        res['speedup_of_medians'] = res['old_median'] / res['role_median']
        res['transfer_only_ratio'] = (res['role_transfer_median'] / res['old_transfer_median']
                                      if res['role_transfer_median'] and res['old_transfer_median'] else None)
        self.results[key] = res

    def case_p3(self):
        """P3: role runs with verify none, data against the stream digest (the role's default) and data
        against a second read of the source, in rotating order, each on freshly written data of the P1
        size.  The added time of a verify variant is its role median minus the verify-none median."""
        size = self.args.size
        st = self.p1_setup(size, 'p3')    # pools of its own: a pool re-created under p1's name was not found
        variants = [('none', dict(rbd_replicate_verify='none')),
                    ('stream', dict(rbd_replicate_verify='data', rbd_replicate_verify_source='stream')),
                    ('read', dict(rbd_replicate_verify='data', rbd_replicate_verify_source='read'))]
        runs = []
        for i in range(self.args.runs):
            rec = {}
            k = i % len(variants)
            for name, extra in variants[k:] + variants[:k]:
                self.ensure_space(size, 2 * size, 'p3 run %d' % (i + 1))
                log('p3 run %d/%d (%s): writing %s of fresh data (not timed)' % (i + 1, self.args.runs, name,
                                                                                 human(size)))
                write_fresh(self.bed.src, [(st['pool'], 'vm')], size, 'random')
                r = self.role(st['pool'], dict(extra, rbd_replicate_retention_dest=dict(last=1)),
                              'p3-%s#%d' % (name, i))
                xf = transfer_images(r)
                tt = task_table(r)
                rec[name] = dict(wall=r['wall'], rc=r['rc'], error=failed_msg(r),
                                 transfer_s=(xf[0] if xf else {}).get('seconds'),
                                 verify_wall=sum(t['wall'] for t in tt if t['module'] == 'rbd_extent_verify'),
                                 peak_hwm=peaks_of(r['procs']), child_peak_hwm=child_peaks_of(r['procs']),
                                 tasks=tt)
            log('p3 run %d: role %s' % (i + 1, ', '.join(
                '%s %.1fs (transfer %.1fs, verify tasks %.1fs)' % (n, rec[n]['wall'], rec[n]['transfer_s'] or -1,
                                                                   rec[n]['verify_wall'])
                for n, _e in variants)))
            runs.append(rec)

        def good(name):
            return [r[name] for r in runs if not r[name]['rc']] or [r[name] for r in runs]
        none_wall = median([x['wall'] for x in good('none')])
        xfer = median([x['transfer_s'] for x in good('none')])
        res = dict(size=size, runs=runs, failed_runs=sum(1 for r in runs for x in r.values() if x['rc']),
                   role_none_median=none_wall, transfer_seconds_median=xfer,
                   profile=median_profile([x['tasks'] for x in good('stream')]))
        for name in ('stream', 'read'):
            wall = median([x['wall'] for x in good(name)])
            res[name] = dict(role_median=wall, added=wall - none_wall,
                             ratio=(wall - none_wall) / xfer if xfer else None,
                             transfer_median=median([x['transfer_s'] for x in good(name)]),
                             verify_tasks_wall_median=median([x['verify_wall'] for x in good(name)]))
        self.results['p3'] = res
        allx = [x for r in runs for x in r.values()]
        self.p4_large = dict(size=size, transfer=max_peaks([x['peak_hwm'] for x in allx]),
                             verify=max_peaks([x['peak_hwm'] for x in allx]),
                             children=max_peaks([x['child_peak_hwm'] for x in allx]))

    def case_p4_small(self):
        """Role runs (verify data) on a small change: the module peaks to compare with the large runs."""
        size = self.args.mem_small
        st = self.p1_setup(self.args.size)
        runs = []
        for i in range(min(self.args.runs, 2)):
            self.ensure_space(size, size, 'p4 run')
            log('p4 %s run %d: writing %s (not timed)' % (human(size), i + 1, human(size)))
            write_fresh(self.bed.src, [(st['pool'], 'vm')], size, 'random')
            r = self.role(st['pool'], dict(rbd_replicate_verify='data', rbd_replicate_retention_dest=dict(last=1)),
                          'p4#%d' % i)
            runs.append(dict(rc=r['rc'], wall=r['wall'], peak_hwm=peaks_of(r['procs']),
                             child_peak_hwm=child_peaks_of(r['procs']), error=failed_msg(r)))
            log('p4 %s run %d: peaks %s' % (human(size), i + 1, fmt_peaks(runs[-1]['peak_hwm'])))
        small = max_peaks([r['peak_hwm'] for r in runs])
        res = dict(sizes=[size], peak_hwm={str(size): small},
                   child_peak_hwm={str(size): max_peaks([r['child_peak_hwm'] for r in runs])}, runs_small=runs)
        large = getattr(self, 'p4_large', None)
        if large:
            res['sizes'].append(large['size'])
            res['peak_hwm'][str(large['size'])] = dict(
                rbd_diff_transfer=large['transfer'].get('rbd_diff_transfer'),
                rbd_extent_verify=large['verify'].get('rbd_extent_verify'))
            res['child_peak_hwm'][str(large['size'])] = large['children']
            res['large_from'] = 'the p3 role runs'
        self.results['p4'] = res

    def case_p2(self):
        count, sample = self.args.images, self.args.sample
        pool = self.make_pool('p2')
        old_pool = self.make_pool('p2old')
        src, dst = self.bed.src, self.bed.dst
        names = ['img-%03d' % i for i in range(count)]
        snames = names[:sample]
        log('p2 setup: creating %d + %d images of 1 MiB with a few KiB written' % (count, sample))
        for p, ns in ((pool, names), (old_pool, snames)):
            with src.cluster.open_ioctx(p) as io:
                for n in ns:
                    librbd.RBD().create(io, n, MiB)
                    with librbd.Image(io, n) as img:
                        img.write(os.urandom(8192), 0)
                        img.write(os.urandom(4096), 512 * 1024)
        s = ' '.join(shlex.quote(a) for a in self.src_rbd())
        ssh = ' '.join(shlex.quote(a) for a in self.ssh)
        d = self.dst_rbd_str()
        # The initial replication is not what P2 measures: the bench does it itself, 8 images at a time,
        # the way the role leaves things (a snapshot <prefix><UTC stamp> on both sides, nothing else);
        # --p2-initial role makes the role do it (and reports its time).
        stamp = 'backup-' + (datetime.datetime.utcnow() - datetime.timedelta(days=1)).strftime('%Y%m%dT%H%M%SZ')
        jobs = [(pool, n) for n in names] + [(old_pool, n) for n in snames]
        init_role = None
        if self.args.p2_initial == 'role':
            jobs = [(old_pool, n) for n in snames]
            log('p2 setup: initial replication of %d images (role)' % count)
            r = self.role(pool, {}, 'p2-initial')
            init_role = r['wall']
            log('p2 setup: initial role run %.1fs rc=%d' % (r['wall'], r['rc']))
        log('p2 setup: initial replication of %d images by the bench (8 at a time)' % len(jobs))

        def initial(job):
            p, n = job
            return self.bash('%s create --size 1M %s/%s\n%s snap create %s/%s@%s\n'
                             '%s export-diff --no-progress %s/%s@%s - | %s %s' % (
                                 d, p, n, s, p, n, stamp, s, p, n, stamp, ssh,
                                 shlex.quote('%s import-diff --no-progress - %s/%s' % (d, p, n))))
        import concurrent.futures
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            bad = [(j, r[3]) for j, r in zip(jobs, ex.map(initial, jobs)) if r[1]]
        if bad:
            raise RuntimeError('p2 initial replication failed for %d images, e.g. %s' % (len(bad), bad[0]))
        log('p2 setup: initial replication done in %.1fs' % (time.monotonic() - t0))
        runs = []
        budget_note = None
        for i in range(self.args.runs):
            if runs and self.args.budget:
                last = runs[-1]['role'] + runs[-1]['old_sample'] + 5
                left = self.args.budget * 60 - (time.monotonic() - T_START)
                if last > left:
                    budget_note = ('%d of %d runs: one more (~%.0fs) would exceed the %g min time budget '
                                   '(--budget 0 for all runs)' % (len(runs), self.args.runs, last, self.args.budget))
                    log('p2: ' + budget_note)
                    break
            order = ('role', 'old') if i % 2 == 0 else ('old', 'role')
            rec = dict(order=order)
            for who in order:
                if who == 'role':
                    log('p2 run %d/%d: role over %d images' % (i + 1, self.args.runs, count))
                    r = self.role(pool, {}, 'p2#%d' % i)
                    rec.update(role=r['wall'], role_rc=r['rc'], role_tasks=task_table(r),
                               role_images=len(transfer_images(r)), role_error=failed_msg(r))
                else:
                    log('p2 run %d/%d: serial loop over %d sample images' % (i + 1, self.args.runs, sample))
                    new = 'backup-%s-%d' % (datetime.datetime.utcnow().strftime('%Y%m%dT%H%M%SZ'), i)
                    per = []
                    steps_all = []
                    for n in snames:
                        sc = '\n'.join([
                            't start',
                            '%s snap create %s/%s@%s' % (s, old_pool, n, new),
                            't snap',
                            'BASE=$(%s %s | awk \'NR>1 {n=$2} END {print n}\')' % (
                                ssh, shlex.quote('%s snap ls %s/%s' % (d, old_pool, n))),
                            't base',
                            '%s export-diff --no-progress --from-snap "$BASE" %s/%s@%s - | %s "%s import-diff '
                            '--no-progress - %s/%s"' % (s, old_pool, n, new, ssh, d.replace('"', '\\"'), old_pool, n),
                            't transfer',
                            'a=$(%s diff --from-snap "$BASE" %s/%s@%s --format json | md5sum)' % (s, old_pool, n, new),
                            'b=$(%s "%s diff --from-snap $BASE %s/%s@%s --format json | md5sum")' % (
                                ssh, d.replace('"', '\\"'), old_pool, n, new),
                            '[ "$a" = "$b" ] || echo "EXTENTS MISMATCH" >&2',
                            't verify',
                            '%s snap rm --no-progress %s/%s@"$BASE"' % (s, old_pool, n),
                            '%s "%s snap rm --no-progress %s/%s@$BASE"' % (ssh, d.replace('"', '\\"'), old_pool, n),
                            't prune',
                        ])
                        w, rc2, stamps, err = self.bash(sc)
                        if rc2:
                            log('p2 serial loop failed on %s: %s' % (n, err[-500:]))
                        per.append(w)
                        steps_all.append(dict((n1, t1 - t0) for (n0, t0), (n1, t1) in zip(stamps, stamps[1:])))
                    rec.update(old_sample=sum(per), old_per_image_median=median(per),
                               old_scaled=sum(per) * count / sample,
                               old_steps=dict((k, median([s2.get(k) for s2 in steps_all]))
                                              for k in ('snap', 'base', 'transfer', 'verify', 'prune')))
            rec['speedup'] = rec['old_scaled'] / rec['role']
            log('p2 run %d: role %.1fs for %d images; serial %.1fs for %d images -> %.0fs scaled to %d: %.1fx'
                % (i + 1, rec['role'], count, rec['old_sample'], sample, rec['old_scaled'], count, rec['speedup']))
            runs.append(rec)
        all_runs = runs
        runs = [r for r in all_runs if not r['role_rc']] or all_runs
        res = dict(images=count, sample=sample, runs=all_runs, initial_role_wall=init_role, budget_note=budget_note,
                   role_median=median([r['role'] for r in runs]),
                   old_scaled_median=median([r['old_scaled'] for r in runs]),
                   old_per_image_median=median([r['old_per_image_median'] for r in runs]),
                   failed_role_runs=sum(1 for r in all_runs if r['role_rc']),
                   failed_messages=[r.get('role_error') for r in all_runs if r['role_rc']],
                   profile=median_profile([r['role_tasks'] for r in runs]),
                   old_steps=dict((k, median([r['old_steps'][k] for r in runs]))
                                  for k in ('snap', 'base', 'transfer', 'verify', 'prune')))
        res['speedup_of_medians'] = res['old_scaled_median'] / res['role_median']
        self.results['p2'] = res
        if 'prof' in self.args.case_list:
            try:
                self.results['prof'] = self.profile_transfer(pool, names[:self.args.prof_images])
            except Exception as e:  # the profile is a diagnostic: never lose the other results for it
                log('profile failed: %s' % e)
        self.drop_pool(pool)
        self.drop_pool(old_pool)

    def profile_transfer(self, pool, images):
        """Time the collection's own transfer code in-process, built the way rbd_diff_transfer builds it
        (pull mode: the local client for the destination, the ssh client for the source), one unchanged
        image at a time, with every client call it makes timed: where one image's transfer spends its
        time.  Then again with the data stream over the multiplexed ssh connection (an A/B of a change)."""
        sys.path.insert(0, str(REPO / '.build' / 'collections'))
        from ansible_collections.ceph_rbd.backup.plugins.module_utils import _rbd, _transfer
        calls = []

        def instrument(obj, prefix):
            depth = [0]
            for name in dir(obj):
                if name.startswith('_') or name in ('argv', 'close', 'from_params'):
                    continue
                fn = getattr(obj, name)
                if not callable(fn):
                    continue

                def wrap(fn=fn, name=name):
                    def timed(*a, **kw):
                        if depth[0]:
                            return fn(*a, **kw)
                        depth[0] += 1
                        t0 = time.monotonic()
                        try:
                            return fn(*a, **kw)
                        finally:
                            depth[0] -= 1
                            calls.append(('%s.%s' % (prefix, name), time.monotonic() - t0))
                    return timed
                setattr(obj, name, wrap())
            return obj

        real_relay = getattr(_transfer, 'relay', None)

        def timed_relay(*a, **kw):
            t0 = time.monotonic()
            try:
                return real_relay(*a, **kw)
            finally:
                calls.append(('stream (ssh export-diff | relay | import-diff)', time.monotonic() - t0))

        opts_ssh = ['-o', 'UserKnownHostsFile=%s/ssh/known_hosts' % self.env['RBD_TESTBED_DIR'],
                    '-o', 'StrictHostKeyChecking=yes']
        params = dict(ssh_host=self.env.get('SRC_HOST', '127.0.0.2'), ssh_user='root',
                      ssh_port=int(self.env.get('SSH_PORT', 2222)), ssh_key=None, ssh_options=opts_ssh,
                      ssh_cipher='aes128-gcm@openssh.com', timeout=300, remote_ceph=self.bed.src.ceph_args(),
                      cluster=None, mode='pull')
        params.update(self.bed.dst.ceph_args())
        try:
            from ansible_collections.ceph_rbd.backup.plugins.module_utils._remote import Remote
        except ImportError:
            Remote = None
        try:
            from ansible_collections.ceph_rbd.backup.plugins.module_utils._librbd import client as local_client
        except ImportError:
            local_client = _rbd.Rbd.from_params
        if Remote is None:
            raise RuntimeError('this version of the collection has no _remote.Remote; profile skipped')
        out = {}
        if real_relay is not None:
            _transfer.relay = timed_relay
        try:
            with Remote(params) as remote:
                local = local_client(params)
                local = instrument(local, 'destination %s' % type(local).__name__)
                remote_rbd = instrument(remote.rbd, 'source over ssh')
                for variant, stream_ssh in (('as is (own ssh connection per stream)', remote.stream_ssh),
                                            ('over the multiplexed ssh connection', remote.query_ssh)):
                    src = _transfer.Side(remote_rbd, pool, None, remote_ssh=stream_ssh)
                    dst = _transfer.Side(local, pool, None)
                    per_image = []
                    for n, image in enumerate(images):
                        snap = 'backup-%sZ' % (datetime.datetime.utcnow() + datetime.timedelta(
                            days=3650, seconds=len(out) * 100 + n)).strftime('%Y%m%dT%H%M%S')
                        self.bed.src.snap(pool, image, snap)
                        del calls[:]
                        t0 = time.monotonic()
                        res = _transfer.transfer_image(src, dst, image, None, snap, _transfer.TransferOptions())
                        wall = time.monotonic() - t0
                        by = collections.OrderedDict()
                        for name, sec in calls:
                            by.setdefault(name, []).append(sec)
                        per_image.append(dict(wall=wall, action=res.get('action'), calls=dict(
                            (k, dict(n=len(v), s=sum(v))) for k, v in by.items())))
                    keys = []
                    for pi in per_image:
                        keys += [k for k in pi['calls'] if k not in keys]
                    out[variant] = dict(
                        images=len(per_image), wall_median=median([p['wall'] for p in per_image]),
                        actions=sorted(set(p['action'] for p in per_image)),
                        calls=[dict(call=k, n=median([p['calls'].get(k, {}).get('n', 0) for p in per_image]),
                                    s=median([p['calls'].get(k, {}).get('s', 0) for p in per_image]))
                               for k in keys])
                    log('profile %s: %.2fs per unchanged image (parallel 1)' % (variant, out[variant]['wall_median']))
                if hasattr(local, 'close'):
                    local.close()
        finally:
            if real_relay is not None:
                _transfer.relay = real_relay
        out['librbd floor'] = self.librbd_floor(pool, images)
        return out

    def librbd_floor(self, pool, images):
        """What the per-image queries cost through python3-rbd in one process and one cluster connection
        (no CLI): open, list snapshots, create a snapshot, diff from the previous one, remove it."""
        calls = collections.OrderedDict((k, []) for k in ('open', 'list_snaps', 'create_snap', 'diff_iterate',
                                                          'remove_snap', 'close'))
        walls = []
        with self.bed.src.cluster.open_ioctx(pool) as io:
            for n, image in enumerate(images):
                t = [time.monotonic()]
                img = librbd.Image(io, image)
                t.append(time.monotonic())
                prev = [x['name'] for x in sorted(img.list_snaps(), key=lambda x: x['id'])][-1]
                t.append(time.monotonic())
                name = 'bench-floor-%d' % n
                img.create_snap(name)
                t.append(time.monotonic())
                img.set_snap(name)
                img.diff_iterate(0, img.size(), prev, lambda *a: None)
                img.set_snap(None)
                t.append(time.monotonic())
                img.remove_snap(name)
                t.append(time.monotonic())
                img.close()
                t.append(time.monotonic())
                for k, a, b in zip(calls, t, t[1:]):
                    calls[k].append(b - a)
                walls.append(t[-1] - t[0])
        log('profile librbd floor: %.3fs per image' % median(walls))
        return dict(images=len(walls), wall_median=median(walls),
                    calls=[dict(call='librbd ' + k, n=1, s=median(v)) for k, v in calls.items()])

    def case_ovh(self):
        """The fixed cost of one role run: one 1 MiB image, nothing changed, verify data; ansible's ssh
        pipelining off vs on (-e ansible_pipelining=false/true, over whatever the inventory says)."""
        pool = self.make_pool('ovh')
        self.bed.src.create(pool, 'vm', MiB)
        self.bed.src.write(pool, 'vm', 0, os.urandom(8192))
        init = self.role(pool, {}, 'ovh-initial')
        if init['rc']:
            raise RuntimeError('ovh: initial role run failed')
        runs = []
        for i in range(self.args.runs):
            order = ('default', 'pipelining') if i % 2 == 0 else ('pipelining', 'default')
            rec = {}
            for who in order:
                r = self.role(pool, dict(ansible_pipelining=(who == 'pipelining')), 'ovh-%s#%d' % (who, i))
                rec[who] = r['wall']
                rec[who + '_rc'] = r['rc']
                rec[who + '_tasks'] = task_table(r)
            rec['ratio'] = rec['pipelining'] / rec['default']
            log('ovh run %d: role on 1 unchanged image: pipelining off %.1fs, on %.1fs' % (
                i + 1, rec['default'], rec['pipelining']))
            runs.append(rec)
        self.results['ovh'] = dict(runs=runs, default_median=median([r['default'] for r in runs]),
                                   pipelining_median=median([r['pipelining'] for r in runs]),
                                   ratio_median=median([r['ratio'] for r in runs]),
                                   profile=median_profile([r['pipelining_tasks'] for r in runs]),
                                   profile_no_pipelining=median_profile([r['default_tasks'] for r in runs]))
        self.drop_pool(pool)

    def case_ab(self):
        size = self.args.ab_size
        self.ensure_space(size, 2 * size, 'ab setup')
        pool = self.make_pool('ab')
        src, dst = self.bed.src, self.bed.dst
        src.create(pool, 'vm', size)
        for n in ('dash', 'devstdin'):
            dst.create(pool, n, size)
        write_fresh(src, [(pool, 'vm')], size, 'random')
        s = ' '.join(shlex.quote(a) for a in self.src_rbd())
        d = self.dst_rbd_str()
        prev = 'ab-0'
        script = '%s snap create %s/vm@%s\n' % (s, pool, prev)
        for n in ('dash', 'devstdin'):
            script += '%s export-diff --no-progress %s/vm@%s - | %s import-diff --no-progress - %s/%s\n' % (
                s, pool, prev, d, pool, n)
        wall, rc, _st, err = self.bash(script)
        if rc:
            raise RuntimeError('ab setup failed: %s' % err)
        runs = []
        for i in range(self.args.runs):
            self.ensure_space(size, 2 * size, 'ab run')
            log('ab run %d/%d: writing %s (not timed)' % (i + 1, self.args.runs, human(size)))
            write_fresh(src, [(pool, 'vm')], size, 'random')
            new = 'ab-%d' % (i + 1)
            self.bash('%s snap create %s/vm@%s' % (s, pool, new))
            rec = {}
            order = ('dash', 'devstdin') if i % 2 == 0 else ('devstdin', 'dash')
            for n in order:
                path = '-' if n == 'dash' else '/dev/stdin'
                w, rc, _st, err = self.bash(
                    '%s export-diff --no-progress --from-snap %s %s/vm@%s - | %s import-diff --no-progress %s %s/%s'
                    % (s, prev, pool, new, d, path, pool, n))
                if rc:
                    log('ab %s failed: %s' % (n, err[-500:]))
                rec[n] = w
            rec['ratio'] = rec['devstdin'] / rec['dash']
            log('ab run %d: import-diff -: %.2fs, /dev/stdin: %.2fs (%.2fx)' % (
                i + 1, rec['dash'], rec['devstdin'], rec['ratio']))
            runs.append(rec)
            prev = new
        self.results['ab'] = dict(size=size, runs=runs, dash_median=median([r['dash'] for r in runs]),
                                  devstdin_median=median([r['devstdin'] for r in runs]),
                                  ratio_median=median([r['ratio'] for r in runs]))
        self.drop_pool(pool)


# --------------------------------------------------------------------------- analysis helpers

class NoSpace(Exception):
    pass


def attribute(procs, tasks):
    """Give every module process the task that was running when it started (the callback records a
    task's start before ansible runs it; tasks run one after the other) and that task's module."""
    for p in procs:
        idx = None
        for i, t in enumerate(tasks):
            if t['start'] <= p['first']:
                idx = i
        p['task'] = idx
        if not p.get('module'):
            p['module'] = _module_of(tasks[idx].get('action')) if idx is not None else '?'
    return procs


def peaks_of(procs):
    out = {}
    for p in procs or []:
        out[p['module']] = max(out.get(p['module'], 0), p['hwm'])
    return out


def child_peaks_of(procs):
    out = {}
    for p in procs or []:
        for k, v in p['children'].items():
            name = k.split('[')[0]
            out[name] = max(out.get(name, 0), v)
    return out


def max_peaks(dicts):
    out = {}
    for d in dicts:
        for k, v in (d or {}).items():
            if v is not None:
                out[k] = max(out.get(k, 0), v)
    return out


def fmt_peaks(d):
    return ', '.join('%s %.0f MiB' % (k.replace('rbd_', ''), v / MiB) for k, v in sorted(d.items()))


def _module_of(action):
    return (action or '').split('.')[-1]


def transfer_images(r):
    for t in r['tasks']:
        if (t.get('action') or '').endswith('rbd_diff_transfer') and t.get('images'):
            return t['images']
    return []


def failed_msg(r):
    """The first failed task of a failed role run and its message (None if the run passed)."""
    if not r['rc']:
        return None
    for t in r['tasks']:
        if t.get('status') == 'failed':
            return '%s: %s' % (t['name'].split(' : ', 1)[-1], (t.get('msg') or '')[:600])
    return r.get('tail', '')[-600:]


def task_table(r):
    """Per task: wall, and for module tasks the module process lifetime and CPU (from /proc, 20 Hz)."""
    rows = []
    procs = sorted(r.get('procs') or [], key=lambda p: p['first'])
    for i, t in enumerate(r['tasks']):
        mod = _module_of(t.get('action'))
        row = dict(name=t['name'].split(' : ', 1)[-1], module=mod if mod.startswith('rbd_') else None,
                   wall=round((t.get('end') or t['start']) - t['start'], 3), status=t.get('status'))
        if row['module']:
            mine = [p for p in procs if p.get('task') == i]
            if mine:
                row['proc_s'] = round(sum(p['last'] - p['first'] for p in mine), 2)
                row['proc_cpu'] = round(sum(p['cpu'] for p in mine), 2)
        rows.append(row)
    if r['tasks']:
        first = r['tasks'][0]['start']
        last = max((t.get('end') or t['start']) for t in r['tasks'])
        rows.insert(0, dict(name='(ansible-playbook start-up, until the first task)', module=None,
                            wall=round(first - r['w0'], 3)))
        rows.append(dict(name='(after the last task, until exit)', module=None, wall=round(r['w1'] - last, 3)))
    return rows


def median_profile(tables):
    """Median over runs of each task's wall (tasks matched by name and position)."""
    tables = [t for t in tables if t]
    if not tables:
        return []
    out = []
    for idx, row in enumerate(tables[0]):
        same = [t[idx] for t in tables if idx < len(t) and t[idx]['name'] == row['name']]
        out.append(dict(name=row['name'], module=row['module'], wall=round(median([s['wall'] for s in same]), 2),
                        proc_s=median([s.get('proc_s') for s in same]),
                        proc_cpu=median([s.get('proc_cpu') for s in same])))
    return out


# --------------------------------------------------------------------------- report

def verdict(ok):
    return 'met' if ok else ('NOT met' if ok is not None else 'n/a')


def summarize(results, args, extra_notes=()):
    rows = []
    for key, label in (('p1', 'P1 throughput'), ('p1z', 'P1 zstd, compressible data')):
        r = results.get(key)
        if not r:
            continue
        if key == 'p1':
            ok = r['ratio_of_medians'] <= 1.10
            target = 'role/old <= 1.10'
            ratio = 'role/old %.2f' % r['ratio_of_medians']
        else:
            ok = r['speedup_of_medians'] >= 1.3
            target = 'old/role >= 1.3'
            ratio = 'old/role %.2f' % r['speedup_of_medians']
        if r['failed_role_runs'] or r['failed_old_runs']:
            ratio += ' (%d role runs FAILED)' % r['failed_role_runs']
        if not r.get('good_runs'):
            ok = False
            ratio = 'no valid run: the role FAILED'
            target += ' (role failed)'

        if r.get('link') and r['link'] != 'none':
            label += ', ssh link shaped to %s' % r['link']
        rows.append(('%s, %s changed' % (label, human(r['size'])), len(r['runs']),
                     'role %.1f s (its transfer %.1f s)' % (r['role_median'], r['role_transfer_median'] or 0),
                     'old script %.1f s (its transfer %.1f s)' % (r['old_median'], r['old_transfer_median'] or 0),
                     ratio, target, verdict(ok)))
    r = results.get('p3')
    if r:
        st, rd = r['stream'], r['read']
        ok = st['ratio'] is not None and st['ratio'] <= 0.5
        rows.append(('P3 verify data (digest of the stream, the default), %s changed' % human(r['size']), len(r['runs']),
                     'role %.1f s vs verify none %.1f s: +%.1f s (verify task %.1f s)' % (
                         st['role_median'], r['role_none_median'], st['added'], st['verify_tasks_wall_median']),
                     'transfer %.1f s (seconds the module reports, verify none)' % (r['transfer_seconds_median'] or 0),
                     '+%.0f%%' % (100 * (st['ratio'] or 0)), '<= 50%', verdict(ok)))
        rows.append(('P3 verify data with a second read of the source (rbd_replicate_verify_source=read)',
                     len(r['runs']), 'role %.1f s: +%.1f s (verify tasks %.1f s)' % (
                         rd['role_median'], rd['added'], rd['verify_tasks_wall_median']),
                     'transfer %.1f s' % (r['transfer_seconds_median'] or 0), '+%.0f%%' % (100 * (rd['ratio'] or 0)),
                     '(informative)', '-'))
    r = results.get('p4')
    if r:
        sizes = [str(x) for x in r['sizes']]
        parts, ok = [], True
        for mod in ('rbd_diff_transfer', 'rbd_extent_verify'):
            vals = [r['peak_hwm'][x].get(mod) for x in sizes]
            if None in vals:
                ok = None if ok is True else ok
            parts.append('%s %s MiB' % (mod.replace('rbd_', ''), ' -> '.join(
                '%.0f' % (v / MiB) if v is not None else '?' for v in vals)))
            known = [v for v in vals if v is not None]
            if any(v > 100 * MiB for v in known) or (len(known) > 1 and known[-1] - known[0] > 10 * MiB):
                ok = False
        if len(sizes) < 2:
            ok = None
        rows.append(('P4 peak RSS of the module processes, %s' % ' -> '.join(human(int(x)) for x in sizes),
                     '-', '; '.join(parts), '-', '-', '<= 100 MiB, growth <= 10 MiB', verdict(ok)))
    r = results.get('p2')
    if r:
        ok = r['role_median'] <= 25 and r['speedup_of_medians'] >= 20
        good = len(r['runs']) - r['failed_role_runs']
        measured = 'role %.1f s' % r['role_median']
        ratio = 'old/role %.1f' % r['speedup_of_medians']
        if not good:
            ok = False
            xfer = median([sum(t['wall'] for t in x['role_tasks'] if t['module'] == 'rbd_diff_transfer')
                           for x in r['runs']])
            measured = 'role FAILED in every run (until the failure %.1f s, its transfer step alone %.1f s)' % (
                r['role_median'], xfer)
            ratio = 'no valid run'
        rows.append(('P2 scale, %d images, nothing changed' % r['images'], len(r['runs']),
                     measured,
                     'serial loop %.0f s (%.2f s/image, timed on %d images, x %d)' % (
                         r['old_scaled_median'], r['old_per_image_median'], r['sample'], r['images']),
                     ratio, 'role <= 25 s, old/role >= 20', verdict(ok)))
    r = results.get('ovh')
    if r:
        rows.append(('Fixed cost of a role run (1 unchanged 1 MiB image)', len(r['runs']),
                     'ssh pipelining on %.1f s' % r['pipelining_median'], 'off %.1f s' % r['default_median'],
                     'on/off %.2f' % r['ratio_median'], '(informative)', '-'))
    r = results.get('ab')
    if r:
        rows.append(('import-diff /dev/stdin vs - (%s, local pipe)' % human(r['size']), len(r['runs']),
                     '/dev/stdin %.2f s' % r['devstdin_median'], '- %.2f s' % r['dash_median'],
                     '/dev/stdin / - %.2f' % r['ratio_median'], '(informative)', '-'))
    lines = ['| case | runs | measured (median) | baseline (median, same runs) | ratio | target | verdict |',
             '|---|---|---|---|---|---|---|']
    for row in rows:
        lines.append('| ' + ' | '.join(str(x) for x in row) + ' |')
    notes = list(extra_notes)
    if results.get('p2') and results['p2'].get('budget_note'):
        notes.append('P2: ' + results['p2']['budget_note'])
    for key in ('p1', 'p1z', 'p2'):
        r = results.get(key)
        if r and r.get('failed_role_runs'):
            notes.append('%s: %d role run(s) FAILED (left out of the medians unless all failed): %s' % (
                key.upper(), r['failed_role_runs'], ' | '.join(
                    str(x.get('role_error'))[:300] for x in r['runs'] if x.get('role_rc'))))
    r = results.get('p3')
    if r and r.get('failed_runs'):
        notes.append('P3: %d role run(s) FAILED: %s' % (r['failed_runs'], ' | '.join(
            str(x.get('error'))[:300] for run in r['runs'] for x in run.values() if x.get('rc'))))
    if results.get('p2'):
        notes.append('P2: the serial loop is timed on %d of the %d images and scaled by %d/%d.'
                     % (results['p2']['sample'], results['p2']['images'], results['p2']['images'],
                        results['p2']['sample']))
    return '\n'.join(lines + [''] + notes)


def profile_text(results):
    out = []
    for key, title in (('p1', 'P1 role run'), ('p1z', 'P1 zstd role run'),
                       ('p3', 'P3 role run, verify data against the stream digest'),
                       ('ovh', 'Role run on 1 unchanged image (ssh pipelining on)'),
                       ('p2', 'P2 role run (%s images)' % (results.get('p2') or {}).get('images'))):
        r = results.get(key)
        if not r or not r.get('profile'):
            continue
        prof = r['profile']
        total = sum(p['wall'] for p in prof)
        out.append('\n%s: where the time goes (median per task, %.1fs in all)' % (title, total))
        out.append('| task | wall s | module process s | module CPU s |')
        out.append('|---|---|---|---|')
        for p in prof:
            if p['wall'] < 0.05 and not p['module']:
                continue
            out.append('| %s | %.2f | %s | %s |' % (p['name'][:70], p['wall'],
                                                    '%.2f' % p['proc_s'] if p['proc_s'] is not None else '',
                                                    '%.2f' % p['proc_cpu'] if p['proc_cpu'] is not None else ''))
        mods = [p for p in prof if p['module']]
        mod_wall = sum(p['wall'] for p in mods)
        out.append('module tasks: %d, %.1fs of %.1fs; other tasks and start-up: %.1fs'
                   % (len(mods), mod_wall, total, total - mod_wall))
    prof = results.get('prof')
    if prof:
        for variant, r in prof.items():
            if variant == 'librbd floor':
                out.append('\nThe same queries through python3-rbd, in-process (one connection): %.3fs per image '
                           '(median of %d):' % (r['wall_median'], r['images']))
            else:
                out.append('\nrbd_diff_transfer code in-process, one unchanged image at a time, data stream %s: '
                           '%.2fs per image (median of %d, action %s); the calls it makes (outermost only):'
                           % (variant, r['wall_median'], r['images'], '/'.join(r.get('actions') or [])))
            out.append('| call | count | s |')
            out.append('|---|---|---|')
            for c in r['calls']:
                out.append('| %s | %g | %.3f |' % (c['call'], c['n'], c['s']))
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', '-n', type=int, default=None, help='runs per case (default 3)')
    ap.add_argument('--link', default='1gbit',
                    help='p1z: shape the ssh link to this tc rate (e.g. 1gbit, 500mbit) or none (plain loopback)')
    ap.add_argument('--quick', action='store_true', help='smaller sizes: 256 MiB, 50 images (sample 5)')
    ap.add_argument('--cases', default='p1,p3,p4,p1z,ovh,ab,p2,prof',
                    help='comma list of p1,p1z,p3,p4,ovh,ab,p2,prof (run in this order; p3 and p4 always '
                         'run together; prof needs p2)')
    ap.add_argument('--size', type=str, default=None, help='changed data per run for p1/p1z/p3 (e.g. 2G)')
    ap.add_argument('--images', type=int, default=None, help='p2: images in the pool')
    ap.add_argument('--sample', type=int, default=None, help='p2: images the serial loop is timed on')
    ap.add_argument('--keep-pools', action='store_true', help='do not remove the bench pools at the end')
    ap.add_argument('--budget', type=float, default=None,
                    help='minutes: p2 (last) does fewer runs (at least 1) when the next would end later '
                         '(default 15, --quick 8; 0: no limit)')
    ap.add_argument('--min-free', type=float, default=10,
                    help='GiB the host disk must keep free after each heavy step (default 10): the OSDs are '
                         'sparse files that only grow')
    ap.add_argument('--max-osd-use', type=float, default=0.7,
                    help='fraction of a test-bed OSD that may be allocated after a heavy step (default 0.7)')
    ap.add_argument('--run-timeout', type=int, default=300,
                    help='seconds one ansible-playbook run may take before the bench kills it (default 300)')
    ap.add_argument('--p2-initial', choices=['bench', 'role'], default='bench',
                    help='who makes the initial replication of the p2 pool (not timed; default bench)')
    ap.add_argument('--out', default=str(HERE / 'results' / 'latest.json'))
    args = ap.parse_args()

    def parse_size(s):
        m = re.fullmatch(r'(\d+)([KMG]?)', s.upper().rstrip('IB').rstrip('I'))
        return int(m.group(1)) * {'': 1, 'K': 1024, 'M': MiB, 'G': GiB}[m.group(2)]

    args.runs = args.runs or 3
    if args.quick:
        args.size = parse_size(args.size) if args.size else 256 * MiB
        args.mem_small = 32 * MiB
        args.images = args.images or 50
        args.sample = args.sample or 5
        args.ab_size = 128 * MiB
        args.budget = 8 if args.budget is None else args.budget
    else:
        args.size = parse_size(args.size) if args.size else 2 * GiB
        args.mem_small = 256 * MiB
        args.images = args.images or 200
        args.sample = args.sample or 20
        args.ab_size = 256 * MiB
        args.budget = 15 if args.budget is None else args.budget
    args.mem_small = min(args.mem_small, args.size)
    cases = [c.strip() for c in args.cases.split(',') if c.strip()]
    args.case_list = cases
    args.prof_images = 5
    if librbd is None:
        sys.exit('python3-rbd does not import: run with the .venv (make bench)')
    os.environ.setdefault('ANSIBLE_COLLECTIONS_PATH', str(REPO / '.build' / 'collections'))

    bench = Bench(args)

    def on_term(signum, _frame):
        raise KeyboardInterrupt('signal %d' % signum)
    signal.signal(signal.SIGTERM, on_term)
    meta = dict(started=datetime.datetime.now().isoformat(timespec='seconds'), quick=args.quick, runs=args.runs,
                cases=cases, size=args.size, images=args.images, sample=args.sample, nproc=os.cpu_count(),
                loadavg_start=os.getloadavg(), run_id=RUN_ID,
                inventory_pipelining='ansible_pipelining: true' in Path(bench.bed.inventory).read_text(),
                git=subprocess.run(['git', '-C', str(REPO), 'log', '-1', '--format=%h %s'], capture_output=True,
                                   text=True).stdout.strip(),
                git_dirty=bool(subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', '--', 'plugins',
                                               'roles'], capture_output=True, text=True).stdout.strip()),
                ceph=subprocess.run(['ceph', '--version'], capture_output=True, text=True).stdout.strip())
    log('run id %s; cases %s; %d runs each; %s per throughput run; load %.1f' % (
        RUN_ID, ','.join(cases), args.runs, human(args.size), os.getloadavg()[0]))
    error = None
    try:
        bench.preflight()
    except Exception as e:
        bench.watcher.stop()
        bench.cleanup()
        sys.exit('bench: %s' % e)
    steps = []
    if 'p1' in cases or 'p3' in cases:
        steps.append(('p1', lambda: bench.case_p1('p1', 'random', None)))
    if 'p3' in cases:
        # fresh pools for p3: dropping p1's (two 2 GiB images and their snapshots on the backup OSD) frees
        # their space at once; left to snapshot trimming, the OSD-space guard skipped p3
        steps.append(('p1 teardown', bench.p1_teardown))
        steps.append(('p3', bench.case_p3))
    if 'p4' in cases:
        steps.append(('p4', bench.case_p4_small))
    if 'p1z' in cases:
        # fresh pools: dropping the p1 pools frees their space at once (removed snapshots are trimmed
        # slowly on the test bed's OSDs), so that p1z can write its 3 x 2 x 2 GiB
        steps.append(('p1 teardown', bench.p1_teardown))
        steps.append(('p1z', lambda: bench.with_link(args.link, lambda: bench.case_p1('p1z', 'compressible', 'zstd'))))
    steps.append(('p1 teardown', bench.p1_teardown))
    if 'ovh' in cases:
        steps.append(('ovh', bench.case_ovh))
    if 'ab' in cases:
        steps.append(('ab', bench.case_ab))
    if 'p2' in cases:
        steps.append(('p2', bench.case_p2))
    try:
        for name, step in steps:
            try:
                step()
            except NoSpace as e:
                log('%s skipped: %s' % (name, e))
                bench.notes.append('%s skipped: %s' % (name.upper(), e))
    except BaseException as e:  # report what we have, then clean up
        error = '%s: %s' % (type(e).__name__, e)
        log('ABORTED: %s' % error)
        import traceback
        traceback.print_exc()
    finally:
        bench.kill_modules()
        bench.watcher.stop()
        bench.cleanup()
    meta.update(runtime_s=round(time.monotonic() - T_START, 1), loadavg_end=os.getloadavg(), error=error,
                notes=bench.notes, disk_free_end=human(os.statvfs(bench.env['RBD_TESTBED_DIR']).f_bavail
                                                       * os.statvfs(bench.env['RBD_TESTBED_DIR']).f_frsize))
    doc = dict(meta=meta, results=bench.results)
    table = summarize(bench.results, args, bench.notes) if bench.results else '(no results)'
    prof = profile_text(bench.results)
    doc['table_markdown'] = table
    doc['profile_markdown'] = prof
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(doc, f, indent=1, default=str)
    stamped = os.path.join(os.path.dirname(args.out), 'bench-%s%s.json' % (
        datetime.datetime.now().strftime('%Y%m%dT%H%M%S'), '-quick' if args.quick else ''))
    shutil.copyfile(args.out, stamped)
    print()
    print('## ceph_rbd.backup bench (%s, %d runs per case, %s per throughput run, run id %s)' % (
        'quick' if args.quick else 'full', args.runs, human(args.size), RUN_ID))
    print()
    print('collection at %s%s; ssh pipelining in the inventory: %s' % (
        meta['git'], ' (+ uncommitted changes)' if meta['git_dirty'] else '',
        'on' if meta['inventory_pipelining'] else 'off'))
    print()
    print(table)
    print(prof)
    print()
    print('runtime %.0fs; load average %.1f at start, %.1f at end; results in %s' % (
        meta['runtime_s'], meta['loadavg_start'][0], meta['loadavg_end'][0], args.out))
    if error:
        print('ABORTED: %s' % error)
    return 1 if error else 0


if __name__ == '__main__':
    sys.exit(main())
