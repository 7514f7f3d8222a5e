"""Constants and small helpers every module of the bench uses."""

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

HERE = Path(__file__).resolve().parent          # bench/
REPO = HERE.parent
MiB = 1 << 20
GiB = 1 << 30
PLAYBOOK = 'ceph_rbd.backup.replicate'
RUN_ID = '%04x' % (os.getpid() & 0xffff)         # names our pools: bench-<case>-<run id>
T_START = time.monotonic()


class NoSpace(Exception):
    """A heavy step could fill a test-bed OSD or the host disk: it is skipped, and the bench says so."""


def log(msg: str) -> None:
    """Progress on stderr, with the seconds since the bench started."""
    sys.stderr.write('[bench %6.0fs] %s\n' % (time.monotonic() - T_START, msg))
    sys.stderr.flush()


def median(xs: Iterable[Optional[float]]) -> Optional[float]:
    """The median of the values that are not None (None if there are none)."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def human(n: int) -> str:
    """1073741824 -> '1 GiB', 1572864 -> '1.5 MiB'."""
    for unit, div in (('GiB', GiB), ('MiB', MiB), ('KiB', 1024)):
        if n >= div:
            v = n / div
            return ('%d %s' % (v, unit)) if v == int(v) else ('%.1f %s' % (v, unit))
    return '%d B' % n
