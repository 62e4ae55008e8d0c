"""Nelson rules 1-8 on constructed series, within one batch and across batch boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from am_qadf.monitoring.rules import RULE_NAMES, NelsonRules, Violation, check_rules


def flags(z: list[float], rule: int) -> list[int]:
    pos, r = check_rules(np.array(z, dtype=float), rules=[rule])
    assert set(r.tolist()) <= {rule}
    return pos.tolist()


def alternating(n: int, start: float = 0.5) -> list[float]:
    return [start if i % 2 == 0 else -start for i in range(n)]


def test_rule_1_beyond_three_sigma() -> None:
    assert flags([0, 3.01, -3.5, 2.99, -3.0], 1) == [1, 2]


def test_rule_1_uses_the_configured_limit() -> None:
    pos, _ = check_rules(np.array([2.6, 3.5]), rules=[1], limit=2.5)
    assert pos.tolist() == [0, 1]


def test_rule_2_nine_on_one_side() -> None:
    assert flags([0.1] * 8, 2) == []
    assert flags([0.1] * 9, 2) == [8]
    assert flags([-0.2] * 11, 2) == [8, 9, 10]
    assert flags([0.1] * 4 + [0.0] + [0.1] * 8, 2) == []  # a point on the center line breaks it
    assert flags([0.1] * 5 + [-0.1] + [0.1] * 8, 2) == []


def test_rule_3_six_trending() -> None:
    up = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert flags(up[:5], 3) == []
    assert flags(up, 3) == [5]
    assert flags(up[::-1], 3) == [5]
    assert flags([0.0, 0.1, 0.2, 0.2, 0.3, 0.4, 0.5], 3) == []  # a tie is no increase
    assert flags(up + [0.6], 3) == [5, 6]


def test_rule_4_fourteen_alternating() -> None:
    assert flags(alternating(13), 4) == []
    assert flags(alternating(14), 4) == [13]
    assert flags(alternating(15, -1.0), 4) == [13, 14]
    broken = alternating(14)
    broken[7] = broken[6]  # no change breaks the alternation
    assert flags(broken, 4) == []


def test_rule_5_two_of_three_beyond_two_sigma() -> None:
    assert flags([2.1, 0.0, 2.2], 5) == [2]
    assert flags([2.1, 2.2], 5) == [1]  # two of the first two (of any three that hold them)
    assert flags([0.0, 2.1, 2.2], 5) == [2]
    assert flags([2.1, 0.0, -2.2], 5) == []  # opposite sides
    assert flags([-2.5, -2.1, 0.0], 5) == [1]  # flagged on the completing point
    assert flags([0.0, -2.5, 0.0, -2.1], 5) == [3]


def test_rule_6_four_of_five_beyond_one_sigma() -> None:
    assert flags([1.1, 1.2, 0.0, 1.3, 1.4], 6) == [4]
    assert flags([1.1, 1.2, 0.0, 1.3, -1.4], 6) == []
    assert flags([-1.1, -1.2, -1.3, -1.4, 0.0], 6) == [3]
    assert flags([0.0, -1.1, -1.2, -1.3, -1.4], 6) == [4]


def test_rule_7_fifteen_within_one_sigma() -> None:
    assert flags(alternating(14, 0.5), 7) == []
    assert flags(alternating(15, 0.5), 7) == [14]
    z = alternating(15, 0.5)
    z[7] = 1.2
    assert flags(z, 7) == []


def test_rule_8_eight_beyond_one_sigma_either_side() -> None:
    z = alternating(8, 1.5)
    assert flags(z[:7], 8) == []
    assert flags(z, 8) == [7]
    z[3] = 0.5
    assert flags(z, 8) == []


def test_in_control_noise_rarely_flags() -> None:
    z = np.random.default_rng(0).normal(size=100_000)
    pos, rule = check_rules(z)
    rates = {r: np.mean(rule == r) * len(rule) / z.size for r in range(1, 9)}
    assert 0.0015 < rates[1] < 0.0040  # two-sided 3 sigma: 0.0027
    assert all(v < 0.01 for v in rates.values())


SERIES = {
    1: [0.0, 0.2, 3.5, 0.1],
    2: [0.3] * 12,
    3: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    4: alternating(16),
    5: [0.0, 2.5, 0.0, 2.6, 0.0],
    6: [0.0, 1.5, 1.5, 0.0, 1.5, 1.5],
    7: alternating(17, 0.3),
    8: alternating(10, 1.4),
}


@pytest.mark.parametrize("rule", range(1, 9))
def test_every_rule_across_every_batch_boundary(rule: int) -> None:
    z = np.array(SERIES[rule])
    whole = flags(list(z), rule)
    assert whole, f"rule {rule}: the constructed series must violate it"
    for cut in range(1, len(z)):
        nr = NelsonRules(rules=[rule])
        a, _ = nr.check(z[:cut])
        b, _ = nr.check(z[cut:])
        assert a.tolist() + (b + cut).tolist() == whole, f"rule {rule}, cut at {cut}"


@given(
    st.lists(st.floats(-4, 4), min_size=1, max_size=200), st.lists(st.integers(1, 40), min_size=1)
)
@settings(max_examples=60, deadline=None)
def test_batches_equal_one_pass(values: list[float], sizes: list[int]) -> None:
    z = np.array(values)
    pos, rule = check_rules(z)
    nr = NelsonRules()
    got_p, got_r, k, i = [], [], 0, 0
    while k < z.size:
        n = sizes[i % len(sizes)]
        p, r = nr.check(z[k : k + n])
        got_p += (p + k).tolist()
        got_r += r.tolist()
        k += n
        i += 1
    assert list(zip(got_p, got_r, strict=True)) == list(
        zip(pos.tolist(), rule.tolist(), strict=True)
    )


def test_reset_forgets_history() -> None:
    nr = NelsonRules(rules=[2])
    nr.check(np.full(8, 0.5))
    nr.reset()
    assert nr.check(np.full(1, 0.5))[0].tolist() == []


def test_validation() -> None:
    with pytest.raises(ValueError, match="rules"):
        NelsonRules(rules=[0])
    with pytest.raises(ValueError, match="rules"):
        NelsonRules(rules=["1"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="limit"):
        NelsonRules(limit=0)
    assert NelsonRules(rules=[3, 1, 3]).rules == (1, 3)
    assert check_rules(np.empty(0))[0].size == 0


def test_violation_naming() -> None:
    v = Violation(rule=5, statistic="xbar", index=3, value=2.4, signal="temperature")
    assert v.rule_name == RULE_NAMES[5] and v.key == "spc:xbar:rule_5"
    d = v.to_dict()
    assert d["description"] and d["signal"] == "temperature"
