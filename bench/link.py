"""A shaped ssh link for the zstd case: tc htb on lo, for the test bed's ssh port only.

The clusters' own traffic (other ports) is not shaped.  The shaping is removed after the case, at the
bench's exit (Bench.cleanup) and at its next start (Bench.preflight: a run killed with SIGKILL leaves it).
"""

import shutil
import subprocess
from typing import Callable, TypeVar

from .common import log

T = TypeVar('T')


def _tc(*args, check=True):
    return subprocess.run(['tc'] + list(args), capture_output=True, text=True, check=check)


def link_down() -> None:
    """Remove our shaping from lo (also a stale one left by a killed run: the htb root handle 1:)."""
    if shutil.which('tc') and 'htb 1:' in _tc('qdisc', 'show', 'dev', 'lo', check=False).stdout:
        _tc('qdisc', 'del', 'dev', 'lo', 'root', check=False)


def link_up(rate: str, port: str) -> None:
    """Shape the traffic of tcp ``port`` (both directions) on lo to ``rate`` (a tc rate: 1gbit, 500mbit)."""
    link_down()
    _tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10')
    _tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '100gbit')
    _tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', rate, 'ceil', rate)
    for direction in ('sport', 'dport'):
        _tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
            'match', 'ip', direction, port, '0xffff', 'flowid', '1:20')


def with_link(rate: str, port: str, step: Callable[[], T]) -> T:
    """Run ``step`` over an ssh link shaped to ``rate`` (``none`` or empty: plain loopback)."""
    if not rate or rate == 'none':
        return step()
    log('shaping the ssh link (port %s on lo) to %s' % (port, rate))
    link_up(rate, port)
    try:
        return step()
    finally:
        link_down()
