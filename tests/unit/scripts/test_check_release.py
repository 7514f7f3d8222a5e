"""scripts/check_release.py: the rules of "one version" and of the tarball's file list, each with cases that
must fail, then the whole check on this repository and on copies of it with one drift each.

scripts/ does not ship in the collection tarball, so neither does this directory (galaxy.yml build_ignore).
"""

import importlib.util
import os
import shutil

import pytest
import yaml

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location('check_release', os.path.join(REPO_ROOT, 'scripts', 'check_release.py'))
CR = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(CR)

MINOR = {'changelogs/fragments/a.yml': ['minor_changes']}
BUGFIX = {'changelogs/fragments/b.yml': ['bugfixes']}
BREAKING = {'changelogs/fragments/c.yml': ['breaking_changes']}
TRIVIAL_ONLY = {'changelogs/fragments/t.yml': ['trivial']}


# galaxy.yml's version, released versions, pending fragments -> None (agrees) or a piece of the one error
@pytest.mark.parametrize('galaxy, released, pending, error', [
    ('1.0.0', ['1.0.0'], {}, None),                        # the tree is the release
    ('1.0.0', ['1.0.0'], TRIVIAL_ONLY, None),              # trivial fragments do not make a release
    ('1.1.0', ['1.0.0'], MINOR, None),                     # new features: next minor
    ('2.0.0', ['1.0.0'], MINOR, None),                     # ... or next major
    ('1.0.1', ['1.0.0'], BUGFIX, None),                    # fixes only: next patch
    ('1.1.0', ['1.0.0'], BUGFIX, None),
    ('2.0.0', ['1.0.0'], BREAKING, None),                  # breaking: next major
    ('1.11.0', ['1.9.0', '1.10.0'], MINOR, None),          # versions compare as numbers, not strings
    ('1.0.0', [], {'changelogs/fragments/r.yml': ['release_summary']}, None),   # before the first release
    ('1.1.0', ['1.0.0'], {}, 'no fragment is pending for 1.1.0'),
    ('1.1.0', ['1.0.0'], TRIVIAL_ONLY, 'no fragment is pending for 1.1.0'),
    ('1.0.0', ['1.0.0'], MINOR, 'which is released, but fragments are pending'),
    ('1.1.0', ['1.0.0', '1.1.0'], MINOR, 'which is released, but fragments are pending'),
    ('1.0.1', ['1.0.0'], MINOR, 'make the next release 1.1.0 or 2.0.0'),
    ('1.2.0', ['1.0.0'], MINOR, 'make the next release 1.1.0 or 2.0.0'),
    ('1.0.2', ['1.0.0'], BUGFIX, 'make the next release 1.0.1 or 1.1.0 or 2.0.0'),
    ('1.1.0', ['1.0.0'], BREAKING, 'make the next release 2.0.0'),
    ('1.1.0', ['1.0.0'], dict(MINOR, **BREAKING), 'make the next release 2.0.0'),
    ('0.9.0', ['1.0.0'], {}, 'the last release in changelogs/changelog.yaml is 1.0.0'),
    ('1.1', ['1.0.0'], MINOR, 'is not X.Y.Z'),
    ('1.1.0-beta1', ['1.0.0'], MINOR, 'is not X.Y.Z'),
    ('0.1.0', [], MINOR, 'the first release must be 1.0.0 or later'),
])
def test_galaxy_against_changelog(galaxy, released, pending, error):
    errors = CR.galaxy_changelog_errors(galaxy, released, pending)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and error in errors[0], errors


@pytest.mark.parametrize('released, heads, bad', [
    (['1.0.0'], {'CHANGELOG.md': '1.0.0', 'CHANGELOG.rst': '1.0.0'}, []),
    ([], {'CHANGELOG.md': None, 'CHANGELOG.rst': None}, []),
    (['1.0.0', '1.1.0'], {'CHANGELOG.md': '1.1.0', 'CHANGELOG.rst': '1.0.0'}, ['CHANGELOG.rst']),
    (['1.0.0'], {'CHANGELOG.md': None, 'CHANGELOG.rst': '1.0.0'}, ['CHANGELOG.md']),
    ([], {'CHANGELOG.md': '1.0.0', 'CHANGELOG.rst': None}, ['CHANGELOG.md']),
])
def test_changelog_files_show_the_last_release(released, heads, bad):
    errors = CR.changelog_file_errors(released, heads)
    assert [e.split(':')[0] for e in errors] == bad


INSTALL = 'ansible-galaxy collection install ceph_rbd-backup-1.1.0.tar.gz\n'


# README.md's text, a role README's text -> pieces of the errors (empty: agrees)
@pytest.mark.parametrize('readme, role_readme, errors', [
    (INSTALL + 'podman build -t ceph-rbd-backup-ee:1.1.0 .\n', '', []),
    ('ansible-galaxy collection install ceph_rbd.backup:1.1.0\n', 'no version here\n', []),
    ('pip-like ceph_rbd.backup==1.1.0\n', '', []),
    (INSTALL + 'podman build -t ceph-rbd-backup-ee:1.0.0 .\n', '', ['README.md:2: EE image tag 1.0.0']),
    ('ansible-galaxy collection install ceph_rbd-backup-1.0.0.tar.gz\n', '', ['README.md:1: tarball 1.0.0']),
    ('ansible-galaxy collection install ceph_rbd.backup:1.0.0\n', '', ['collection requirement 1.0.0']),
    (INSTALL, 'install ceph_rbd-backup-1.0.0.tar.gz\n', ['roles/r/README.md:1: tarball 1.0.0']),
    ('podman build -t ceph-rbd-backup-ee:1.1.0 .\n', '', ['README.md gives no install line']),
    ('nothing\n', INSTALL, ['README.md gives no install line']),
])
def test_readme_versions(readme, role_readme, errors):
    found = CR.readme_versions('README.md', readme) + CR.readme_versions('roles/r/README.md', role_readme)
    got = CR.readme_errors('1.1.0', found)
    assert len(got) == len(errors), got
    for piece, error in zip(errors, got):
        assert piece in error


def ee(*collections):
    return {'version': 3, 'dependencies': {'galaxy': {'collections': list(collections)}}}


THIS_EE = os.path.join(REPO_ROOT, 'meta', 'execution-environment.yml')


@pytest.mark.parametrize('definition, error', [
    (yaml.safe_load(open(THIS_EE)), None),
    (ee({'name': '/build/collection/ceph_rbd-backup.tar.gz', 'type': 'file'}), None),
    (ee({'name': 'ceph_rbd.backup', 'version': '1.1.0'}), None),
    (ee({'name': 'ceph_rbd.backup', 'version': '==1.1.0'}), None),
    (ee('ceph_rbd.backup'), None),
    (ee({'name': 'collection/ceph_rbd-backup-1.1.0.tar.gz', 'type': 'file'}), None),
    (ee({'name': 'ceph_rbd.backup', 'version': '1.0.0'}), 'installs ceph_rbd.backup at 1.0.0'),
    (ee({'name': 'ceph_rbd.backup', 'version': '>=1.0.0'}), 'installs ceph_rbd.backup at >=1.0.0'),
    (ee({'name': 'collection/ceph_rbd-backup-1.0.0.tar.gz', 'type': 'file'}), 'at 1.0.0, but galaxy.yml says 1.1.0'),
    (ee({'name': 'community.general'}), 'does not install ceph_rbd.backup'),
    (ee(), 'does not install ceph_rbd.backup'),
    ({'version': 3, 'dependencies': {'galaxy': 'requirements.yml'}}, 'dependencies.galaxy is a file'),
    ({'version': 3}, 'does not install ceph_rbd.backup'),
])
def test_execution_environment(definition, error):
    errors = CR.ee_errors('1.1.0', definition)
    if error is None:
        assert errors == []
    else:
        assert len(errors) == 1 and error in errors[0], errors


@pytest.mark.parametrize('value, ok', [
    ('1.0.0', True), ('1.1.0', True), ('1.2.0', False), ('2.0.0', False), ('1.1', False), ('0.9.0', False),
])
def test_version_added(value, ok):
    errors = CR.version_added_errors('1.1.0', ['1.0.0'], [('plugins/modules/m.py:12', value)])
    if ok:
        assert errors == []
    else:
        assert len(errors) == 1 and 'plugins/modules/m.py:12' in errors[0], errors


# Every alternative of the regex the build gate had before (kept), then what it lacked, then what ships.
@pytest.mark.parametrize('name, ships', [
    ('.venv/bin/python', False), ('tests/.build/x', False), ('.git/HEAD', False), ('x/.pytest_cache/v', False),
    ('plugins/filter/__pycache__/', False), ('.ansible/tmp', False), ('.cache/pip', False),
    ('tests/output/junit.xml', False), ('bench/results/run.json', False), ('plugins/filter/x.pyc', False),
    ('ceph_rbd-backup-1.0.0.tar.gz', False), ('playbooks/replicate.retry', False),
    ('bench/', False), ('bench/bench.py', False), ('bench', False), ('scripts/', False),
    ('./scripts/lint.sh', False), ('scripts/check_release.py', False), ('Makefile', False), ('.ci/run', False),
    ('tests/unit/scripts/test_check_release.py', False), ('changelogs/.plugin-cache.yaml', False),
    ('.gitignore', False), ('tests/.mypy_cache/x', False), ('.hypothesis/examples/ab/cd', False), ('soak.log', False),
    ('x.pyo', False),
    ('MANIFEST.json', True), ('FILES.json', True), ('README.md', True), ('.ansible-lint', True),
    ('plugins/modules/rbd_snapshot.py', True), ('plugins/module_utils/', True),
    ('tests/unit/plugins/filter/test_replication_filter.py', True), ('tests/sanity/ignore-2.19.txt', True),
    ('docs/scripts.md', True), ('tests/unit/fixtures/ceph/reef/diff.json', True), ('benchmarks.md', True),
    ('changelogs/fragments/x.yml', True), ('bindep.txt', True),
])
def test_tarball_names(name, ships):
    errors = CR.tarball_errors([name])
    if ships:
        assert errors == []
    else:
        assert len(errors) == 1 and errors[0].startswith(name), errors


def test_tarball_cli(tmp_path, capsys):
    listing = tmp_path / 'listing'
    listing.write_text('MANIFEST.json\nplugins/\nplugins/modules/rbd_snapshot.py\n')
    assert CR.main(['tarball', str(listing)]) == 0
    listing.write_text('MANIFEST.json\nscripts/\nscripts/lint.sh\nplugins/a.pyc\n')
    assert CR.main(['tarball', str(listing)]) == 1
    assert capsys.readouterr().out.count('ERROR: ') == 3


def test_this_repository_agrees(capsys):
    rc = CR.main(['versions', REPO_ROOT])
    assert rc == 0, capsys.readouterr().out


@pytest.fixture
def copy(tmp_path):
    """The files the version check reads, copied from this repository."""
    root = tmp_path / 'collection'
    for d in ('changelogs', 'meta', 'plugins', 'roles'):
        shutil.copytree(os.path.join(REPO_ROOT, d), str(root / d), ignore=shutil.ignore_patterns('__pycache__'))
    for f in ('galaxy.yml', 'README.md', 'CHANGELOG.md', 'CHANGELOG.rst'):
        shutil.copy(os.path.join(REPO_ROOT, f), str(root / f))
    return root


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _galaxy_version():
    return str(yaml.safe_load(open(os.path.join(REPO_ROOT, 'galaxy.yml')))['version'])


# One drift per case, in a copy of this repository: the check must fail, naming it.
@pytest.mark.parametrize('drift, error', [
    ('ee_tag', 'EE image tag 1.0.0'),
    ('install_line', 'tarball 0.0.1'),
    ('no_install_line', 'README.md gives no install line'),
    ('galaxy_skips', 'make the next release'),
    ('ee_version', 'meta/execution-environment.yml installs ceph_rbd.backup at 0.0.1'),
    ('version_added', 'version_added 9.9.9'),
    ('changelog_md', 'CHANGELOG.md: newest version 0.0.1'),
])
def test_a_drift_fails(copy, capsys, drift, error):
    g = _galaxy_version()
    readme = copy / 'README.md'
    if drift == 'ee_tag':
        _edit(readme, 'ceph-rbd-backup-ee:%s' % g, 'ceph-rbd-backup-ee:1.0.0')
    elif drift == 'install_line':
        _edit(readme, 'install ceph_rbd-backup-%s.tar.gz' % g, 'install ceph_rbd-backup-0.0.1.tar.gz')
    elif drift == 'no_install_line':
        readme.write_text(readme.read_text().replace('ceph_rbd-backup-%s.tar.gz' % g, 'the tarball'))
    elif drift == 'galaxy_skips':
        major, minor = CR.parse_version(g)[:2]
        _edit(copy / 'galaxy.yml', 'version: %s' % g, 'version: %d.%d.0' % (major, minor + 5))
    elif drift == 'ee_version':
        definition = yaml.safe_load((copy / 'meta' / 'execution-environment.yml').read_text())
        definition['dependencies']['galaxy']['collections'] = [{'name': 'ceph_rbd.backup', 'version': '0.0.1'}]
        (copy / 'meta' / 'execution-environment.yml').write_text(yaml.safe_dump(definition))
    elif drift == 'version_added':
        _edit(copy / 'plugins' / 'modules' / 'rbd_snapshot.py', 'version_added: 1.0.0', 'version_added: 9.9.9')
    elif drift == 'changelog_md':
        text = (copy / 'CHANGELOG.md').read_text()
        (copy / 'CHANGELOG.md').write_text(text.replace('\n## v', '\n## v0\\.0\\.1\n\n## v', 1))
    assert CR.main(['versions', str(copy)]) == 1
    out = capsys.readouterr().out
    assert error in out, out


def test_the_copy_agrees_before_any_drift(copy, capsys):
    assert CR.main(['versions', str(copy)]) == 0, capsys.readouterr().out
