# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded concurrency over images: one result or one error per item, none lost."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback
from typing import Any, Callable, Iterable, List, Optional, Tuple
from concurrent.futures import ThreadPoolExecutor


def run_all(items: Iterable[Any], work: Callable[[Any], Any],
            workers: int) -> List[Tuple[Any, Any, Optional[BaseException]]]:
    """Call ``work(item)`` for every item, at most ``workers`` at a time.

    Returns ``[(item, result, error)]`` in the order of ``items``; exactly one of
    result/error is set.  An exception in one item never stops the others.
    """
    items = list(items)
    if not items:
        return []

    def guarded(item):
        try:
            return item, work(item), None
        except Exception as e:  # every failure is reported per item
            if not str(e):
                e = RuntimeError('%s: %s' % (type(e).__name__, traceback.format_exc(limit=3)))
            return item, None, e

    if workers <= 1 or len(items) == 1:
        return [guarded(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(guarded, items))
