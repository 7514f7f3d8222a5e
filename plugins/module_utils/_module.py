# -*- coding: utf-8 -*-
# Copyright (c) ceph_rbd.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the collection shares: argument specs, image lists, results."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
from typing import Any, Dict, Iterable, List, Optional

from ansible_collections.ceph_rbd.backup.plugins.module_utils._parallel import run_all
from ansible_collections.ceph_rbd.backup.plugins.module_utils._rbd import CLIENT_ARGUMENT_SPEC
from ansible_collections.ceph_rbd.backup.plugins.module_utils._validate import range_problems

IMAGES_ARGUMENT_SPEC = dict(
    parallel=dict(type='int', default=8),
    fail_on_image_error=dict(type='bool', default=True),
)


POOL_ARGUMENT_SPEC = dict(
    pool=dict(type='str', required=True),
    namespace=dict(type='str'),
)


def argument_spec(**specific: Any) -> Dict[str, Any]:
    """The module's own options plus the common client and many-images options (doc fragment rbd.REMOTE)."""
    spec = dict(CLIENT_ARGUMENT_SPEC)
    spec.update(IMAGES_ARGUMENT_SPEC)
    spec.update(specific)
    return spec


def pool_argument_spec(**specific: Any) -> Dict[str, Any]:
    """The same for a module that works on the images of one pool (doc fragment rbd.POOL)."""
    return argument_spec(**dict(POOL_ARGUMENT_SPEC, **specific))


def check_ranges(module):
    """Fail, naming every option out of its range (``_validate``), before the module does anything."""
    problems = range_problems(module.params)
    if problems:
        module.fail_json(msg='; '.join(problems))


def image_items(module, key='images', fields=()):
    """Normalize ``images``: each element a name, or a dict with ``image`` (or ``name``) and ``fields``.

    Returns a list of dicts with ``image`` and the fields present; fails the module on a bad element.
    """
    items = []
    for raw in module.params[key] or []:
        if isinstance(raw, dict):
            name = raw.get('image', raw.get('name'))
            extra = dict((f, raw[f]) for f in fields if raw.get(f) is not None)
        else:
            name, extra = raw, {}
        if not isinstance(name, str) or not name:
            module.fail_json(msg='%s: every element must be an image name or a dict with "image", got %r'
                             % (key, raw))
        problem = image_name_problem(name)
        if problem:
            module.fail_json(msg='%s: %s' % (key, problem))
        item = dict(image=name)
        item.update(extra)
        items.append(item)
    names = [i['image'] for i in items]
    dupes = sorted(set(n for n in names if names.count(n) > 1))
    if dupes:
        module.fail_json(msg='%s: images listed more than once: %s' % (key, ', '.join(dupes)))
    return items


def image_name_problem(name: str) -> Optional[str]:
    """Pure: why an image name cannot be used (a message), or None.

    rbd reads "/" and "@" as pool and snapshot separators, and a word that starts with "-" as an option (the
    value of ``--image`` would become ``--log-file=...``): such a name is never put on a command line.
    """
    if '/' in name or '@' in name:
        return 'image name %r cannot contain "/" or "@" (rbd reads them as pool and snapshot separators)' % name
    if name.startswith('-'):
        return 'image name %r cannot start with "-" (rbd would read it as an option)' % name
    return None


def run_images(module, items, work):
    """Run ``work(item)`` over the items with the module's ``parallel`` bound."""
    return run_all(items, work, module.params.get('parallel') or 1)


def finish(module, outcomes, what, diff=None, **extra):
    """Exit (or fail) with one result per image; no image's result or error is dropped."""
    images, failed, messages = [], [], []
    for item, result, error in outcomes:
        if error is not None:
            images.append(dict(image=item['image'], failed=True, changed=False, msg=str(error)))
            failed.append(item['image'])
            # an RbdError that names its image, or a message that starts by naming it, is not prefixed again
            named = getattr(error, 'image', None) or str(error).startswith('image ')
            messages.append(str(error) if named else 'image %s: %s' % (item['image'], error))
        else:
            result.setdefault('image', item['image'])
            result.setdefault('failed', False)
            images.append(result)
    changed = any(r.get('changed') for r in images)
    out = dict(changed=changed, images=images, failed_images=failed)
    out.update(extra)
    if diff is not None and module._diff:
        out['diff'] = diff
    if failed and module.params.get('fail_on_image_error', True):
        module.fail_json(msg='%s failed for %d of %d image(s): %s' % (what, len(failed), len(images),
                                                                      '; '.join(messages)), **out)
    module.exit_json(**out)


def select_names(names: Iterable[str], include: Iterable[str], exclude: Iterable[str]) -> List[str]:
    """Pure: the names equal to or matching (shell-style) an include pattern and no exclude pattern, sorted."""
    return sorted(n for n in names
                  if any(n == pat or fnmatch.fnmatchcase(n, pat) for pat in include)
                  and not any(n == pat or fnmatch.fnmatchcase(n, pat) for pat in exclude))
