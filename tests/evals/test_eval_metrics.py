"""pass@k, confidence intervals and the paired test against hand-computed values."""

from __future__ import annotations

import math

import pytest

from evals.metrics import (
    averaged_rate,
    binomial_rate,
    clopper_pearson_interval,
    mcnemar_exact_p,
    mean_pass_at_k,
    paired_comparison,
    pass_at_k,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (5, 2, 1, 2 / 5),  # pass@1 is the fraction correct
        (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 1 - 3/10 = 0.7
        (5, 2, 3, 1 - math.comb(3, 3) / math.comb(5, 3)),  # 1 - 1/10 = 0.9
        (5, 2, 4, 1.0),  # n - c < k: some draw of 4 must contain a pass
        (10, 0, 5, 0.0),
        (200, 13, 10, 1 - math.comb(187, 10) / math.comb(200, 10)),
    ],
)
def test_pass_at_k_matches_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_mean_pass_at_k_averages_tasks() -> None:
    # task 1: 1 of 2 passed -> pass@1 0.5, pass@2 1.0; task 2: 0 of 2 -> 0, 0
    assert mean_pass_at_k([(2, 1), (2, 0)], 1) == pytest.approx(0.25)
    assert mean_pass_at_k([(2, 1), (2, 0)], 2) == pytest.approx(0.5)


def test_wilson_interval_known_values() -> None:
    # 7/10: the textbook Wilson interval is (0.3968, 0.8922)
    low, high = wilson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)
    # 0 of n: the lower bound is 0 and the upper z^2/(n+z^2)
    low, high = wilson_interval(0, 20)
    z2 = 1.959963984540054**2
    assert low == 0.0
    assert high == pytest.approx(z2 / (20 + z2))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_clopper_pearson_known_values() -> None:
    low, high = clopper_pearson_interval(7, 10)
    assert (round(low, 4), round(high, 4)) == (0.3475, 0.9333)
    # all successes: lower bound (alpha/2)^(1/n)
    low, high = clopper_pearson_interval(10, 10)
    assert low == pytest.approx(0.025 ** (1 / 10), abs=1e-9)
    assert high == 1.0


def test_intervals_contain_the_rate_and_shrink_with_n() -> None:
    small = binomial_rate(3, 10)
    large = binomial_rate(300, 1000)
    assert small.low < 0.3 < small.high
    assert large.low < 0.3 < large.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert small.short() == "3/10 30.0% [10.8-60.3]"


def test_averaged_rate_uses_wilson_for_binary_and_normal_for_fractions() -> None:
    assert averaged_rate([1.0, 0.0, 1.0]).method == "wilson"
    mixed = averaged_rate([0.5, 1.0, 0.0, 0.5])
    assert mixed.method == "normal"
    assert mixed.rate == pytest.approx(0.5)
    assert mixed.low < 0.5 < mixed.high


def test_mcnemar_exact_p_values() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(1, 6) == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    assert mcnemar_exact_p(0, 10) == pytest.approx(2 / 2**10)
    assert mcnemar_exact_p(5, 5) == 1.0


def test_paired_comparison_counts_flips_each_way() -> None:
    a = {"t1": True, "t2": True, "t3": False, "t4": False, "t5": True}
    b = {"t1": True, "t2": False, "t3": True, "t4": True, "t6": True}
    cmp = paired_comparison(a, b)
    assert cmp.n == 4  # t5 and t6 are not shared
    assert cmp.only_a == ["t2"]
    assert cmp.only_b == ["t3", "t4"]
    assert (cmp.both_pass, cmp.both_fail) == (1, 0)
    assert cmp.p_value == pytest.approx(mcnemar_exact_p(1, 2))
