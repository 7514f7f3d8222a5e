"""What one role run recorded, made readable: per-task table, module peaks, the failure, median profiles."""

from typing import Callable, Dict, Iterable, List, Optional

from .common import MiB, median


# the modules whose work grows with the images a host carries (the others: lock, listing, once per pool)
PER_IMAGE_MODULES = ('rbd_snapshot', 'rbd_diff_transfer', 'rbd_extent_verify', 'rbd_snapshot_prune')


def _module_of(action):
    return (action or '').split('.')[-1]


def _short(task_name):
    """A task's name without its role prefix ('rbd_replicate : Lock' -> 'Lock')."""
    return task_name.split(' : ', 1)[-1]


def _task_wall(task, digits):
    return round((task.get('end') or task['start']) - task['start'], digits)


def attribute(procs: List[dict], tasks: List[dict]) -> List[dict]:
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


def peaks_of(procs: Optional[List[dict]]) -> Dict[str, int]:
    """Peak VmHWM per module."""
    out = {}
    for p in procs or []:
        out[p['module']] = max(out.get(p['module'], 0), p['hwm'])
    return out


def child_peaks_of(procs: Optional[List[dict]]) -> Dict[str, int]:
    """Peak VmHWM per kind of child process of the modules ('rbd import-diff', 'ssh'...)."""
    out = {}
    for p in procs or []:
        for k, v in p['children'].items():
            name = k.split('[')[0]
            out[name] = max(out.get(name, 0), v)
    return out


def max_peaks(dicts: Iterable[Optional[Dict[str, int]]]) -> Dict[str, int]:
    out = {}
    for d in dicts:
        for k, v in (d or {}).items():
            if v is not None:
                out[k] = max(out.get(k, 0), v)
    return out


def fmt_peaks(d: Dict[str, int]) -> str:
    return ', '.join('%s %.0f MiB' % (k.replace('rbd_', ''), v / MiB) for k, v in sorted(d.items()))


def transfer_images(r: dict) -> List[dict]:
    """The per-image results of the run's rbd_diff_transfer task."""
    for t in r['tasks']:
        if (t.get('action') or '').endswith('rbd_diff_transfer') and t.get('images'):
            return t['images']
    return []


def failed_msg(r: dict) -> Optional[str]:
    """The first failed task of a failed role run and its message (None if the run passed)."""
    if not r['rc']:
        return None
    for t in r['tasks']:
        if t.get('status') == 'failed':
            return '%s: %s' % (_short(t['name']), (t.get('msg') or '')[:600])
    return r.get('tail', '')[-600:]


def task_table(r: dict) -> List[dict]:
    """Per task: wall, and for module tasks the module process lifetime and CPU (from /proc, 20 Hz)."""
    rows = []
    procs = sorted(r.get('procs') or [], key=lambda p: p['first'])
    for i, t in enumerate(r['tasks']):
        mod = _module_of(t.get('action'))
        row = dict(name=_short(t['name']), module=mod if mod.startswith('rbd_') else None,
                   wall=_task_wall(t, 3), status=t.get('status'))
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


def timeline(r: dict) -> dict:
    """When each module process and each task of a role run ran, relative to the run's start."""
    return dict(
        procs=[dict(module=p['module'], start=round(p['first'] - r['w0'], 2), seconds=round(p['last'] - p['first'], 2),
                    cpu=p['cpu'], hwm_mib=round(p['hwm'] / MiB, 1)) for p in r['procs']],
        tasks=[dict(name=_short(t['name'])[:40], start=round(t['start'] - r['w0'], 2), wall=_task_wall(t, 2))
               for t in r['tasks']])


def module_wall(tasks: List[dict], module: str) -> float:
    """Seconds spent in the tasks of one module (a task table)."""
    return sum(t['wall'] for t in tasks if t['module'] == module)


def median_profile(tables: List[List[dict]]) -> List[dict]:
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


def good_or_all(runs: List[dict], ok: Callable[[dict], bool]) -> List[dict]:
    """The runs that passed, for the medians; all of them when none did."""
    return [r for r in runs if ok(r)] or runs
