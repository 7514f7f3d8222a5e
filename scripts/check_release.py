"""What a release of the collection must agree on, checked from the files (scripts/lint.sh, gates version and build).

  python scripts/check_release.py versions [ROOT]   one version: galaxy.yml, changelog, README, EE, version_added
  python scripts/check_release.py tarball [LISTING] names in a `tar -tzf` listing (file or stdin) that must not ship

Each prints what it checked, one ERROR line per finding, and exits 1 on any. The functions below take the
facts (versions, names, sections) and return the errors, without reading files; tests/unit/scripts/ tests them.

One version - G is galaxy.yml's version, L the newest release in changelogs/changelog.yaml:

  * G is X.Y.Z (digits; a pre-release would need these rules extended).
  * No fragment pending (no fragment with a section other than trivial): G == L, the tree is that release.
  * Fragments pending: G is not released yet, and it is the release right after L that their sections call for
    (the semantic versioning of Ansible collections): L's next major if any fragment has breaking_changes or
    removed_features; L's next minor or next major if any has major_changes, minor_changes or
    deprecated_features; otherwise L's next patch, minor or major. So 1.0.0 with pending minor_changes
    allows 1.1.0 or 2.0.0, not 1.0.1 (too small) nor 1.2.0 (skips one).
  * Before the first release (no release yet) G is what the first release will be: the gate changelog checks
    its fragments; here only G >= 1.0.0 (Galaxy's importer refuses less).
  * CHANGELOG.md and CHANGELOG.rst: their newest version section is L (none before the first release).
  * README.md and the roles' README.md: every version they give the collection - a tarball
    ceph_rbd-backup-V.tar.gz, ceph_rbd.backup:V or ==V, the EE image tag ceph-rbd-backup-ee:V - is G, and
    README.md has at least one install line (the tarball or ceph_rbd.backup:V), so this check cannot pass on
    nothing. They say G, not L: `ansible-galaxy collection build` names the tarball after galaxy.yml.
  * meta/execution-environment.yml installs this collection (an entry of dependencies.galaxy.collections
    named ceph_rbd.backup or a ceph_rbd-backup*.tar.gz), and a version that entry names (its version key or
    its file name) is G. An unversioned tarball name is fine: scripts/ee.sh stages the one just built.
  * Every version_added under plugins/ and roles/ is a released version or G (never a version after G).

The tarball holds the collection, not the repository's tools: see TARBALL_FORBIDDEN.
"""

import glob
import os
import re
import sys

import yaml

TRIVIAL = 'trivial'
MAJOR_SECTIONS = ('breaking_changes', 'removed_features')
MINOR_SECTIONS = ('major_changes', 'minor_changes', 'deprecated_features')

# (regular expression on a tarball member name without a leading ./ or trailing /, why it must not ship)
TARBALL_FORBIDDEN = [
    (r'^bench(/|$)', "the benchmark (bench/) needs the repository's test bed, not a collection"),
    (r'^scripts(/|$)', 'the maintenance scripts (scripts/) work on the repository'),
    (r'^tests/unit/scripts(/|$)', 'the tests of scripts/, which does not ship'),
    (r'^(Makefile|\.ci)(/|$)', "the repository's make targets and CI (they call scripts/ and bench/)"),
    (r'^tests/output(/|$)', "ansible-test's output"),
    (r'^changelogs/\.plugin-cache\.yaml$', "antsibull-changelog's cache"),
    (r'(^|/)(\.venv|\.build|\.git|\.gitignore|\.gitattributes|\.ansible|\.cache|\.tox|\.nox|\.idea|\.vscode)(/|$)',
     'a virtualenv, build output, tool state or VCS file'),
    (r'(^|/)(__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|\.hypothesis|\.coverage)(/|$)', 'a cache'),
    (r'\.(pyc|pyo|tar\.gz|retry|log|orig|rej|swp)$|~$', 'a compiled, archived, log or editor file'),
]

# How README files give the collection a version.
README_VERSIONS = [
    (re.compile(r'ceph_rbd-backup-([0-9][0-9A-Za-z.+-]*?)\.tar\.gz'), 'tarball', True),
    (re.compile(r'\bceph_rbd\.backup(?::|==)([0-9][0-9A-Za-z.+-]*)'), 'collection requirement', True),
    (re.compile(r'ceph-rbd-backup-ee:([0-9][0-9A-Za-z.+-]*)'), 'EE image tag', False),
]
VERSION_ADDED = re.compile(r'''^\s*version_added:\s*['"]?([^'"\s#]+)''', re.M)
CHANGELOG_HEADINGS = {'CHANGELOG.md': re.compile(r'^## v(\S+)', re.M),
                      'CHANGELOG.rst': re.compile(r'^v(\d\S*)\n=+$', re.M)}


def parse_version(text):
    """'1.2.3' -> (1, 2, 3); anything else -> None."""
    m = re.match(r'^(\d+)\.(\d+)\.(\d+)$', str(text))
    return tuple(int(x) for x in m.groups()) if m else None


def show(version):
    return '.'.join(map(str, version))


def next_versions(last, sections):
    """The versions that may follow release `last` when fragments with `sections` are pending."""
    major, minor, patch = last
    allowed = [(major + 1, 0, 0)]
    if not set(sections) & set(MAJOR_SECTIONS):
        allowed.append((major, minor + 1, 0))
        if not set(sections) & set(MINOR_SECTIONS):
            allowed.append((major, minor, patch + 1))
    return sorted(allowed)


def galaxy_changelog_errors(galaxy, released, pending):
    """galaxy: galaxy.yml's version (str); released: the versions in changelog.yaml; pending: {fragment: [sections]}."""
    g = parse_version(galaxy)
    if g is None:
        return ['galaxy.yml version %r is not X.Y.Z' % (galaxy,)]
    rels = []
    for v in released:
        p = parse_version(v)
        if p is None:
            return ['changelogs/changelog.yaml has a release %r that is not X.Y.Z' % (v,)]
        rels.append(p)
    pending = {f: [s for s in secs if s != TRIVIAL] for f, secs in pending.items()}
    pending = {f: secs for f, secs in pending.items() if secs}
    if not rels:
        return [] if g >= (1, 0, 0) else ['galaxy.yml version %s: the first release must be 1.0.0 or later' % galaxy]
    last = max(rels)
    if not pending:
        if g != last:
            last_text = show(last)
            return ['galaxy.yml says %s, but the last release in changelogs/changelog.yaml is %s and no fragment is '
                    'pending for %s: set version %s, or add the fragments of %s'
                    % (galaxy, last_text, galaxy, last_text, galaxy)]
        return []
    sections = sorted({s for secs in pending.values() for s in secs})
    if g in rels:
        return ['galaxy.yml says %s, which is released, but fragments are pending (%s): bump the version'
                % (galaxy, ', '.join(sorted(pending)))]
    allowed = next_versions(last, sections)
    if g not in allowed:
        return ['galaxy.yml says %s, but after release %s the pending fragments (sections %s) make the next release '
                '%s' % (galaxy, show(last), ', '.join(sections), ' or '.join(show(v) for v in allowed))]
    return []


def changelog_file_errors(released, heads):
    """heads: {file name: its newest version heading, or None when it has none / does not exist}."""
    rels = [parse_version(v) for v in released]
    last = show(max(rels)) if rels and None not in rels else None
    errors = []
    for name, head in sorted(heads.items()):
        if head != last:
            errors.append('%s: newest version %s, but the last release in changelogs/changelog.yaml is %s (run '
                          'antsibull-changelog generate)' % (name, head or 'none', last or 'none'))
    return errors


def readme_versions(name, text):
    """[(where, kind, version, is an install line)] for every version a README gives the collection."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for pattern, kind, install in README_VERSIONS:
            for m in pattern.finditer(line):
                found.append(('%s:%d' % (name, lineno), kind, m.group(1), install))
    return found


def readme_errors(galaxy, found):
    """found: readme_versions() of every README; README.md must have an install line."""
    errors = ['%s: %s %s, but galaxy.yml says %s' % (where, kind, v, galaxy)
              for where, kind, v, _install in found if v != galaxy]
    if not any(install and where.startswith('README.md:') for where, _kind, _v, install in found):
        errors.append('README.md gives no install line with the version (ceph_rbd-backup-%s.tar.gz or '
                      'ceph_rbd.backup:%s)' % (galaxy, galaxy))
    return errors


def ee_errors(galaxy, definition, namespace='ceph_rbd', name='backup'):
    """definition: meta/execution-environment.yml as loaded. Its galaxy collections must install this one."""
    fqcn, tarball = '%s.%s' % (namespace, name), '%s-%s' % (namespace, name)
    galaxy_deps = ((definition or {}).get('dependencies') or {}).get('galaxy')
    if isinstance(galaxy_deps, str):
        return ['meta/execution-environment.yml: dependencies.galaxy is a file (%s); name the collection inline so '
                'that its version can be checked' % galaxy_deps]
    entries = (galaxy_deps or {}).get('collections') or []
    errors, ours = [], 0
    for entry in entries:
        entry = entry if isinstance(entry, dict) else {'name': entry}
        ref = str(entry.get('name', ''))
        base = os.path.basename(ref)
        if ref == fqcn:
            version = entry.get('version')
        elif base.startswith(tarball) and base.endswith('.tar.gz'):
            m = re.match(r'^%s-(.+)\.tar\.gz$' % re.escape(tarball), base)
            version = m.group(1) if m else entry.get('version')
        else:
            continue
        ours += 1
        if version is not None and str(version).lstrip('=') != galaxy:
            errors.append('meta/execution-environment.yml installs %s at %s, but galaxy.yml says %s'
                          % (ref, version, galaxy))
    if not ours:
        errors.append('meta/execution-environment.yml does not install %s (no %s or %s*.tar.gz in '
                      'dependencies.galaxy.collections)' % (fqcn, fqcn, tarball))
    return errors


def version_added_errors(galaxy, released, found):
    """found: [(where, version_added value)]; each is a released version or galaxy.yml's."""
    known = set(released) | {galaxy}
    return ['%s: version_added %s is neither released (%s) nor galaxy.yml\'s %s'
            % (where, v, ', '.join(sorted(released)) or 'none', galaxy) for where, v in found if v not in known]


def tarball_errors(names):
    """names: a tarball's members. Returns one error per member that must not ship."""
    errors = []
    for raw in names:
        name = raw.strip()
        while name.startswith('./'):
            name = name[2:]
        name = name.rstrip('/')
        if not name:
            continue
        for pattern, why in TARBALL_FORBIDDEN:
            if re.search(pattern, name):
                errors.append('%s: %s (build_ignore in galaxy.yml should keep it out)' % (raw.strip(), why))
                break
    return errors


# --------------------------------------------------------------------------------------- reading the files
def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _read(path):
    with open(path) as f:
        return f.read()


def collect(root):
    """The facts the checks take, read from the collection at root."""
    galaxy = _load(os.path.join(root, 'galaxy.yml'))
    changes = _load(os.path.join(root, 'changelogs', 'changelog.yaml')) or {}
    facts = {
        'galaxy': str(galaxy['version']),
        'namespace': galaxy['namespace'],
        'name': galaxy['name'],
        'released': sorted(str(v) for v in (changes.get('releases') or {})),
        'pending': {},
        'heads': {},
        'readme': [],
        'ee': _load(os.path.join(root, 'meta', 'execution-environment.yml')),
        'version_added': [],
    }
    for path in sorted(glob.glob(os.path.join(root, 'changelogs', 'fragments', '*.y*ml'))):
        facts['pending'][os.path.relpath(path, root)] = sorted(_load(path) or {})
    for name, heading in CHANGELOG_HEADINGS.items():
        path = os.path.join(root, name)
        m = heading.search(_read(path)) if os.path.exists(path) else None
        facts['heads'][name] = m.group(1).replace('\\', '') if m else None
    for path in ['README.md'] + sorted(glob.glob(os.path.join(root, 'roles', '*', 'README.md'))):
        rel = os.path.relpath(os.path.join(root, path), root)
        facts['readme'] += readme_versions(rel, _read(os.path.join(root, rel)))
    for pattern in ('plugins/**/*.py', 'plugins/**/*.yml', 'plugins/**/*.yaml', 'roles/*/meta/argument_specs.yml'):
        for path in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
            text = _read(path)
            for m in VERSION_ADDED.finditer(text):
                where = '%s:%d' % (os.path.relpath(path, root), text.count('\n', 0, m.start()) + 1)
                facts['version_added'].append((where, m.group(1)))
    return facts


def version_report(facts):
    errors = galaxy_changelog_errors(facts['galaxy'], facts['released'], facts['pending'])
    errors += changelog_file_errors(facts['released'], facts['heads'])
    errors += readme_errors(facts['galaxy'], facts['readme'])
    errors += ee_errors(facts['galaxy'], facts['ee'], facts['namespace'], facts['name'])
    errors += version_added_errors(facts['galaxy'], facts['released'], facts['version_added'])
    pending = sum(1 for secs in facts['pending'].values() if set(secs) - {TRIVIAL})
    lines = ['galaxy.yml %s; released: %s; fragments pending: %d' % (facts['galaxy'], ', '.join(facts['released'])
                                                                     or 'none', pending),
             'newest in ' + ', '.join('%s: %s' % (k, v or 'none') for k, v in sorted(facts['heads'].items())),
             'README versions: ' + (', '.join('%s %s (%s)' % (kind, v, where)
                                              for where, kind, v, _install in facts['readme']) or 'none'),
             'version_added values: %s (%d)' % (', '.join(sorted({v for _where, v in facts['version_added']}))
                                                or 'none', len(facts['version_added']))]
    return lines, errors


def main(argv):
    if len(argv) < 1 or argv[0] not in ('versions', 'tarball'):
        sys.stderr.write(__doc__)
        return 2
    if argv[0] == 'versions':
        lines, errors = version_report(collect(argv[1] if len(argv) > 1 else '.'))
    else:
        listing = _read(argv[1]) if len(argv) > 1 else sys.stdin.read()
        names = [n for n in listing.splitlines() if n.strip()]
        lines, errors = ['%d tarball entries checked' % len(names)], tarball_errors(names)
    for line in lines:
        print(line)
    for e in errors:
        print('ERROR: ' + e)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
