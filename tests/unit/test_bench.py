"""The pure parts of `kvctl bench`: key generators, redis-benchmark parsing, targets and the JSON report."""

import collections
import io
import json
import random
import shlex
import zlib
from pathlib import Path

import pytest

from kvmeta.bench import report
from kvmeta.bench.client import key_name, value_for
from kvmeta.bench.loads import Load, parse_output
from kvmeta.bench.resources import per_thousand, resident_split
from kvmeta.bench.ycsb import (
    DEFAULT_SCAN_COMMAND,
    SCRAMBLED_ZETAN,
    WORKLOADS,
    ScrambledZipfianGenerator,
    ZipfianGenerator,
    fnvhash64,
    scan_args,
    zeta,
)

CSV_OUTPUT = (
    '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
    '"max_latency_ms"\n'
    '"GET","73800.74","0.352","0.096","0.343","0.431","0.583","1.287"\n'
)


# -- YCSB key choice


def _java_fnvhash64(value: int) -> int:
    """YCSB's Utils.fnvhash64 with Java's wrapping signed longs spelled out."""
    def wrap(x):
        x &= (1 << 64) - 1
        return x - (1 << 64) if x >> 63 else x

    hashed = wrap(0xCBF29CE484222325)
    for _ in range(8):
        hashed = wrap((hashed ^ (value & 0xFF)) * 1099511628211)
        value >>= 8
    return abs(hashed)


def test_fnvhash64_matches_ycsb():
    for value in (0, 1, 255, 256, 12345, 2**40 + 7, 10_000_000_000 - 1):
        assert fnvhash64(value) == _java_fnvhash64(value)
    assert all(0 <= fnvhash64(v) <= 1 << 63 for v in range(1000))
    assert len({fnvhash64(v) for v in range(10_000)}) == 10_000


def test_zipfian_most_popular_item_has_its_share():
    items, draws = 1000, 100_000
    generator = ZipfianGenerator(items, rng=random.Random(7))
    counts = collections.Counter(generator.next() for _ in range(draws))
    assert set(counts) <= set(range(items))
    expected = 1 / zeta(items, 0.99)  # weight of item 0
    assert counts[0] / draws == pytest.approx(expected, rel=0.05)
    # Popularity falls with rank: item i has weight 1 / (i + 1) ** 0.99.
    assert counts[0] > counts[1] > counts[2] > counts[10] > counts[100]
    assert counts[1] / counts[0] == pytest.approx(0.5**0.99, rel=0.1)


def test_scrambled_zipfian_is_skewed_but_spread_over_the_keyspace():
    items, draws = 10_000, 100_000
    generator = ScrambledZipfianGenerator(items, rng=random.Random(3))
    counts = collections.Counter(generator.next() for _ in range(draws))
    assert all(0 <= key < items for key in counts)
    hottest, hottest_count = counts.most_common(1)[0]
    # The hottest key gets the zipfian share of the most popular item; it is not key 0.
    assert hottest_count / draws == pytest.approx(1 / SCRAMBLED_ZETAN, rel=0.1)
    assert hottest != 0
    # The hottest 1 % of the keys get some 20 % of the draws (uniform keys would get 1 %).
    top_1_percent = sum(c for _, c in counts.most_common(items // 100))
    assert top_1_percent / draws > 0.15
    # The hot keys land all over the keyspace, not in one corner.
    hot = [key for key, _ in counts.most_common(50)]
    assert min(hot) < items // 4 and max(hot) > 3 * items // 4


def test_scrambled_zipfian_is_reproducible_from_its_seed():
    first = ScrambledZipfianGenerator(1000, rng=random.Random(11))
    second = ScrambledZipfianGenerator(1000, rng=random.Random(11))
    assert [first.next() for _ in range(100)] == [second.next() for _ in range(100)]


def test_workload_mixes_add_up_to_one():
    assert set(WORKLOADS) == {"A", "B", "C", "E", "F"}
    for workload in WORKLOADS.values():
        assert sum(weight for _, weight in workload.mix) == pytest.approx(1.0)


def test_scan_command_template():
    template = shlex.split(DEFAULT_SCAN_COMMAND)
    assert scan_args(template, b"user000000000042", 17) == ["KV.RANGE", "user000000000042", "", "LIMIT", "17"]
    assert scan_args(["SCAN", "{key}", "{count}"], b"k", 5) == ["SCAN", "k", "5"]


def test_values_are_incompressible_and_vary():
    values = [value_for(n, 1024) for n in range(100)]
    assert all(len(v) == 1024 for v in values)
    assert len(set(values)) == 100
    assert len(zlib.compress(b"".join(values))) > 0.95 * 1024 * 100


def test_keys_are_named_as_redis_benchmark_names_them():
    assert key_name("key:", 42) == b"key:000000000042"
    assert key_name("user", 7) == b"user000000000007"


# -- redis-benchmark output


def test_parse_csv_with_latencies():
    [run] = parse_output(CSV_OUTPUT)
    assert run.test == "GET"
    assert run.rps == pytest.approx(73800.74)
    assert (run.avg_ms, run.p50_ms, run.p99_ms, run.max_ms) == (0.352, 0.343, 0.583, 1.287)


def test_parse_csv_of_several_tests_and_old_format_without_header():
    text = CSV_OUTPUT + '"SET","41265.00","0.900","0.1","0.81","2.0","4.99","9.0"\n'
    assert [(r.test, r.rps) for r in parse_output(text)] == [("GET", 73800.74), ("SET", 41265.0)]
    old = '"PING_INLINE","86956.52"\n"SET","84745.77"\n'
    runs = parse_output(old)
    assert [(r.test, r.rps, r.p99_ms) for r in runs] == [("PING_INLINE", 86956.52, None), ("SET", 84745.77, None)]


def test_parse_quiet_output_with_progress_carriage_returns():
    text = ("GET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r"
            "GET: rps=731219.2 (overall: 731219.2) avg_msec=0.947 (overall: 0.947)\r"
            "GET: 749063.69 requests per second, p50=0.927 msec\n")
    [run] = parse_output(text)
    assert (run.test, run.rps, run.p50_ms) == ("GET", 749063.69, 0.927)


def test_a_run_stopped_by_an_error_reply_has_no_result():
    text = ("Error from server: ERR wrong number of arguments for 'incr' command\n"
            '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",'
            '"max_latency_ms"\n')
    assert parse_output(text) == []


def test_requests_are_whole_rounds_of_pipelines():
    load = Load("GET", 16, clients=50)
    assert load.requests_for(12_345.0, 10) % (50 * 16) == 0
    assert load.requests_for(1.0, 1) >= 1000
    assert "-P" in load.argv(6380, 8000) and "16" in load.argv(6380, 8000)


def test_cpu_per_thousand_operations():
    cost = per_thousand({"proxy1": 2.0, "node1": 1.0}, 10_000)
    assert cost == {"proxy1": 0.2, "node1": 0.1, "total": pytest.approx(0.3)}
    assert per_thousand({"proxy1": 1.0}, 0) == {}


# -- targets and the report


def _row(target, test, pipeline, rps, p99=1.0, write_level=None):
    return {"target": target, "test": test, "pipeline": pipeline, "clients": 50, "write_level": write_level,
            "rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "cpu_per_1000_ops": {"proxy1": 0.1, "total": 0.1}}


def _results():
    rows = [
        _row("ours", "GET", 1, 60_000, p99=1.5), _row("redis", "GET", 1, 100_000),
        _row("ours", "GET", 16, 20_000), _row("redis", "GET", 16, 100_000),
        _row("ours", "SET", 1, 50_000, write_level="1"), _row("ours", "SET", 1, 10_000, write_level="quorum"),
        _row("redis", "SET", 1, 100_000),
    ]
    datasize = {"value_size": 100, "clients": 50, "cache_mb": 64, "overhead_mb": 128, "steps": [
        {"keys": 100_000, "load_seconds": 3.0, "rps": 10_000.0, "p50_ms": 2.0, "p99_ms": 5.0,
         "own_mb": {"node1": 60.0}, "mapped_mb": {"node1": 30.0}, "disk_mb": {"node1": 20.0}},
        {"keys": 1_000_000, "load_seconds": 30.0, "compact_seconds": {"node1": 4.5}, "rps": 9_000.0, "p50_ms": 2.0,
         "p99_ms": 6.5,
         "own_mb": {"node1": 150.0}, "mapped_mb": {"node1": 300.0},
         "disk_mb": {"node1": 200.0}},
    ]}
    ycsb = [{"target": "ours", "workload": "E", "description": WORKLOADS["E"].description, "available": False,
             "unavailable": "ERR unknown command 'RANGE'", "ops": 0, "seconds": 0.0, "throughput": 0.0,
             "latency_ms": {}, "errors": {}, "misses": 0}]
    return {"meta": {"roles": {"proxy1": "proxy"}, "notes": []}, "redis_benchmark": rows, "ycsb": ycsb,
            "datasize": datasize}


def test_targets_compare_ours_with_redis_at_write_level_one():
    checks = {c["what"]: c for c in report.check_targets(_results())}
    get_p1 = checks["GET through the proxy, P1: ours / Redis"]
    assert (get_p1["value"], get_p1["passed"]) == (0.6, True)
    assert checks["GET through the proxy, P16: ours / Redis"]["passed"] is False  # 0.2 < 0.25
    set_p1 = checks["SET at write level 1, P1: ours / Redis"]
    assert (set_p1["value"], set_p1["passed"]) == (0.5, True)  # the quorum row is not the one compared
    assert checks["SET at write level 1, P16: ours / Redis"]["passed"] is None  # not measured
    assert checks["p99 GET at 50 clients (ms)"]["passed"] is True


def test_datasize_targets():
    checks = report.check_targets(_results())
    drop = next(c for c in checks if c["what"].startswith("GET rate drop"))
    rise = next(c for c in checks if c["what"].startswith("GET p99 rise"))
    memory = next(c for c in checks if c["what"].startswith("largest node memory"))
    assert (drop["value"], drop["passed"]) == (0.1, True)
    assert (rise["value"], rise["passed"]) == (0.3, False)
    assert (memory["value"], memory["limit"], memory["passed"]) == (150.0, 192, True), "mapped files not counted"


def test_report_json_round_trips_and_renders(tmp_path):
    from rich.console import Console

    results = _results()
    results["targets"] = report.check_targets(results)
    path = tmp_path / "results.json"
    report.write_json(results, path)
    assert json.loads(path.read_text()) == results
    console = Console(record=True, width=140, file=io.StringIO())
    report.render(results, console)
    text = console.export_text()
    for title in ("redis-benchmark", "YCSB", "CPU seconds per 1 000", "Data size", "Targets"):
        assert title in text
    assert "not available" in text and "not measured" in text


def test_worker_histograms_merge_into_percentiles_in_milliseconds():
    pytest.importorskip("hdrh")
    from kvmeta.bench.ycsb import merge, new_histogram, summarize

    parts = []
    for offset in (0, 1000):  # two workers: 1..1000 us and 1001..2000 us
        histogram = new_histogram()
        for value in range(1, 1001):
            histogram.record_value(value + offset)
        parts.append(histogram.encode())
    summary = summarize(merge(parts))
    assert summary["count"] == 2000
    assert summary["p50"] == pytest.approx(1.0, rel=0.01)
    assert summary["p99"] == pytest.approx(1.98, rel=0.01)
    assert summary["max"] == pytest.approx(2.0, rel=0.01)


def test_resident_memory_splits_into_own_and_mapped_files(tmp_path):
    import mmap
    import os

    path = tmp_path / "table"
    path.write_bytes(b"x" * (8 << 20))
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        before = resident_split(os.getpid())[1]
        touched = sum(mapped[i] for i in range(0, len(mapped), 4096))  # bring every page in
        own, files = resident_split(os.getpid())
        assert touched == ord("x") * (8 << 20) // 4096
        assert files - before >= 7 << 20, "the pages of a mapped file count as mapped, not as own memory"
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert abs(own + files - rss) < 4 << 20


def test_a_data_size_step_reports_the_median_of_its_runs():
    from kvmeta.bench.command import _median

    assert _median([9_000.0, 15_000.0, 10_500.0]) == 10_500.0
    assert _median([None, 7.9, 12.1]) == pytest.approx(10.0), "a run without a figure is left out"
    assert _median([None, None]) is None
