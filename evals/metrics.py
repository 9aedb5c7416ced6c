"""Statistics for evaluation: unbiased pass@k, 95% intervals, paired comparison.

Everything here is exact arithmetic on counts (no scipy): the pass@k estimator
of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code",
section 2.1), Wilson score and Clopper-Pearson intervals for a binomial rate,
and McNemar's exact test (a two-sided sign test on the discordant pairs) for
two models scored on the same tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
FOLLOWS = "follows: "  # a compliance metric's name: "follows: " + the preference's text


def compliance_metric(preference: str) -> str:
    """The name of the metric "share of tasks whose final program follows `preference`"."""
    return FOLLOWS + preference


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k).

    Computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k/i), which is stable for large n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n (samples), got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over tasks, each given as (n samples, c passed)."""
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) when n == 0."""
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got {successes}/{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binom_cdf(x: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x + 1))


def _bisect(f: Callable[[float], float], lo: float, hi: float, target: float) -> float:
    """Root of the monotone function f(p) - target on [lo, hi] to 1e-12."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if (f(mid) - target) * (f(lo) - target) <= 0:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def clopper_pearson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval; conservative, never narrower than nominal."""
    if n == 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"clopper_pearson needs 0 <= successes <= n, got {successes}/{n}")
    lower = 0.0
    upper = 1.0
    if successes > 0:
        # P(X >= successes | p) = alpha/2
        lower = _bisect(lambda p: 1 - _binom_cdf(successes - 1, n, p), 0.0, 1.0, alpha / 2)
    if successes < n:
        # P(X <= successes | p) = alpha/2
        upper = _bisect(lambda p: _binom_cdf(successes, n, p), 0.0, 1.0, alpha / 2)
    return (lower, upper)


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """Normal-approximation interval for a mean of per-task rates in [0, 1] (e.g. pass@k).

    With 0/1 values this reduces to the Wald interval; it is clipped to [0, 1].
    """
    n = len(values)
    if n == 0:
        return (0.0, 1.0)
    mean = sum(values) / n
    if n == 1:
        return (0.0, 1.0)
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = z * math.sqrt(var / n)
    return (max(0.0, mean - half), min(1.0, mean + half))


@dataclass(frozen=True)
class Rate:
    """A measured rate: count of n, the rate and its 95% interval."""

    count: float  # successes (a float for averaged estimates such as pass@k)
    n: int
    rate: float
    low: float
    high: float
    method: str  # "wilson" or "normal"

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "count": self.count,
            "n": self.n,
            "rate": self.rate,
            "ci95": [self.low, self.high],
            "ci_method": self.method,
        }

    def short(self) -> str:
        """E.g. '12/30 40.0% [24.6-57.7]'."""
        count = f"{self.count:g}" if self.count != int(self.count) else str(int(self.count))
        return (
            f"{count}/{self.n} {100 * self.rate:.1f}% [{100 * self.low:.1f}-{100 * self.high:.1f}]"
        )


def binomial_rate(successes: int, n: int) -> Rate:
    low, high = wilson_interval(successes, n)
    return Rate(successes, n, successes / n if n else 0.0, low, high, "wilson")


def averaged_rate(values: Sequence[float]) -> Rate:
    """A rate averaged over tasks. All 0/1 values: Wilson on the count; else a normal interval."""
    n = len(values)
    if all(v in (0.0, 1.0) for v in values):
        return binomial_rate(int(sum(values)), n)
    low, high = mean_interval(values)
    total = sum(values)
    return Rate(round(total, 6), n, total / n if n else 0.0, low, high, "normal")


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same tasks: which flipped each way and whether the gap is significant."""

    n: int  # tasks both models were scored on
    both_pass: int
    both_fail: int
    only_a: list[str]  # tasks A passed and B failed
    only_b: list[str]  # tasks B passed and A failed
    p_value: float  # McNemar's exact test (two-sided sign test on the discordant pairs)

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "both_pass": self.both_pass,
            "both_fail": self.both_fail,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "mcnemar_exact_p": self.p_value,
        }


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs (1.0 when b + c == 0)."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2**m
    return min(1.0, 2 * tail)


def paired_comparison(a: dict[str, bool], b: dict[str, bool]) -> PairedComparison:
    """Compare two task_id -> passed maps on the tasks they share (in a's order)."""
    shared = [t for t in a if t in b]
    only_a = [t for t in shared if a[t] and not b[t]]
    only_b = [t for t in shared if b[t] and not a[t]]
    both_pass = sum(1 for t in shared if a[t] and b[t])
    return PairedComparison(
        n=len(shared),
        both_pass=both_pass,
        both_fail=len(shared) - both_pass - len(only_a) - len(only_b),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact_p(len(only_a), len(only_b)),
    )
