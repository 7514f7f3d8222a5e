"""A thread that watches /proc for the module processes of the bench's own ansible runs."""

import os
import re
import threading
import time
from typing import List, Optional

from .common import log


def _read(path: str) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


class ProcWatcher(threading.Thread):
    """Polls /proc for the module python processes of our own ansible runs and records, per process:
    first/last seen, peak VmHWM/VmRSS, CPU seconds, and the peak RSS of its direct children (rbd, ssh,
    zstd).  Our runs use a python wrapper (ansible_python_interpreter) that execs /usr/bin/python3 under
    the argv[0] ``marker``: with ssh pipelining (the test bed's inventory) the command line of a module
    process names no module, so the module is the one of the task that was running when it started."""

    def __init__(self, marker: str, wrapper: Optional[str] = None, interval: float = 0.05):
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

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.poll()
            except Exception as e:  # pragma: no cover - never let the watcher die
                log('watcher: %s' % e)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.poll()
        with self.lock:
            for pid in list(self.active):
                self.done.append(self.active.pop(pid))

    def _status(self, pid):
        st = {}
        for line in _read('/proc/%d/status' % pid).decode(errors='replace').splitlines():
            key, _colon, value = line.partition(':')
            if key in ('VmHWM', 'VmRSS'):
                st[key] = int(value.split()[0]) * 1024
        stat = _read('/proc/%d/stat' % pid).decode(errors='replace')
        fields = stat[stat.rfind(')') + 2:].split()
        st['cpu'] = (int(fields[11]) + int(fields[12])) / self.tick
        return st

    @staticmethod
    def _ppid(pid):
        try:
            stat = _read('/proc/%d/stat' % pid).decode(errors='replace')
            return int(stat[stat.rfind(')') + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def poll(self) -> None:
        """One look at /proc: new module processes, samples of the known ones, the ones that ended."""
        now = time.time()
        pids = set(int(p) for p in os.listdir('/proc') if p.isdigit())
        with self.lock:
            for pid in list(self.active):
                if pid not in pids:
                    self.done.append(self.active.pop(pid))
            for pid in self.ignore - pids:
                self.ignore.discard(pid)
            for pid in pids:
                if pid not in self.active and pid not in self.ignore:
                    self._adopt(pid, now)
            for pid, rec in list(self.active.items()):
                self._sample(pid, rec, now)

    def _adopt(self, pid, now):
        """Start recording ``pid`` if it is a module process of ours (python3 under our marker)."""
        try:
            cmd = _read('/proc/%d/cmdline' % pid)
        except OSError:
            return
        argv = cmd.split(b'\0')
        if argv[0] != self.marker:
            # read every new process once; only a future module process (the wrapper, or the
            # shell that runs it, or a fork of them) is read again until it execs python
            if not (self.wrapper and self.wrapper in cmd) and cmd:
                self.ignore.add(pid)
            return
        if self._ppid(pid) in self.active:
            return         # a child the module forked, caught before its exec
        m = re.search(rb'AnsiballZ_(\w+)\.py', cmd)
        self.active[pid] = dict(pid=pid, module=m.group(1).decode() if m else None, first=now, last=now,
                                hwm=0, rss=0, cpu=0.0, children={}, cmd=cmd)

    def _sample(self, pid, rec, now):
        try:
            if _read('/proc/%d/cmdline' % pid) != rec['cmd']:
                del self.active[pid]     # exec'd: it was not a module process
                return
            st = self._status(pid)
        except (OSError, ValueError, IndexError):
            return
        rec['last'] = now
        rec['hwm'] = max(rec['hwm'], st.get('VmHWM', 0))
        rec['rss'] = max(rec['rss'], st.get('VmRSS', 0))
        rec['cpu'] = max(rec['cpu'], st['cpu'])
        self._sample_children(pid, rec)

    def _sample_children(self, pid, rec):
        """The peak RSS of each direct child (``rbd import-diff[1234]``, ``ssh[1235]``...)."""
        try:
            kids = _read('/proc/%d/task/%d/children' % (pid, pid)).split()
        except OSError:
            kids = []
        for k in kids:
            k = int(k)
            try:
                kc = _read('/proc/%d/cmdline' % k).split(b'\0')
                kst = self._status(k)
            except (OSError, ValueError, IndexError):
                continue
            name = os.path.basename(kc[0]).decode(errors='replace')
            if name == 'rbd':
                name = 'rbd ' + next((a.decode() for a in kc[1:] if a in (
                    b'import-diff', b'export-diff', b'export', b'diff')), '?')
            key = '%s[%d]' % (name, k)
            rec['children'][key] = max(rec['children'].get(key, 0), kst.get('VmHWM', 0))

    def live(self) -> List[dict]:
        """The module processes still running: pid, module, first seen."""
        with self.lock:
            return [dict(pid=p['pid'], module=p['module'], first=p['first']) for p in self.active.values()]

    def take(self, t0: float, t1: float) -> List[dict]:
        """Finished (or still running) records that started within [t0, t1]."""
        with self.lock:
            recs = [r for r in self.done + list(self.active.values()) if t0 <= r['first'] <= t1]
        return [dict((k, v) for k, v in r.items() if k != 'cmd') for r in recs]
