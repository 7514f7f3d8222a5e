# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure: the whole plan of one image's transfer, from what both sides hold.

:func:`plan` takes :class:`Facts` (gathered by :mod:`_transfer`: both sides' snapshots, the destination's
import mark and whether its head changed, what the snapshot step knows) and the options, and returns a
:class:`Plan`: the action, the base, the ordered steps, whether data travels, which snapshots the prune must
keep, or the reason to refuse.  No I/O here; every decision is a row of ``tests/unit/.../test_plan.py``.

The steps, run in order by :func:`_transfer.execute`:

========================  ====================================================================
``('rollback', img, s)``  roll the destination's head back to snapshot ``s``
``('remove', img)``       remove an image (with its snapshots): our own leftover, never a backup
``('create', img)``       create the image with the source's size and object size
``('import', img, base)`` mark, stream ``export-diff [--from-snap base] | import-diff``, confirm, unmark
``('snap', img)``         create the target snapshot without a stream (nothing was written)
``('unmark', img)``       remove a leftover import mark
``('rename', a, b)``      rename image ``a`` to ``b``
========================  ====================================================================
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _snapshots as snaps_mod


class Facts:
    """What one transfer's decisions need to know; gathered by :func:`_transfer.gather`.

    ``dst_snaps`` is None when the destination image does not exist; ``dirty`` whether its head differs
    from its newest prefixed snapshot (``dirty_since``), None when not asked; ``source_unchanged`` whether
    nothing was written on the source between the base and the target (None: unknown); ``tmp`` the state
    of a leftover ``<image>.rebuilding`` (None, ``'ours'`` or ``'foreign'``).
    """

    def __init__(self, image, dest_image, target, src_snaps, dst_snaps=None, mark=None, dirty=None,
                 dirty_since=None, source_unchanged=None, dest_size=None, tmp=None, aside=None, dirty_covered=None,
                 newest_deleted=None, object_size=None):
        self.image = image
        self.dest_image = dest_image
        self.target = target
        self.src_snaps = src_snaps
        self.dst_snaps = dst_snaps
        self.mark = mark
        self.dirty = dirty
        self.dirty_since = dirty_since
        # whether every extent where the head differs from dirty_since is rewritten by the diff we send anyway
        self.dirty_covered = dirty_covered
        # the newest snapshot this destination was known to hold (the source's hold for it) is gone from it
        self.newest_deleted = newest_deleted
        self.source_unchanged = source_unchanged
        self.dest_size = dest_size
        self.tmp = tmp
        self.aside = aside or snaps_mod.aside_name(dest_image)
        self.object_size = object_size      # the source image's, when the snapshot step said (hints)

    @property
    def target_exists(self):
        return any(s['name'] == self.target for s in self.src_snaps)

    @property
    def target_size(self):
        for s in self.src_snaps:
            if s['name'] == self.target:
                return s.get('size')
        return None


class Plan:
    """The decision for one image (see the module docstring for ``steps``)."""

    def __init__(self, action, base=None, steps=(), sends=False, recovered=False, rolled_back=False,
                 unchanged=False, replaced_image=None, keep=(), error=None, error_side='dest', head_rewritten=False):
        self.action = action
        self.base = base
        self.steps = list(steps)
        self.sends = sends                  # a data stream is part of the plan
        self.recovered = recovered          # our own interrupted import is undone
        self.rolled_back = rolled_back      # a foreign write on the backup is undone (allow_rollback)
        self.unchanged = unchanged          # the snapshot is made without a stream: nothing was written
        self.head_rewritten = head_rewritten  # the head had moved past its snapshot, within what the diff rewrites
        self.replaced_image = replaced_image
        self.keep = list(keep)              # snapshots the prune must keep on both sides
        self.error = error                  # a refusal: nothing is done
        self.error_side = error_side        # which image it is about: 'source' or 'dest'

    def describe(self) -> List[str]:
        """The steps as short human-readable strings (check mode and results)."""
        out = []
        for step in self.steps:
            op, args = step[0], [a for a in step[1:] if a is not None]
            if op == 'import':
                out.append('import into %s %s' % (args[0], 'from ' + args[1] if len(args) > 1 else '(whole image)'))
            else:
                out.append(' '.join([op] + [str(a) for a in args]))
        return out

    def as_dict(self) -> Dict[str, Any]:
        return dict(action=self.action, base=self.base, steps=self.describe(), sends=self.sends,
                    recovered=self.recovered, rolled_back=self.rolled_back, unchanged=self.unchanged,
                    head_rewritten=self.head_rewritten,
                    replaced_image=self.replaced_image, keep=self.keep, error=self.error)


def _refuse(msg, side='dest'):
    return Plan(None, error=msg, error_side=side)


def _rebuild(f):
    """Import the whole snapshot under a temporary name, then swap it in; the old image is kept aside."""
    tmp = snaps_mod.rebuild_name(f.dest_image)
    if f.tmp == 'foreign':
        return _refuse('cannot rebuild: %s exists and is not ours' % tmp)
    steps = [('remove', tmp)] if f.tmp == 'ours' else []
    steps += [('create', tmp), ('import', tmp, None), ('rename', f.dest_image, f.aside), ('rename', tmp, f.dest_image)]
    return Plan(snaps_mod.ACTION_REBUILD, None, steps, sends=True, replaced_image=f.aside, keep=[f.target])


def _restore(f, action, base, overwrite):
    """Restore onto an existing image: its head becomes exactly the target (rolled back, or rolled back to
    the nearest common snapshot and sent the diff from it, or rebuilt)."""
    if not overwrite:
        return _refuse('the image to restore to already exists; refusing to overwrite it (set overwrite=true, '
                       'playbook: rbd_restore_overwrite=true, or restore to a new image name)')
    if action == snaps_mod.ACTION_UP_TO_DATE:
        return Plan('rollback', f.target, [('rollback', f.dest_image, f.target)], keep=[f.target])
    if action == snaps_mod.ACTION_REBUILD:
        return _rebuild(f)
    return Plan(snaps_mod.ACTION_INCREMENTAL, base,
                [('rollback', f.dest_image, base), ('import', f.dest_image, base)], sends=True, keep=[f.target])


def covers(outer, inner):
    """Pure: whether the extents ``outer`` cover every byte of the extents ``inner`` ([(offset, length, ...)])."""
    spans = sorted((o, o + n) for o, n, *_x in outer if n > 0)
    merged = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for o, n, *_x in inner:
        if n > 0 and not any(lo <= o and o + n <= hi for lo, hi in merged):
            return False
    return True


def _incremental(f, base, allow_rollback, check_mode):
    ours = f.mark is not None
    steps = []
    # The newest backup snapshot was deleted by hand: its data is still on the head, so the head differs from the
    # remaining base, but only where the diff we send rewrites anyway. Sending the diff is then exact. Without the
    # source's word that such a snapshot existed, a changed head is a foreign write and is refused.
    rewrite = bool(f.dirty and not ours and f.dirty_covered and f.newest_deleted)
    if f.dirty and not rewrite:
        if not ours and not allow_rollback:
            return _refuse(
                'the destination image was modified since its snapshot %s (rbd diff --from-snap %s is not empty); '
                'refusing to overwrite it. Inspect it, then rerun with allow_rollback=true (role: '
                'rbd_replicate_allow_rollback: true) to roll it back to %s and continue'
                % (f.dirty_since, f.dirty_since, f.dirty_since))
        steps.append(('rollback', f.dest_image, f.dirty_since))
    keep = [f.target] + ([base] if check_mode else [])
    flags = dict(recovered=bool(f.dirty and ours), rolled_back=bool(f.dirty and not ours and not rewrite),
                 head_rewritten=rewrite, keep=keep)
    if f.source_unchanged and f.dest_size == f.target_size:
        # Nothing written since the base and the same size: the head (its newest snapshot, checked above, and
        # of the target's size) already holds the target's bytes. Creating the snapshot is all import-diff
        # would do, without its ssh connection and two rbd processes.
        return Plan(snaps_mod.ACTION_INCREMENTAL, base, steps + [('snap', f.dest_image)], unchanged=True, **flags)
    return Plan(snaps_mod.ACTION_INCREMENTAL, base, steps + [('import', f.dest_image, base)], sends=True, **flags)


def snapshot_action(f: Facts, prefix: str) -> Tuple[str, Optional[str]]:
    """(action, base) from the two sides' snapshots alone (see :func:`_snapshots.plan_transfer`).

    In check mode the target may not exist yet (the snapshot step did not make it): it counts as the newest.
    """
    src = f.src_snaps if f.target_exists else f.src_snaps + [dict(id=float('inf'), name=f.target)]
    decided = snaps_mod.plan_transfer(src, f.dst_snaps, prefix, f.target)
    return decided['action'], decided['base']


def partial_initial(f: Facts, action: str) -> bool:
    """Our own interrupted *initial* import: an image with no snapshots that carries our mark."""
    return action == snaps_mod.ACTION_REBUILD and f.mark is not None and not f.dst_snaps


def plan(f: Facts, prefix: str = 'backup-', restore: bool = False, overwrite: bool = False,
         allow_rollback: bool = False, check_mode: bool = False) -> Plan:
    """The plan that brings ``f.dest_image`` up to ``f.target`` (see :class:`Plan`)."""
    if f.target is None:
        return _refuse('no snapshot with prefix %r to send; create one with ceph_rbd.backup.rbd_snapshot' % prefix,
                       'source')
    if not f.target_exists and not check_mode:
        return _refuse('snapshot %s does not exist on the source' % f.target, 'source')
    action, base = snapshot_action(f, prefix)
    if restore and f.dst_snaps is not None:
        return _restore(f, action, base, overwrite)
    if partial_initial(f, action):
        return Plan(snaps_mod.ACTION_INITIAL, None, [('remove', f.dest_image), ('create', f.dest_image),
                                                     ('import', f.dest_image, None)],
                    sends=True, recovered=True, keep=[f.target])
    if action == snaps_mod.ACTION_UP_TO_DATE:
        return Plan(action, f.target, [('unmark', f.dest_image)] if f.mark is not None else [], keep=[f.target])
    if action == snaps_mod.ACTION_INITIAL:
        return Plan(action, None, [('create', f.dest_image), ('import', f.dest_image, None)], sends=True,
                    keep=[f.target])
    if action == snaps_mod.ACTION_REBUILD:
        return _rebuild(f)
    return _incremental(f, base, allow_rollback, check_mode)
