"""The AWX / AAP example of README.md against the role's argument specs, so that it cannot drift silently.

README's "AWX / AAP" section has three blocks, each after an HTML comment marker: the inventory variables
(awx-inventory-vars), the job template's extra variables (awx-extra-vars) and the survey spec (awx-survey).
Static checks: the survey is well formed for AWX; each survey variable is either a role variable of a
compatible type (choices within the role's, default equal to the role's default), or an awx_ answer that
the extra variables use; each extra variable is a role variable. Then ansible-playbook templates the extra
variables with survey answers (the defaults, and others) the way AWX hands them over (one extra-vars
file) and validates the result with the role's own argument spec and the collection's retention filter.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import COLLECTIONS, REPO_ROOT

SPEC = os.path.join(REPO_ROOT, 'roles', 'rbd_replicate', 'meta', 'argument_specs.yml')
README = os.path.join(REPO_ROOT, 'README.md')
SURVEY_TYPES = {'text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect'}


def readme_block(marker):
    text = open(README).read()
    start = text.index('\n## AWX / AAP\n')
    end = text.find('\n## ', start + 1)
    section = text[start:end if end > 0 else None]
    m = re.search(r'<!-- %s\b[^>]*-->\s*```(\w+)\n(.*?)\n```' % re.escape(marker), section, re.S)
    assert m, 'README "AWX / AAP" has no block after <!-- %s -->' % marker
    return json.loads(m.group(2)) if m.group(1) == 'json' else yaml.safe_load(m.group(2))


@pytest.fixture(scope='module')
def options():
    return yaml.safe_load(open(SPEC))['argument_specs']['main']['options']


@pytest.fixture(scope='module')
def survey():
    return readme_block('awx-survey')


@pytest.fixture(scope='module')
def extra_vars():
    return readme_block('awx-extra-vars')


@pytest.fixture(scope='module')
def inventory_vars():
    return readme_block('awx-inventory-vars')


def multiselect_default(q):
    return [c for c in str(q.get('default') or '').split('\n') if c]


def test_survey_is_well_formed_for_awx(survey):
    assert survey['name'] and 'description' in survey and survey['spec']
    seen = set()
    for q in survey['spec']:
        for key in ('question_name', 'question_description', 'variable', 'type', 'required'):
            assert key in q, '%s lacks %s' % (q.get('variable'), key)
        assert q['type'] in SURVEY_TYPES, q
        assert q['variable'] not in seen, 'two questions set %s' % q['variable']
        seen.add(q['variable'])
        if q['type'] in ('multiplechoice', 'multiselect'):
            assert isinstance(q['choices'], list) and q['choices'], q
            chosen = [q['default']] if q['type'] == 'multiplechoice' else multiselect_default(q)
            assert chosen and set(chosen) <= set(q['choices']), 'default of %s not among its choices' % q['variable']
        if q['type'] == 'integer':
            assert all(isinstance(q[k], int) for k in ('min', 'max', 'default')), q
            assert q['min'] <= q['default'] <= q['max'], q


# survey type -> the role types an answer of it passes as, unchanged
COMPATIBLE = {'text': {'str'}, 'textarea': {'str'}, 'password': {'str'}, 'multiplechoice': {'str'},
              'integer': {'int'}, 'float': {'float'}, 'multiselect': {'list'}}


def test_every_survey_variable_is_a_role_variable_or_an_awx_answer_used_by_the_extra_vars(survey, options, extra_vars):
    templates = json.dumps(extra_vars)
    for q in survey['spec']:
        var = q['variable']
        if var in options:
            spec = options[var]
            assert spec.get('type', 'str') in COMPATIBLE[q['type']], \
                '%s: survey type %s cannot carry the role type %s' % (var, q['type'], spec.get('type'))
            if q['type'] == 'multiselect':
                assert spec.get('elements') == 'str', var
            if spec.get('choices'):
                got = q['choices'] if q['type'] != 'text' else []
                assert set(got) <= set(spec['choices']), '%s: choices %s, the role allows %s' % (var, got, spec['choices'])
            if 'default' in spec:
                default = multiselect_default(q) if q['type'] == 'multiselect' else q['default']
                assert default == spec['default'], \
                    '%s: survey default %r, role default %r (a scheduled run takes the survey default)' % (
                        var, default, spec['default'])
            assert not re.search(r'\b%s\b' % var, templates), '%s is set by the survey and the extra vars' % var
        else:
            assert var.startswith('awx_'), '%s is neither a role variable nor an awx_ answer' % var
            assert re.search(r'\b%s\b' % var, templates), 'the extra vars do not use the answer %s' % var


def test_every_extra_var_is_a_role_variable_and_every_awx_name_is_defined(survey, options, extra_vars, inventory_vars):
    assert set(extra_vars) <= set(options), 'not role variables: %s' % sorted(set(extra_vars) - set(options))
    defined = {q['variable'] for q in survey['spec']} | set(inventory_vars)
    used = set(re.findall(r'\bawx_\w+', json.dumps(extra_vars)))
    assert used <= defined, 'used but neither answered nor in the inventory: %s' % sorted(used - defined)
    for name in inventory_vars:
        assert name in options or name.startswith('awx_'), name


def answers(survey, pick):
    out = {}
    for q in survey['spec']:
        if q['type'] == 'multiselect':
            out[q['variable']] = multiselect_default(q) if pick == 'default' else q['choices'][-1:]
        elif q['type'] == 'multiplechoice':
            out[q['variable']] = q['default'] if pick == 'default' else q['choices'][-1]
        elif q['type'] == 'integer':
            out[q['variable']] = q['default'] if pick == 'default' else q['max']
        else:
            out[q['variable']] = q.get('default', '')
    return out


@pytest.mark.parametrize('pick', ['default', 'other'])
def test_answers_through_the_extra_vars_pass_the_role_argument_spec(
        pick, survey, options, extra_vars, inventory_vars, tmp_path):
    given = answers(survey, pick)
    # AWX writes the job template's extra variables and the survey answers into one extra-vars file
    (tmp_path / 'extra_vars.json').write_text(json.dumps(dict(extra_vars, **given)))
    host = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = {'all': {'children': {'ceph_source': {'hosts': {'localhost': host}, 'vars': inventory_vars}}}}
    (tmp_path / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    role_vars = sorted(set(extra_vars) | {q['variable'] for q in survey['spec'] if q['variable'] in options})
    want_pools = [p for p in inventory_vars['awx_pool_map'] if p['pool'] in given['awx_pools']]
    play = [{
        'hosts': 'ceph_source', 'gather_facts': False,
        'tasks': [
            {'name': 'The role variables as the role receives them, checked against its argument spec',
             'ansible.builtin.validate_argument_spec': {
                 'argument_spec': {k: options[k] for k in role_vars if k in options},
                 'provided_arguments': {k: '{{ %s }}' % k for k in role_vars}}},
            {'name': 'Their exact values and types',
             'ansible.builtin.assert': {'that': [
                 'rbd_replicate_pools == %s' % json.dumps(want_pools),
                 'rbd_replicate_retention_source is mapping',
                 'rbd_replicate_retention_dest is mapping',
                 "rbd_replicate_retention_source.values() | map('type_debug') | unique == ['int']",
                 "rbd_replicate_retention_dest.values() | map('type_debug') | unique == ['int']",
                 "rbd_replicate_retention_source | ceph_rbd.backup.retention_error == ''",
                 "rbd_replicate_retention_dest | ceph_rbd.backup.retention_error == ''",
                 'rbd_replicate_retention_source.last == %d' % given['awx_keep_source_last'],
                 'rbd_replicate_retention_dest == %s' % json.dumps(
                     {k: given['awx_keep_' + k] for k in ('last', 'daily', 'weekly', 'monthly')}),
             ]}},
        ]}]
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    bindir = os.path.dirname(sys.executable)
    r = subprocess.run([os.path.join(bindir, 'ansible-playbook'), '-i', str(tmp_path / 'inventory.yml'),
                        '-e', '@%s' % (tmp_path / 'extra_vars.json'), str(tmp_path / 'play.yml')],
                       env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path), check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert 'ok=2' in r.stdout and 'failed=0' in r.stdout, r.stdout[-2000:]
