"""The benchmark's figures: medians and spreads of the rounds, and the
targets as per-round ratios between a case and its floor."""

import json

import pytest
import summary


def run(cpu, p50=500, p99=2000, rps=1000.0, fixed_cpu=400.0):
    """A record as bench/run.py keeps one per case and round."""
    return {
        "cpu_us_per_request": cpu,
        "fixed_cpu_us_per_request": fixed_cpu,
        "fixed_rate": {"latency_us": {"p50": p50, "p99": p99}},
        "saturation": {"rps": rps},
    }


def test_each_case_reports_the_median_of_its_rounds_and_their_spread():
    runs = {"w": [run(120, p50=700), run(100, p50=900), run(140, p50=650)]}
    cases, spread = summary.aggregate(runs)
    assert cases == {"w": {"cpu_us_per_request": 120, "fixed_p50_us": 700, "fixed_p99_us": 2000, "sat_rps": 1000}}
    assert spread["w"]["cpu_us_per_request"] == [100, 140]
    assert spread["w"]["fixed_p50_us"] == [650, 900]
    assert spread["w"]["fixed_cpu_us_per_request"] == [400, 400]


def test_quick_json_cases_carry_exactly_the_four_numeric_fields():
    cases, _ = summary.aggregate({k: [run(100.5), run(101.5)] for k in ("a", "w", "c")})
    for figures in cases.values():
        assert tuple(figures) == summary.FIELDS
        assert all(isinstance(v, (int, float)) for v in figures.values())
    # An even number of rounds: the median is the mean of the middle two.
    assert cases["a"]["cpu_us_per_request"] == 101
    json.dumps({"cases": cases})


def test_targets_pair_each_round_with_its_floor_and_take_the_median():
    runs = {
        "w": [run(100), run(200), run(100)],
        "c": [run(110), run(260), run(200)],  # rounds: 1.1, 1.3, 2.0
    }
    found = {t["target"]: t for t in summary.targets(runs)}
    cpu = found["c: Envoy CPU per request / w"]
    assert cpu["rounds"] == [1.1, 1.3, 2.0]
    assert cpu["value"] == 1.3 and cpu["spread"] == [1.1, 2.0]
    assert cpu["met"] is False  # 1.3 > 1.15
    added = found["c: fixed-rate p50 added over w (us)"]
    assert added["value"] == 0 and added["met"] is True


def test_a_target_at_its_limit_is_met_and_just_above_is_missed():
    at = summary.targets({"w4e": [run(100)], "d4": [run(130)]})
    above = summary.targets({"w4e": [run(100)], "d4": [run(131)]})
    pick = lambda ts: next(t for t in ts if t["target"].startswith("d4: Envoy CPU"))  # noqa: E731
    assert pick(at)["met"] is True
    assert pick(above)["met"] is False


def test_a_target_whose_floor_did_not_run_is_not_reported():
    found = summary.targets({"e16": [run(900)], "c": [run(200)]})
    names = [t["target"] for t in found]
    assert not any(n.startswith("e16") or n.startswith("c:") for n in names)


def test_memory_per_vm_is_judged_against_16_mib():
    ok = summary.targets({}, {"per_vm_mib": 15.9, "requests_served": 100000})
    over = summary.targets({}, {"per_vm_mib": 21.2, "requests_served": 100000})
    assert [t["met"] for t in ok] == [True]
    assert [t["met"] for t in over] == [False]


def test_context_lines_have_no_verdict_and_print_without_one():
    found = summary.targets({"a": [run(100)], "w": [run(125)]})
    assert [(t["target"], t["value"], t["met"]) for t in found] == [("w: Envoy CPU per request / a", 1.25, None)]
    lines = summary.target_lines(found + summary.targets({"w": [run(100)], "c": [run(200)]}))
    assert lines[0].strip() == "w: Envoy CPU per request / a: 1.25 (rounds 1.25..1.25)"
    assert lines[1].startswith("MISSED c: Envoy CPU per request / w: 2")


def test_a_floor_of_zero_gives_no_ratio():
    assert summary.paired({"c": [run(100)], "w": [run(0)]}, "c", "w", "cpu_us_per_request", "ratio") == []


@pytest.mark.parametrize("field", summary.FIELDS)
def test_the_table_shows_every_figure_with_its_spread(field):
    cases, spread = summary.aggregate({"a": [run(90, 400, 1500, 5000.0), run(110, 600, 2500, 7000.0)]})
    text = summary.table(cases, spread, {"a": "a: plain"})
    lo, hi = spread["a"][field]
    assert f"({lo:g}..{hi:g})" in text


def test_busy_time_comes_from_the_latency_histogram():
    """What Envoy's /stats?format=json says (shape of Envoy 1.40)."""
    stats = {"stats": [
        {"name": "wasmcustom.custody_allowed", "value": 10},
        {"histograms": {
            "supported_quantiles": [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100],
            "computed_quantiles": [
                {"name": "cluster.x.upstream_rq_time", "values": [{"interval": None, "cumulative": 1}] * 10},
                {"name": "wasmcustom.custody_decision_latency_us",
                 "values": [{"interval": None, "cumulative": c} for c in (20, 30, 37.5, 40, 50, 60, 143, 150, 160, 170)]},
            ]}},
    ]}
    assert summary.busy_from_stats(stats, 10) == {"requests": 10, "p50": 37.5, "p99": 143, "max": 170}
    empty = {"stats": [{"histograms": {"supported_quantiles": [50, 99, 100], "computed_quantiles": [
        {"name": "wasmcustom.custody_decision_latency_us", "values": [{"interval": None, "cumulative": None}] * 3}]}}]}
    assert summary.busy_from_stats(empty, 0) is None
    assert summary.busy_from_stats({"stats": []}, 0) is None
