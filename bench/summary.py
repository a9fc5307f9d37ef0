"""The figures of a benchmark run: per case the median of its repeats and
their spread, and the issue-15 targets as ratios between a case and its
floor within the same run.

Pure functions over the per-run records that bench/run.py collects; tested
by bench/tests/test_summary.py.
"""

from __future__ import annotations

import statistics

# The four figures every case reports (quick.json and the full run's JSON).
FIELDS = ("cpu_us_per_request", "fixed_p50_us", "fixed_p99_us", "sat_rps")

# (name, case, floor, field, how, limit): `ratio` is case / floor, `added`
# is case - floor; met when the figure is at most the limit.
TARGETS = (
    ("c: Envoy CPU per request / w", "c", "w", "cpu_us_per_request", "ratio", 1.15),
    ("c: fixed-rate p50 added over w (us)", "c", "w", "fixed_p50_us", "added", 25),
    ("d4: Envoy CPU per request / w4e", "d4", "w4e", "cpu_us_per_request", "ratio", 1.3),
    ("d4: fixed-rate p99 / w4e's", "d4", "w4e", "fixed_p99_us", "ratio", 1.5),
    ("e16: Envoy CPU per request / w16e17", "e16", "w16e17", "cpu_us_per_request", "ratio", 1.3),
)

# Not targets: what the floors themselves cost over plain Envoy.
CONTEXT = (
    ("w: Envoy CPU per request / a", "w", "a", "cpu_us_per_request", "ratio"),
    ("w4e: Envoy CPU per request / a4", "w4e", "a4", "cpu_us_per_request", "ratio"),
    ("a4: Envoy CPU per request / a", "a4", "a", "cpu_us_per_request", "ratio"),
    ("d4x: fixed-rate p50 added over d4 (us)", "d4x", "d4", "fixed_p50_us", "added"),
)

MEMORY_LIMIT_MIB = 16


# Beside them in the table and the JSON's `spread`: Envoy's CPU per request
# in the fixed-rate phase (mostly its wake-ups between requests).
EXTRA = ("fixed_cpu_us_per_request",)


def figures(run: dict) -> dict:
    """The figures of one run of a case (a record from bench/run.py);
    `cpu_us_per_request` is Envoy's over the saturation phase."""
    fixed, sat = run.get("fixed_rate") or {}, run.get("saturation") or {}
    return {
        "cpu_us_per_request": run.get("cpu_us_per_request") or 0,
        "fixed_p50_us": fixed.get("latency_us", {}).get("p50", 0),
        "fixed_p99_us": fixed.get("latency_us", {}).get("p99", 0),
        "sat_rps": round(sat.get("rps", 0.0), 1),
        "fixed_cpu_us_per_request": run.get("fixed_cpu_us_per_request") or 0,
    }


def aggregate(runs: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Per case, the median of the four figures over its runs, and the
    (min, max) of those and of the EXTRA ones."""
    cases, spread = {}, {}
    for key, records in runs.items():
        values = [figures(r) for r in records]
        if not values:
            continue
        cases[key] = {f: _round(statistics.median(v[f] for v in values)) for f in FIELDS}
        spread[key] = {f: [_round(min(v[f] for v in values)), _round(max(v[f] for v in values))] for f in FIELDS + EXTRA}
        spread[key].update({f"{f}_median": _round(statistics.median(v[f] for v in values)) for f in EXTRA})
    return cases, spread


def _round(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 1)


def paired(runs: dict[str, list[dict]], case: str, floor: str, field: str, how: str) -> list[float]:
    """The figure of `case` against `floor` in each round both ran in:
    interleaved rounds pair a case with the floor measured next to it."""
    out = []
    for mine, theirs in zip(runs.get(case, []), runs.get(floor, [])):
        a, b = figures(mine)[field], figures(theirs)[field]
        if how == "ratio":
            if b:
                out.append(a / b)
        else:
            out.append(a - b)
    return out


def targets(runs: dict[str, list[dict]], memory: dict | None = None) -> list[dict]:
    """Each target this run measured: the median of the per-round figures,
    their spread and the verdict; then the context lines (verdict None)."""
    out = []
    for name, case, floor, field, how, limit in TARGETS:
        rounds = paired(runs, case, floor, field, how)
        if rounds:
            value = statistics.median(rounds)
            out.append({"target": name, "value": round(value, 3), "spread": [round(min(rounds), 3), round(max(rounds), 3)],
                        "rounds": [round(r, 3) for r in rounds], "limit": limit, "met": value <= limit})
    if memory and memory.get("per_vm_mib") is not None:
        out.append({"target": f"memory per VM after {memory['requests_served']} requests (MiB)", "value": memory["per_vm_mib"],
                    "spread": None, "rounds": None, "limit": MEMORY_LIMIT_MIB, "met": memory["per_vm_mib"] <= MEMORY_LIMIT_MIB})
    for name, case, floor, field, how in CONTEXT:
        rounds = paired(runs, case, floor, field, how)
        if rounds:
            out.append({"target": name, "value": round(statistics.median(rounds), 3),
                        "spread": [round(min(rounds), 3), round(max(rounds), 3)],
                        "rounds": [round(r, 3) for r in rounds], "limit": None, "met": None})
    return out


def target_lines(found: list[dict]) -> list[str]:
    lines = []
    for t in found:
        spread = f" (rounds {t['spread'][0]:.10g}..{t['spread'][1]:.10g})" if t["spread"] else ""
        if t["met"] is None:
            lines.append(f"       {t['target']}: {t['value']:.10g}{spread}")
        else:
            verdict = "MET   " if t["met"] else "MISSED"
            lines.append(f"{verdict} {t['target']}: {t['value']:.10g}{spread}, target <= {t['limit']:.10g}")
    return lines


def table(cases: dict, spread: dict, titles: dict[str, str]) -> str:
    """Median (min..max) of each figure, one line per case."""
    columns = (("CPU us/request", "cpu_us_per_request", 22), ("fixed p50 us", "fixed_p50_us", 20),
               ("fixed p99 us", "fixed_p99_us", 22), ("sat rps", "sat_rps", 22),
               ("fixed CPU us/request", "fixed_cpu_us_per_request", 24))
    head = f"{'case':<44} " + " ".join(f"{name:>{width}}" for name, _, width in columns)
    lines = [head, "-" * len(head)]
    for key, c in cases.items():
        cells = []
        for _, f, width in columns:
            lo, hi = spread[key][f]
            median = c[f] if f in c else spread[key][f"{f}_median"]
            cells.append(f"{f'{median:.10g} ({lo:.10g}..{hi:.10g})':>{width}}")
        lines.append(f"{titles.get(key, key):<44} " + " ".join(cells))
    return "\n".join(lines)


def busy_from_stats(stats: dict, requests: int) -> dict | None:
    """The filter's busy time per decision from Envoy's `/stats?format=json`:
    the cumulative quantiles of the histogram `custody_decision_latency_us`
    (the decision line's `latency_us`, for every decision whether or not it
    got a line). None before Envoy has any."""
    for block in stats.get("stats", []):
        hist = block.get("histograms")
        if not isinstance(hist, dict):
            continue
        quantiles = hist.get("supported_quantiles", [])
        for h in hist.get("computed_quantiles", []):
            if not h.get("name", "").endswith("custody_decision_latency_us"):
                continue
            values = {q: v.get("cumulative") for q, v in zip(quantiles, h.get("values", []))}
            if any(values.get(q) is None for q in (50, 99, 100)):
                return None
            return {"requests": requests, "p50": _round(values[50]), "p99": _round(values[99]),
                    "max": _round(values[100])}
    return None
