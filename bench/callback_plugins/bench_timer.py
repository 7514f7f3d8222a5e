# -*- coding: utf-8 -*-
# Benchmark helper (bench/ only): per-task wall times and selected module results of one
# ansible-playbook run, written as JSON to $BENCH_TIMER_OUT.  ansible.posix.profile_tasks
# is not installed on the test bed, so bench/bench.py brings its own.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = '''
    name: bench_timer
    type: aggregate
    short_description: per-task wall times for bench/bench.py
    description: writes task start/end times and selected results to $BENCH_TIMER_OUT
    requirements: [enable in configuration]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase

KEEP = ('seconds', 'stream_seconds', 'bytes', 'data_bytes', 'zero_bytes', 'action', 'bytes_read', 'snapshot',
        'base', 'rate', 'image', 'failed', 'msg', 'match', 'removed')


def _res(result):
    return getattr(result, 'result', None) or getattr(result, '_result', {}) or {}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.t0 = time.time()
        self.tasks = []
        self.current = None
        self.custom = {}

    def _start(self, task):
        now = time.time()
        if self.current is not None and self.current.get('end') is None:
            self.current['end'] = now
        self.current = dict(name=task.get_name(), action=task.action, start=now, end=None, status=None,
                            images=None, hosts={})
        self.tasks.append(self.current)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _done(self, result, status):
        if self.current is None:
            return
        self.current['end'] = time.time()
        if self.current['status'] != 'failed':      # one host failed, the task failed
            self.current['status'] = status
        r = _res(result)
        host = result._host.get_name() if getattr(result, '_host', None) else None
        # with several hosts, one entry each: its status and the host a delegated task ran on
        dv = r.get('_ansible_delegated_vars') or {}
        self.current['hosts'][host] = dict(status=status,
                                           delegated_to=dv.get('ansible_delegated_host') or dv.get('ansible_host'))
        if isinstance(r.get('images'), list):
            imgs = self.current['images'] or []
            for i in r['images']:
                if isinstance(i, dict):
                    imgs.append(dict([(k, i.get(k)) for k in KEEP if k in i] + [('host', host)]))
            self.current['images'] = imgs
        if status == 'failed':
            msg = str(r.get('msg'))[:1500]
            if r.get('module_stderr'):
                msg += ' [rc %s, module stderr: %s]' % (r.get('rc'), str(r['module_stderr']).strip()[-400:])
            self.current['msg'] = msg

    def v2_runner_on_ok(self, result):
        self._done(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._done(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._done(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        now = time.time()
        if self.current is not None and self.current.get('end') is None:
            self.current['end'] = now
        try:
            custom = stats.custom
            self.custom = json.loads(json.dumps(custom, default=str))
        except Exception:  # pragma: no cover - best effort
            self.custom = {}
        path = os.environ.get('BENCH_TIMER_OUT')
        if path:
            with open(path, 'w') as f:
                json.dump(dict(t0=self.t0, end=now, tasks=self.tasks, custom=self.custom), f)
