# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import random
import shlex
import struct
import subprocess
import time

import pytest

from ansible_collections.ceph_rbd.backup.plugins.module_utils import _stream as ST
from ansible_collections.ceph_rbd.backup.plugins.module_utils._stream import DiffStreamStats, StreamError

BANNER = b'rbd diff v1\n'


# -- hand-built rbd diff v1 records --------------------------------------------------------

def rec_name(tag, name):
    raw = name.encode('utf-8')
    return tag + struct.pack('<I', len(raw)) + raw


def rec_from(name):
    return rec_name(b'f', name)


def rec_to(name):
    return rec_name(b't', name)


def rec_size(size):
    return b's' + struct.pack('<Q', size)


def rec_write(offset, data):
    return b'w' + struct.pack('<QQ', offset, len(data)) + data


def rec_zero(offset, length):
    return b'z' + struct.pack('<QQ', offset, length)


END = b'e'


def sample_stream():
    """A stream touching [0,4) w, [4,10) z (merges with it), [100,103) w, [200,205) z, [205,207) w."""
    return b''.join([
        BANNER,
        rec_from('backup-20260101T000000Z'),
        rec_to('backup-20260102T000000Z'),
        rec_size(1 << 30),
        rec_write(0, b'abcd'),
        rec_zero(4, 6),
        rec_write(100, b'e\x00z'),          # data containing tag-like bytes
        rec_zero(200, 5),
        rec_write(205, b'wz'),
        END,
    ])


SAMPLE_EXPECTED = dict(
    data_bytes=4 + 3 + 2, zero_bytes=6 + 5, write_records=3, zero_records=2, size=1 << 30,
    from_snap='backup-20260101T000000Z', to_snap='backup-20260102T000000Z', complete=True,
)
SAMPLE_EXTENTS = [[0, 10], [100, 3], [200, 7]]


def feed_chunks(data, sizes):
    st = DiffStreamStats()
    pos = 0
    for n in sizes:
        st.feed(data[pos:pos + n])
        pos += n
    st.feed(data[pos:])
    return st


def check_sample(st, data):
    d = st.as_dict()
    assert st.error is None
    assert d['stream_bytes'] == len(data)
    for k, v in SAMPLE_EXPECTED.items():
        assert d[k] == v, k
    assert st.extents == SAMPLE_EXTENTS


def test_stats_whole_stream():
    data = sample_stream()
    st = DiffStreamStats()
    st.feed(data)
    check_sample(st, data)


def test_stats_split_at_every_byte_boundary():
    data = sample_stream()
    for cut in range(len(data) + 1):
        st = DiffStreamStats()
        st.feed(data[:cut])
        st.feed(data[cut:])
        check_sample(st, data)


def test_stats_split_at_every_pair_of_boundaries():
    data = sample_stream()
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1, 3):
            st = DiffStreamStats()
            st.feed(data[:a])
            st.feed(data[a:b])
            st.feed(data[b:])
            check_sample(st, data)


def test_stats_one_byte_chunks():
    data = sample_stream()
    st = DiffStreamStats()
    for i in range(len(data)):
        st.feed(data[i:i + 1])
    check_sample(st, data)


def test_stats_random_chunk_sizes():
    data = sample_stream()
    rng = random.Random(1234)
    for _i in range(300):
        sizes = []
        total = 0
        while total < len(data):
            n = rng.randint(0, 9)
            sizes.append(n)
            total += n
        check_sample(feed_chunks(data, sizes), data)


def test_stats_memoryview_and_bytearray_chunks():
    data = sample_stream()
    st = DiffStreamStats()
    st.feed(bytearray(data[:20]))
    st.feed(memoryview(data)[20:])
    check_sample(st, data)


def test_stats_large_write_record_random_chunks():
    rng = random.Random(7)
    payload = bytes(rng.getrandbits(8) for _i in range(100000))
    data = BANNER + rec_size(1 << 20) + rec_write(4096, payload) + rec_zero(4096 + len(payload), 10) + END
    pos = 0
    st = DiffStreamStats()
    while pos < len(data):
        n = rng.randint(1, 5000)
        st.feed(data[pos:pos + n])
        pos += n
    assert st.error is None and st.complete
    assert st.data_bytes == 100000 and st.zero_bytes == 10
    assert st.extents == [[4096, 100010]]
    assert st.from_snap is None and st.to_snap is None
    assert st.size == 1 << 20


def test_stats_empty_names_and_utf8_names():
    data = BANNER + rec_from('') + rec_to('snäp') + rec_size(0) + END
    st = DiffStreamStats()
    for i in range(len(data)):
        st.feed(data[i:i + 1])
    assert st.complete and st.error is None
    assert st.from_snap == '' and st.to_snap == 'snäp' and st.size == 0
    assert st.extents == [] and st.data_bytes == 0


def test_stats_truncated_is_incomplete_at_every_cut():
    data = sample_stream()
    for cut in range(len(data)):
        st = DiffStreamStats()
        st.feed(data[:cut])
        assert st.complete is False, cut
        assert st.error is None, cut


def test_stats_bad_banner():
    st = DiffStreamStats()
    st.feed(b'rbd diff v2\n' + END)
    assert st.error and 'not an rbd diff v1 stream' in st.error
    assert not st.complete


def test_stats_bad_banner_split():
    data = b'RBD DIFF V1\n' + END
    st = DiffStreamStats()
    for i in range(len(data)):
        st.feed(data[i:i + 1])
    assert st.error and 'banner' in st.error


def test_stats_unknown_tag_followed_by_more_data():
    data = BANNER + rec_size(10) + b'Xjunk' + END
    st = DiffStreamStats()
    st.feed(data)
    assert st.error and 'unknown record tag' in st.error and "b'X'" in st.error
    assert not st.complete
    # once in error, further data changes nothing but the byte count
    st.feed(END)
    assert not st.complete and st.stream_bytes == len(data) + 1


def test_stats_unknown_tag_split_every_byte():
    data = BANNER + rec_size(10) + b'Xjunk' + END
    for cut in range(len(data) + 1):
        st = DiffStreamStats()
        st.feed(data[:cut])
        st.feed(data[cut:])
        assert st.error and 'unknown record tag' in st.error, cut


def test_stats_unknown_tag_as_last_byte_is_an_error():
    st = DiffStreamStats()
    st.feed(BANNER + b'X')
    assert st.error is not None


def test_stats_unknown_tag_reports_its_own_offset():
    st = DiffStreamStats()
    st.feed(BANNER + b'Xy')
    assert st.error.endswith('at stream byte %d' % len(BANNER))


def test_stats_data_after_end():
    st = DiffStreamStats()
    st.feed(BANNER + END + b'w')
    assert st.error == 'data after the end record'
    data = BANNER + END + rec_size(1)
    for cut in range(len(data) + 1):
        st = DiffStreamStats()
        st.feed(data[:cut])
        st.feed(data[cut:])
        assert st.error == 'data after the end record', cut


def test_stats_write_payload_may_contain_end_tag():
    # the skipped data of a write record is never parsed as records
    data = BANNER + rec_write(0, b'eeee') + END
    st = DiffStreamStats()
    st.feed(data)
    assert st.error is None and st.complete and st.data_bytes == 4


def test_stats_non_adjacent_extents_not_merged():
    data = BANNER + rec_write(0, b'a') + rec_write(2, b'b') + rec_zero(3, 1) + rec_write(10, b'') + END
    st = DiffStreamStats()
    st.feed(data)
    assert st.extents == [[0, 1], [2, 2], [10, 0]]
    assert st.write_records == 3 and st.zero_records == 1


# -- StreamError / remote_pipeline -------------------------------------------------------------

def test_stream_error_str():
    e = StreamError('import failed', stage='import', rc=3, stderr='  boom\n', cmd=['rbd', 'import-diff', 'a b'])
    assert str(e) == "import failed (command: rbd import-diff 'a b', rc=3): boom"
    assert str(StreamError('x')) == 'x'
    assert e.stage == 'import' and e.rc == 3 and e.stderr == 'boom'


HOSTILE = ['rbd', 'export-diff', '--image', "vm 1's disk", '$(touch /tmp/pwned)', 'a;b', '`id`', '"dq"',
           '--snap', 'x|y && z', '', "'", '\\', '*', '\n']


def test_remote_pipeline_single_stage_round_trips():
    cmd = ST.remote_pipeline([HOSTILE])
    assert shlex.split(cmd) == HOSTILE
    assert 'pipefail' not in cmd


def test_remote_pipeline_two_stages_wrapped_in_pipefail():
    cmd = ST.remote_pipeline([HOSTILE, ['zstd', '-c', '-T0']])
    outer = shlex.split(cmd)
    assert outer[:4] == ['bash', '-o', 'pipefail', '-c']
    assert len(outer) == 5
    left, right = outer[4].split(' | ')
    assert shlex.split(left) == HOSTILE
    assert shlex.split(right) == ['zstd', '-c', '-T0']


def test_remote_pipeline_hostile_words_not_executed(tmp_path):
    marker = tmp_path / 'pwned'
    argv = ['printf', '%s\\n', 'a b', '$(touch %s)' % marker, '; touch %s' % marker, '`touch %s`' % marker]
    cmd = ST.remote_pipeline([argv, ['cat']])
    out = subprocess.run(['sh', '-c', cmd], capture_output=True, check=True).stdout.decode()
    assert out.splitlines() == argv[2:]
    assert not marker.exists()


def test_remote_pipeline_pipefail_propagates_first_stage_failure():
    cmd = ST.remote_pipeline([['sh', '-c', 'exit 7'], ['cat']])
    assert subprocess.run(['sh', '-c', cmd], check=False).returncode == 7


# -- relay with real local processes ---------------------------------------------------------------

def big_stream(n_mib=6, seed=99):
    rng = random.Random(seed)
    parts = [BANNER, rec_from('a'), rec_to('b'), rec_size(64 << 20)]
    off = 0
    for i in range(n_mib):
        payload = rng.randbytes(1 << 20) if hasattr(rng, 'randbytes') else os.urandom(1 << 20)
        parts.append(rec_write(off, payload))
        off += 1 << 20
        parts.append(rec_zero(off, 4096))
        off += 8192
    parts.append(END)
    return b''.join(parts)


@pytest.fixture
def stream_file(tmp_path):
    data = big_stream()
    p = tmp_path / 'in.diff'
    p.write_bytes(data)
    return p, data


def test_relay_copies_exactly_and_counts(stream_file, tmp_path):
    src, data = stream_file
    out = tmp_path / 'out.diff'
    progress = []
    stats = ST.relay([('export', ['cat', str(src)])],
                     [('import', ['sh', '-c', 'cat > "$1"', 'sh', str(out)])],
                     idle_timeout=10, progress=lambda b, s: progress.append(b), progress_every=0)
    assert out.read_bytes() == data
    assert stats.complete and stats.error is None
    assert stats.stream_bytes == len(data)
    assert stats.data_bytes == 6 << 20
    assert stats.zero_bytes == 6 * 4096
    assert stats.from_snap == 'a' and stats.to_snap == 'b'
    assert isinstance(stats.seconds, float)
    assert progress and progress[-1] <= len(data)


def test_relay_multi_stage_chains(stream_file, tmp_path):
    src, data = stream_file
    out = tmp_path / 'out.diff'
    stats = ST.relay([('export', ['cat', str(src)]), ('compress', ['cat'])],
                     [('decompress', ['cat']), ('import', ['sh', '-c', 'cat > "$1"', 'sh', str(out)])],
                     idle_timeout=10)
    assert out.read_bytes() == data and stats.complete


def test_relay_upstream_nonzero_names_stage(stream_file, tmp_path):
    src, data = stream_file
    out = tmp_path / 'out.diff'
    with pytest.raises(StreamError) as ei:
        ST.relay([('export-diff', ['sh', '-c', 'cat "$1"; echo oops >&2; exit 3', 'sh', str(src)])],
                 [('import-diff', ['sh', '-c', 'cat > "$1"', 'sh', str(out)])], idle_timeout=10)
    e = ei.value
    assert e.stage == 'export-diff' and e.rc == 3
    assert 'export-diff failed' in str(e) and 'rc=3' in str(e) and 'oops' in str(e)


def test_relay_downstream_nonzero_names_stage(stream_file):
    src, _data = stream_file
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['cat', str(src)])],
                 [('import', ['sh', '-c', 'cat >/dev/null; exit 5'])], idle_timeout=10)
    assert ei.value.stage == 'import' and ei.value.rc == 5


def gone(pid):
    """True if pid no longer runs (absent or a zombie)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except (IOError, OSError):
        return True


def gone_soon(pid, deadline=5.0):
    """True once pid is gone; a SIGKILLed process on a loaded machine can take a moment to be scheduled
    and die (seen once in make test). Still fails for a process left running (the test's sleep is 30 s)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def read_pid(path, deadline=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError('no pid file %s' % path)


def test_relay_idle_timeout(tmp_path, stream_file):
    src, _data = stream_file
    pidfile = tmp_path / 'sleep.pid'
    t0 = time.monotonic()
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['sh', '-c', 'head -c 20 "$1"; sleep 30 & echo $! > "$2"; wait',
                              'sh', str(src), str(pidfile)])],
                 [('import', ['sh', '-c', 'cat >/dev/null'])], idle_timeout=2)
    elapsed = time.monotonic() - t0
    assert 'timeout' in str(ei.value)
    assert ei.value.stage == 'relay'
    assert elapsed < 15, elapsed   # killed, not the 30 s sleep (margin for a loaded machine)
    # the whole process group of the stalled stage was killed, grandchildren included
    assert gone_soon(read_pid(pidfile))


def test_relay_stage_hanging_after_its_output_ended(stream_file):
    src, _data = stream_file
    t0 = time.monotonic()
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['sh', '-c', 'cat "$1"; exec >&-; sleep 30', 'sh', str(src)])],
                 [('import', ['sh', '-c', 'cat >/dev/null'])], idle_timeout=2)
    assert 'export did not finish within 2 s' in str(ei.value)
    assert time.monotonic() - t0 < 15


def test_relay_truncated_stream(tmp_path, stream_file):
    src, data = stream_file
    short = tmp_path / 'short.diff'
    short.write_bytes(data[:-1])          # everything but the end record
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['cat', str(short)])], [('import', ['sh', '-c', 'cat >/dev/null'])], idle_timeout=10)
    assert 'truncated' in str(ei.value)


def test_relay_malformed_stream(tmp_path):
    bad = tmp_path / 'bad.diff'
    bad.write_bytes(b'not a diff at all\n')
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['cat', str(bad)])], [('import', ['sh', '-c', 'cat >/dev/null'])], idle_timeout=10)
    assert 'malformed' in str(ei.value) and 'banner' in str(ei.value)


def test_relay_downstream_exits_early(stream_file):
    src, _data = stream_file
    t0 = time.monotonic()
    with pytest.raises(StreamError) as ei:
        ST.relay([('export', ['cat', str(src)])], [('import', ['true'])], idle_timeout=10)
    assert 'closed its input early' in str(ei.value)
    assert time.monotonic() - t0 < 20


def test_relay_missing_downstream_binary_kills_upstream(monkeypatch):
    started = []
    real_popen = subprocess.Popen

    def recording_popen(*a, **kw):
        p = real_popen(*a, **kw)
        started.append(p)
        return p

    monkeypatch.setattr(subprocess, 'Popen', recording_popen)      # _proc starts every stage
    with pytest.raises(OSError):
        ST.relay([('export', ['sleep', '30'])],
                 [('import', ['/nonexistent/definitely-not-here'])], idle_timeout=10)
    assert len(started) == 1
    assert started[0].wait(timeout=3) == -9


def test_relay_bwlimit_slows_down(tmp_path):
    data = BANNER + rec_write(0, b'x' * 300000) + END
    p = tmp_path / 's.diff'
    p.write_bytes(data)
    t0 = time.monotonic()
    stats = ST.relay([('export', ['cat', str(p)])], [('import', ['sh', '-c', 'cat >/dev/null'])],
                     idle_timeout=10, bwlimit=200000)
    assert stats.complete
    assert time.monotonic() - t0 >= 1.0


# -- the data digest of what the stream carries ----------------------------------------------------

def sample_digest_by_extents():
    """The same bytes digested the way rbd_extent_verify does, from the stream's merged extents."""
    from ansible_collections.ceph_rbd.backup.plugins.module_utils._verify import DataHasher
    image = bytearray(1024)
    image[0:4] = b'abcd'
    image[100:103] = b'e\x00z'
    image[205:207] = b'wz'
    h = DataHasher(1 << 30)
    for off, length in SAMPLE_EXTENTS:
        h.begin(off, length)
        h.update(bytes(image[off:off + length]))
    return h.hexdigest()


def test_stream_digest_equals_the_digest_of_the_extents_read_back():
    data = sample_stream()
    want = sample_digest_by_extents()
    rng = random.Random(4)
    for _i in range(50):
        st = DiffStreamStats(digest='data')
        pos = 0
        while pos < len(data):
            n = rng.randint(1, 9)
            st.feed(memoryview(data)[pos:pos + n])
            pos += n
        assert st.error is None and st.stream_digest() == want


def test_stream_digest_sees_a_flipped_byte_and_is_off_by_default():
    data = bytearray(sample_stream())
    data[data.index(b'abcd')] ^= 1
    st = DiffStreamStats(digest='data')
    st.feed(bytes(data))
    assert st.stream_digest() != sample_digest_by_extents()
    plain = DiffStreamStats()
    plain.feed(sample_stream())
    assert plain.stream_digest() is None


def test_stream_digest_of_an_incomplete_stream_is_none():
    st = DiffStreamStats(digest='data')
    st.feed(sample_stream()[:-1])
    assert not st.complete and st.stream_digest() is None


def test_stream_digest_needs_the_size_record_first():
    st = DiffStreamStats(digest='data')
    st.feed(BANNER + rec_write(0, b'ab') + rec_size(10) + END)
    assert 'before the size record' in st.error


def test_stream_extents_digest_is_the_extents_digest_of_the_records():
    from ansible_collections.ceph_rbd.backup.plugins.module_utils._verify import extents_digest
    records = [(0, 4, True), (4, 6, False), (100, 3, True), (200, 5, False), (205, 2, True)]
    st = DiffStreamStats(digest='extents')
    data = sample_stream()
    for i in range(0, len(data), 7):
        st.feed(data[i:i + 7])
    assert st.stream_digest() == extents_digest(records)
    assert st.hasher is None          # no data hashing for this method
    plain = DiffStreamStats(digest='none')
    plain.feed(data)
    assert plain.stream_digest() is None


def test_grow_pipe_grows_a_pipe_and_leaves_other_files_alone(tmp_path):
    import fcntl
    from ansible_collections.ceph_rbd.backup.plugins.module_utils._proc import grow_pipe
    r, w = os.pipe()
    try:
        grow_pipe(w, 1 << 20)
        assert fcntl.fcntl(r, 1032) == 1 << 20          # F_GETPIPE_SZ
    finally:
        os.close(r)
        os.close(w)
    with open(tmp_path / 'f', 'wb') as f:
        grow_pipe(f.fileno())                            # not a pipe: refused, nothing raised
