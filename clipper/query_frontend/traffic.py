"""Traffic splitting, shadow traffic and learning selection policies of one application.

An application with a :class:`~clipper.config_store.traffic.TrafficConfig` routes each predict request
to one of its (model, version) targets:

* **fixed weights**: runs of :data:`ROUTING_RUN` consecutive requests go to one target, the runs
  dealt to the targets by smooth weighted round-robin (:class:`RunSchedule`), so every target's share
  is exact to within one run at any moment. Runs, not a choice per request, because a batching
  system pays per batch: a 10 % target chosen request by request reaches its replica one or two
  queries at a time on a busy frontend, each such batch costing the frontend and the replica a
  message and a wake-up about as dear as a full one (on two cores a 90/10 split then cost ~20 %
  throughput against a plain app; with runs of 8 ~13 %, the minority's batches ~6.7 queries; with
  runs of 16 ~8 %, its batches ~12: ``bench/traffic.py``). A run of consecutive requests arrives
  within a fraction of a millisecond under load and rides in one batch; at low load it costs
  nothing. The request that ends a target's stretch of runs (the next run goes to another target)
  lets that target's queue leave at once: nothing more is coming for it, so a minority version's
  wait for batch-mates (``workers.Dispatcher._send``) ends there. With ``sticky_key`` the choice is
  a function of the request's key instead (a top-level field of the request's JSON body, else the
  HTTP header of that name): BLAKE2b of the key modulo 10,000 buckets mapped onto the cumulative
  weights, so one key keeps its target on every frontend and across restarts as long as the weights
  do not change. Requests without the key follow the runs. (An experiment that needs each *request*,
  not each user, assigned independently should use a sticky key: consecutive requests share a run.)
* **exp3** (Clipper paper, §5.2): one target per request, drawn with probability
  ``p_i = (1 - gamma) * w_i / sum(w) + gamma / K``. Feedback (``/{app}/update``, input + label)
  queries one target drawn the same way and adds ``eta * reward / p_i`` to its log-weight, with
  ``reward = 1 - loss``.
* **exp4** (ensemble): every target answers each request; the response is the combination of their
  outputs weighted by ``w_i / sum(w)``: the weighted mean when every answering target's output is a
  number, else the output with the largest total weight (weighted vote; ties: the earlier target).
  Feedback queries every target and adds ``-eta * loss_i`` to each log-weight.

Loss of an output against the label: ``min(|y - label|, 1)`` when the output is a number (or a
string holding one), else 0 when it equals the label and 1 otherwise; a default answer (no replica,
objective missed, model error) has loss 1. Log-weights are kept in the config store (per target
``model:version``) and changed only by atomic additions (:meth:`ConfigStore.add_selection_weights`):
each frontend batches its own additions and flushes them about once a second, getting back the sum
of every frontend's additions, so the state survives restarts and is shared by all frontends.

**Shadow**: ``percent`` % of the requests are also sent to the shadow version, in runs like a split's
(a run of :data:`ROUTING_RUN` mirrored requests, dealt by the same round-robin). Its answers are
never returned and never wait for: the primary's response goes out when the primary answers; when
both have answered, each input's outputs are compared (equal embedded JSON = agreement).
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate

import orjson

from clipper.config_store.traffic import LATENCY_BUCKETS_MICROS, TargetCounts, TrafficConfig, encode_stats
from clipper.metrics import MetricsRegistry
from clipper.metrics.types import PENDING_MAX, Counter, Histogram

STICKY_BUCKETS = 10_000
ROUTING_RUN = 16  # consecutive unkeyed requests sent to one target (or mirrored): see the docstring


def cumulative(weights: Sequence[float]) -> list[float]:
    """Normalized cumulative weights (the last is exactly 1.0)."""
    total = float(sum(weights))
    if not total > 0:
        raise ValueError("the weights must sum to more than 0")
    cum = [w / total for w in accumulate(weights)]
    cum[-1] = 1.0
    return cum


def pick(cum: list[float], u: float) -> int:
    """The index whose cumulative interval holds ``u`` in [0, 1)."""
    i = bisect_right(cum, u)
    return i if i < len(cum) else len(cum) - 1


class RunSchedule:
    """Deals runs of ``run`` consecutive picks to weighted choices by smooth weighted round-robin
    (nginx's): each run goes to the choice whose credit, raised by its weight every run, is highest,
    which then pays the total weight. Over any stretch every choice's share is its weight's to within
    one run, its runs spread evenly (90/10: one run of the second in every ten); a weight of 0 is
    never picked.

    Each run is dealt as the previous one ends, so :attr:`ended` can say after every pick whether it
    was its choice's last for a while (the next run goes to another): a batching frontend then sends
    that choice's gathered queries at once instead of waiting for more that are not coming."""

    __slots__ = ("weights", "total", "credit", "current", "left", "run", "ended")

    def __init__(self, weights: Sequence[float], run: int = ROUTING_RUN) -> None:
        self.weights = [float(w) for w in weights]
        self.total = sum(self.weights)
        if not self.total > 0 or min(self.weights) < 0:
            raise ValueError("the weights must be >= 0 and sum to more than 0")
        self.credit = [0.0] * len(self.weights)
        self.run = max(1, run)
        self.current = self._deal()
        self.left = self.run  # picks left in the current run
        self.ended = False  # the last pick ended its choice's stretch of runs

    def _deal(self) -> int:
        credit = self.credit
        best = 0
        for i, w in enumerate(self.weights):
            credit[i] += w
            if credit[i] > credit[best]:
                best = i
        credit[best] -= self.total
        return best

    def next(self) -> int:
        picked = self.current
        self.left -= 1
        if self.left:
            self.ended = False
            return picked
        self.current = self._deal()
        self.left = self.run
        self.ended = self.current != picked
        return picked


def sticky_bucket(key: str) -> int:
    """A stable bucket in [0, STICKY_BUCKETS) of a request key (same on every frontend and run)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % STICKY_BUCKETS


def sticky_pick(cum: list[float], key: str) -> int:
    return pick(cum, (sticky_bucket(key) + 0.5) / STICKY_BUCKETS)


def as_number(embedded: bytes) -> float | None:
    """The number an embedded JSON output denotes (a number or a string holding one), else None."""
    try:
        v = orjson.loads(embedded)
    except orjson.JSONDecodeError:
        return None
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def loss(embedded: bytes | None, label: float) -> float:
    """See the module docstring: clipped absolute error, 0/1 for non-numbers, 1 for a default."""
    if embedded is None:
        return 1.0
    y = as_number(embedded)
    if y is None:
        return 0.0 if embedded == orjson.dumps(label) else 1.0
    return min(abs(y - label), 1.0)


def combine(outputs: Sequence[bytes | None], weights: Sequence[float]) -> bytes | None:
    """Exp4's combination of the targets' embedded outputs (None: that target gave a default)."""
    pairs = [(o, w) for o, w in zip(outputs, weights, strict=True) if o is not None]
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    numbers = [as_number(o) for o, _ in pairs]
    if all(n is not None for n in numbers) and total > 0:
        mean = sum(n * w for n, (_, w) in zip(numbers, pairs, strict=True) if n is not None) / total
        return orjson.dumps(mean)
    votes: dict[bytes, float] = {}
    for o, w in pairs:
        votes[o] = votes.get(o, 0.0) + w
    return max(votes, key=lambda o: votes[o])  # first maximal in insertion order


class LogWeights:
    """Shared log-weights of a selection policy: local values, plus additions not yet flushed."""

    __slots__ = ("keys", "log_w", "pending", "_version")

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self.log_w = [0.0] * len(self.keys)
        self.pending: dict[str, float] = {}
        self._version = 0  # bumped on every change: callers cache what they derive

    def add(self, i: int, delta: float) -> None:
        self.log_w[i] += delta
        k = self.keys[i]
        self.pending[k] = self.pending.get(k, 0.0) + delta
        self._version += 1

    def take_pending(self) -> dict[str, float]:
        p, self.pending = self.pending, {}
        return p

    def absorb(self, shared: dict[str, float]) -> None:
        """The store's state after a flush; additions made since the flush started are kept."""
        self.log_w = [shared.get(k, 0.0) + self.pending.get(k, 0.0) for k in self.keys]
        self._version += 1

    def normalized(self) -> list[float]:
        m = max(self.log_w)
        w = [math.exp(x - m) for x in self.log_w]
        s = sum(w)
        return [x / s for x in w]


class Exp3:
    """Exp3 over K targets (see the module docstring)."""

    __slots__ = ("weights", "eta", "gamma", "_cum", "_probs", "_seen")

    def __init__(self, weights: LogWeights, eta: float, gamma: float) -> None:
        self.weights = weights
        self.eta, self.gamma = eta, gamma
        self._seen = -1
        self._probs: list[float] = []
        self._cum: list[float] = []

    def probabilities(self) -> list[float]:
        w = self.weights
        if w._version != self._seen:
            k = len(w.keys)
            self._probs = [(1 - self.gamma) * x + self.gamma / k for x in w.normalized()]
            self._cum = cumulative(self._probs)
            self._seen = w._version
        return self._probs

    def choose(self, u: float) -> int:
        self.probabilities()
        return pick(self._cum, u)

    def feedback(self, i: int, reward: float) -> None:
        p = self.probabilities()[i]
        self.weights.add(i, self.eta * reward / p)


class Exp4:
    """Exp4 expert weights over K targets (see the module docstring)."""

    __slots__ = ("weights", "eta")

    def __init__(self, weights: LogWeights, eta: float) -> None:
        self.weights = weights
        self.eta = eta

    def feedback(self, losses: Sequence[float]) -> None:
        for i, x in enumerate(losses):
            self.weights.add(i, -self.eta * x)


class TargetStats:
    """Metrics of one (app, model, version) target: registry metrics (JSON and Prometheus, since
    the frontend started) and :class:`TargetCounts` since the app's configuration took effect.

    A single input's latency is appended to the registry histogram's ``pending`` list (see
    :class:`~clipper.metrics.types.Histogram`); when it is folded in (on any read of the histogram,
    on :meth:`flush`, or once the list is full) the same values go into the counts' buckets."""

    __slots__ = (
        "key",
        "requests",
        "defaults",
        "errors",
        "latency",
        "pending",
        "counts",
        "compared",
        "agreed",
        "new_requests",
        "new_defaults",
        "new_errors",
    )

    def __init__(self, metrics: MetricsRegistry, app: str, model: str, version: str, role: str) -> None:
        self.key = f"{model}:{version}"
        labels = {"app": app, "model": model, "version": version, "role": role}
        p = f"app:{app}:{role}:{model}:{version}:"
        self.requests: Counter = metrics.counter(p + "requests", "clipper_target_requests", labels)
        self.defaults: Counter = metrics.counter(p + "defaults", "clipper_target_defaults", labels)
        self.errors: Counter = metrics.counter(p + "errors", "clipper_target_errors", labels)
        self.latency: Histogram = metrics.histogram(
            p + "latency", "microseconds", 1024, "clipper_target_latency", labels
        )
        self.compared: Counter | None = None
        self.agreed: Counter | None = None
        if role == "shadow":
            self.compared = metrics.counter(p + "compared", "clipper_shadow_compared", labels)
            self.agreed = metrics.counter(p + "agreed", "clipper_shadow_agreed", labels)
        self.counts = TargetCounts()
        # counted here per request, added to ``counts`` by flush(): TargetCounts is a plain class, and
        # its attributes cost several times these in the compiled hot path
        self.new_requests = self.new_defaults = self.new_errors = 0
        # the registry's histogram outlives a configuration: its values from now on are this one's
        self.latency.flush()
        self.latency.on_fold = self._fold
        self.pending = self.latency.pending

    def record(self, n: int, defaults: int, errors: int, micros: int) -> None:
        """One answered request of ``n`` inputs (once per request: counters as plain adds, see
        clipper/metrics/types.py)."""
        self.requests.count += n
        self.new_requests += n
        if defaults:
            self.defaults.count += defaults
            self.new_defaults += defaults
        if errors:
            self.errors.count += errors
            self.new_errors += errors
        if n == 1:
            pending = self.pending
            pending.append(micros)
            if len(pending) >= PENDING_MAX:
                self.latency.flush()
        else:
            self.latency.insert_n(micros, n)
            self.counts.observe_latency(micros, n)

    def _fold(self, micros: list[int]) -> None:
        """The histogram's fold hook: single inputs' latencies into the counts' buckets (as
        ``observe_latency`` of each, bounds inclusive), then the counters."""
        bounds = LATENCY_BUCKETS_MICROS
        k = len(bounds)
        c = self.counts
        buckets = c.latency_buckets
        for v in micros:  # most values fall in the first buckets: a scan beats a sort or bisections
            i = 0
            while i < k and v > bounds[i]:
                i += 1
            buckets[i] += 1
        c.latency_sum_micros += sum(micros)
        self._add_counters()

    def _add_counters(self) -> None:
        c = self.counts
        c.requests += self.new_requests
        c.defaults += self.new_defaults
        c.errors += self.new_errors
        self.new_requests = self.new_defaults = self.new_errors = 0

    def flush(self) -> None:
        """Fold the pending latencies and counters into the histogram and the counts (before
        reading the counts)."""
        self.latency.flush()
        self._add_counters()

    def compare(self, compared: int, agreed: int) -> None:
        if self.compared is not None and self.agreed is not None:
            self.compared.increment(compared)
            self.agreed.increment(agreed)
        self.counts.compared += compared
        self.counts.agreed += agreed


class AppTraffic:
    """The routing state of one app with a traffic configuration (kept while the config is unchanged)."""

    __slots__ = (
        "app",
        "config",
        "fingerprint",
        "keys",
        "cum",
        "runs",
        "stats",
        "sticky_key",
        "shadow_key",
        "shadow_p",
        "shadow_runs",
        "shadow_stats",
        "policy",
        "weights",
        "exp3",
        "exp4",
        "_rand",
        "_flushed",
        "ended",
    )

    def __init__(
        self,
        app: str,
        config: TrafficConfig,
        metrics: MetricsRegistry,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.app = app
        self.config = config
        self.fingerprint = config.fingerprint()
        self.keys: list[tuple[str, str]] = [(t.model_name, t.model_version) for t in config.targets]
        self.cum = cumulative([t.weight for t in config.targets])
        self.runs = RunSchedule([t.weight for t in config.targets])
        self.stats = [TargetStats(metrics, app, m, v, "target") for m, v in self.keys]
        self.sticky_key = config.sticky_key
        s = config.shadow
        self.shadow_key = (s.model_name, s.model_version) if s is not None else None
        self.shadow_p = s.percent / 100.0 if s is not None else 0.0
        self.shadow_runs = RunSchedule([1.0 - self.shadow_p, self.shadow_p]) if self.shadow_p > 0 else None
        self.shadow_stats = (
            TargetStats(metrics, app, s.model_name, s.model_version, "shadow") if s is not None else None
        )
        sel = config.selection
        self.policy = sel.policy if sel is not None else None
        self.weights = LogWeights([t.key for t in config.targets]) if sel is not None else None
        self.exp3 = (
            Exp3(self.weights, sel.eta, sel.gamma) if sel and self.weights and sel.policy == "exp3" else None
        )
        self.exp4 = Exp4(self.weights, sel.eta) if sel and self.weights and sel.policy == "exp4" else None
        self._rand = rand
        self._flushed: list[int] = []
        self.ended = False  # the last choice ended its target's stretch of runs (RunSchedule.ended)

    def choose(self, sticky_value: str | None = None) -> int:
        """The target of the next request; :attr:`ended` then says whether it was the last of its
        target's stretch of runs (only runs end: a sticky, exp3 or single-target choice never does)."""
        self.ended = False
        if self.exp3 is not None:
            return self.exp3.choose(self._rand())
        if sticky_value is not None:
            return sticky_pick(self.cum, sticky_value)
        if len(self.cum) == 1:
            return 0
        runs = self.runs
        i = runs.next()
        self.ended = runs.ended
        return i

    def shadow_now(self) -> bool:
        runs = self.shadow_runs
        return runs is not None and runs.next() == 1

    def exp4_weights(self) -> list[float]:
        return self.weights.normalized() if self.weights is not None else [1.0] * len(self.keys)

    def stats_json(self) -> str | None:
        """The statistics row for the store, or None when nothing changed since the last one."""
        for s in self.stats:
            s.flush()
        counts = {s.key: s.counts for s in self.stats}
        if self.shadow_stats is not None:
            self.shadow_stats.flush()
            counts["shadow:" + self.shadow_stats.key] = self.shadow_stats.counts
        mark = [c.requests + c.compared for c in counts.values()]
        if mark == self._flushed:
            return None
        self._flushed = mark
        return encode_stats(self.fingerprint, counts)
