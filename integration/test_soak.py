"""A short soak (soak.py) through real Envoy: 3,000 concurrent valid and
hostile requests, each checked against the decision it must get. The full
run is `./build.sh soak` (100,000 requests or 10 minutes)."""

from __future__ import annotations

from soak import CLASSES, run, summary


def test_a_short_soak_makes_no_wrong_decision(tmp_path):
    result = run(requests=3000, seconds=30, workers=6, workdir=tmp_path)
    print(summary(result))
    s = result.stats
    assert result.requests >= 1000, "too few requests for a soak"
    assert set(s.counts) == set(CLASSES), f"classes never sent: {set(CLASSES) - set(s.counts)}"
    assert not s.wrong, (dict(s.wrong), s.wrong_examples[:5])
    assert not s.filter_5xx, dict(s.filter_5xx)
    assert not s.transport_errors, (dict(s.transport_errors), s.wrong_examples[:5])
    assert not result.leaked, result.leaked[:5]
    assert not result.duplicated, result.duplicated[:5]
    assert not result.missing_forwarded, result.missing_forwarded[:5]
    assert result.ok, result.failures
