# -*- coding: utf-8 -*-
# Soak helper (tests/soak/ only): what one ansible-playbook run did, for tests/soak/soak.py.
#  * $SOAK_PROGRESS: one line "<epoch> <task name>" per task start, flushed at once, so that the
#    soak's fault thread can time a fault into the transfer step;
#  * $SOAK_RECORD: at the end, JSON {custom: set_stats data, failed: [{task, host, msg}], tasks: [...]}.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = '''
    name: soak_record
    type: aggregate
    short_description: task progress and failures of one run, for tests/soak/soak.py
    description: writes task starts to $SOAK_PROGRESS and the run's custom stats and failures to $SOAK_RECORD
    requirements: [enable in configuration]
'''

import json
import os
import time

from ansible.plugins.callback import CallbackBase


def _res(result):
    return getattr(result, 'result', None) or getattr(result, '_result', {}) or {}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'soak_record'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.tasks = []
        self.failed = []
        path = os.environ.get('SOAK_PROGRESS')
        self.progress = open(path, 'a') if path else None

    def _start(self, task):
        name = task.get_name()
        self.tasks.append(dict(name=name, start=time.time()))
        if self.progress:
            self.progress.write('%.3f %s\n' % (time.time(), name))
            self.progress.flush()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        r = _res(result)
        msg = str(r.get('msg'))
        if r.get('module_stderr'):
            msg += ' [rc %s, module stderr: %s]' % (r.get('rc'), str(r['module_stderr']).strip()[-600:])
        self.failed.append(dict(task=result._task.get_name(), host=result._host.get_name(), msg=msg[:6000],
                                ignored=bool(ignore_errors)))

    def v2_runner_on_unreachable(self, result):
        r = _res(result)
        self.failed.append(dict(task=result._task.get_name(), host=result._host.get_name(),
                                msg='UNREACHABLE: %s' % str(r.get('msg'))[:3000], ignored=False))

    def v2_playbook_on_stats(self, stats):
        try:
            custom = json.loads(json.dumps(stats.custom, default=str))
        except Exception:  # pragma: no cover - best effort
            custom = {}
        path = os.environ.get('SOAK_RECORD')
        if path:
            with open(path, 'w') as f:
                json.dump(dict(custom=custom, failed=self.failed, tasks=self.tasks, end=time.time()), f)
        if self.progress:
            self.progress.close()
            self.progress = None
