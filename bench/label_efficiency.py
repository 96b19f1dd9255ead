"""Label efficiency: held-out reward-model accuracy against human labels used, per selection
strategy (arrival, random, uncertainty, uncertainty + AI triage), with simulated raters.

The simulation, all of it seeded and shared by the strategies (same pool, same held-out pairs, same
rater noise per pair, same first batch draw) within a repeat:

* Texts. `--prompts` prompts, each answered twice by a simulated policy: a few sentences of
  neutral filler (a fixed list of sentences) with polite phrases (`app.oracles.POLITE_PHRASES`)
  sprinkled in. The policy is retrained between generations: generation g of `--generations`
  says polite phrases at the Poisson rate 0.5 + g / 2 per answer, and its pairs arrive after
  those of generation g-1 (the arrival order).
* Oracle. The shipped `app.oracles:prefers_polite` (polite phrases in the answer) decides every
  pair; pairs it ties are left out (they have no better side to be right about). The held-out
  pairs (`--held-out`) are drawn from every generation alike, never rated, and scored against the
  oracle itself.
* Raters. One simulated rater per pair reads the oracle's preference and flips it with
  probability `noise` (0 and 0.25 by default); a flip is drawn once per pair, so every strategy
  that asks for a pair gets the same answer.
* Reward model. A linear Bradley-Terry reward model r(x) = w . phi(x) on fixed features: phi is
  the vector of word counts over the pool's vocabulary (lower-cased `\\w+` tokens, computed once).
  It is refitted after every `--batch` human labels, on all of them, by Newton's method with a
  line search (from the previous fit: the loss is convex, so the start changes only the time) on the
  Bradley-Terry loss (the loss of TRL's RewardTrainer: -log sigmoid(r(chosen) - r(rejected))),
  with an L2 penalty `--l2`. Accuracy = share of held-out pairs whose oracle winner scores higher
  (a zero difference counts as half).
* Strategies pick each next batch of `--batch` pairs from the human queue: arrival (pool order),
  random, uncertainty (the largest 1 - |2p - 1|, p = sigmoid(r(a) - r(b)) under the current
  model, as worker/training/score.py's `margin` measure; the first batch is random), and
  uncertainty + triage.
* Triage. Before any rater starts, an AI judge labels every pool pair (app/services/triage/'s
  rules): a lexicon judge that knows only the first half of the polite phrases scores each
  answer by their count; its verdict is the side with more (a tie when equal), its margin the
  count difference, and a verdict is confident above `--triage-margin`. Of the confident pairs,
  `--audit-share` (exactly, `audit_count`) stay in the human queue as the audit, drawn at random;
  the others leave it, and their judge labels join the reward model's training data from the
  start (as `triaged: true` does for a reward run). Audited pairs come first in the uncertainty
  order, as in the app (`AUDIT_PRIORITY`), and cost human labels like any other. The figures count
  human labels only.

It prints, per noise level, the mean accuracy (over `--repeats` seeds) of each strategy at each
number of human labels, the labels each strategy needs for its mean curve to reach random's final
mean accuracy (and that as a share of random's own), the judge's accuracy on its confident pairs
and on the audited pairs the raters labelled, and writes the curves as one SVG (`--plot`).
`--smoke` runs a tiny size in seconds and exits non-zero when something breaks.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.oracles import POLITE_PHRASES, prefers_polite  # noqa: E402
from app.services.triage.queue import AUDIT_PRIORITY  # noqa: E402
from app.services.triage.rules import audit_count, confident  # noqa: E402
from app.web.charts import HEIGHT, WIDTH, line_chart  # noqa: E402

STRATEGIES = ("arrival", "random", "uncertainty", "uncertainty+triage")
LEGEND = {"arrival": "arrival", "random": "random", "uncertainty": "uncertainty",
          "uncertainty+triage": "uncert.+triage"}  # fmt: skip

FILLER = (
    "The answer depends on the details of your setup.",
    "Start with the simplest version and measure it.",
    "Most people find the second approach easier to maintain.",
    "Here is a short outline of the steps.",
    "First, collect the inputs you already have.",
    "Then compare the results with what you expected.",
    "A small example usually makes the idea clear.",
    "This works for lists, strings and other sequences.",
    "Keep the original data unchanged while you experiment.",
    "The documentation describes the remaining options.",
    "In practice the difference is rarely noticeable.",
    "You can also write a helper function for it.",
    "Check the edge cases, such as empty input.",
    "The same idea applies to larger projects.",
    "Performance matters only when the data is large.",
    "Write a test before changing the behaviour.",
    "It is a common question for beginners.",
    "There are two main ways to do this.",
    "The result is returned as a new object.",
    "Use the built-in tools where they exist.",
)
POLITE_SENTENCES = {
    "please": "Please let me know if anything is unclear.",
    "thanks": "Thanks for the interesting question.",
    "thank you": "Thank you for asking about this.",
    "kindly": "Kindly check the version you are using.",
    "appreciate": "I appreciate the detail in your question.",
    "appreciated": "Your patience is appreciated.",
    "grateful": "I am grateful you asked this.",
    "sorry": "Sorry if the first part is brief.",
    "apologies": "Apologies for the long answer.",
    "you're welcome": "You're welcome to ask a follow-up.",
    "you are welcome": "You are welcome to try both.",
    "happy to help": "I am happy to help with the next step.",
}
assert set(POLITE_SENTENCES) == set(POLITE_PHRASES), "one sentence per shipped polite phrase"
# Neutral words that fill the sentences between the fixed ones (features the reward model must
# learn to ignore).
WORDS = """
able about above across after again against almost along already also always among another answer
around away back because before behind below between both bring build call came carry case change
check clear close come common could course cover create data deal different does done down during
each early easy either else enough even ever every example fact fast field file final find first
follow form found free from full general give given good great group hand hard have help here high
hold idea important include inside instead keep kind know large last late later lead least leave
less level light line list little long look made main make many mean might more most move much must
name near need never next note number often once only open order other over part place plan point
possible power present problem quite rather read real result right same second seem several short
should show side simple since small some soon start state still such sure system take than that
their then there these thing think those though through time today together turn under until usual
value very want well what when where which while whole will with within without word work would
""".split()
TOPICS = ("reverse a list", "sort a dictionary", "read a file", "parse a date", "merge two tables",
          "format a number", "count words", "remove duplicates")  # fmt: skip

# The triage judge knows only the first half of the phrases the oracle counts.
JUDGE_PHRASES = POLITE_PHRASES[: len(POLITE_PHRASES) // 2]
_JUDGE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in JUDGE_PHRASES) + r")\b", re.IGNORECASE
)
_TOKEN_RE = re.compile(r"\w+")


def judge_score(text: str) -> float:
    return float(len(_JUDGE_RE.findall(text)))


@dataclass
class Pool:
    """The pairs of one repeat: features of both sides, the oracle's winner, the noisy rater
    labels and the judge's verdicts; the first `n_pool` rows are the rating pool in arrival
    order, the rest the held-out pairs."""

    features_a: np.ndarray
    features_b: np.ndarray
    oracle_a: np.ndarray  # True where the oracle prefers a
    rater_a: np.ndarray  # the simulated rater's answer (the oracle's, flipped with the noise)
    judge: list[dict]  # per pool pair: a triage verdict (rules.confident reads it)
    n_pool: int
    pool_order_random: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def _answer(rng: random.Random, rate: float) -> str:
    sentences = rng.sample(FILLER, rng.randint(1, 4))
    for _ in range(rng.randint(1, 4)):
        sentences.insert(
            rng.randint(0, len(sentences)), " ".join(rng.choices(WORDS, k=rng.randint(6, 14))) + "."
        )
    polite = sum(1 for _ in range(50) if rng.random() < rate / 50)  # ~ Poisson(rate)
    for _ in range(polite):
        sentences.insert(rng.randint(0, len(sentences)), POLITE_SENTENCES[rng.choice(POLITE_PHRASES)])
    return " ".join(sentences)


def make_texts(seed: int, n_pool: int, n_held: int, generations: int) -> tuple[list, list]:
    """(pool, held-out) lists of (prompt, a, b) whose oracle scores differ; the pool in arrival
    order (generation by generation), the held-out pairs from every generation alike."""
    rng = random.Random(f"texts:{seed}")

    def pairs(count: int, generation_of: Callable[[int], int]) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        while len(out) < count:
            rate = 0.5 + generation_of(len(out)) / 2
            prompt = f"How do I {rng.choice(TOPICS)}?"
            a, b = _answer(rng, rate), _answer(rng, rate)
            if prefers_polite(prompt, a) != prefers_polite(prompt, b):
                out.append((prompt, a, b))
        return out

    per_generation = math.ceil(n_pool / generations)
    pool = pairs(n_pool, lambda index: index // per_generation)
    held = pairs(n_held, lambda index: index % generations)
    return pool, held


def build_pool(seed: int, *, n_pool: int, n_held: int, generations: int) -> Pool:
    """The pairs of repeat `seed`, rated without noise (`with_noise` adds it)."""
    pool_texts, held_texts = make_texts(seed, n_pool, n_held, generations)
    texts = pool_texts + held_texts
    vocabulary: dict[str, int] = {}
    for _, a, b in texts:
        for token in _TOKEN_RE.findall(f"{a} {b}".lower()):
            vocabulary.setdefault(token, len(vocabulary))

    def featurise(text: str) -> np.ndarray:
        vector = np.zeros(len(vocabulary))
        for token in _TOKEN_RE.findall(text.lower()):
            vector[vocabulary[token]] += 1.0
        return vector

    features_a = np.stack([featurise(a) for _, a, _ in texts])
    features_b = np.stack([featurise(b) for _, _, b in texts])
    oracle_a = np.array([prefers_polite(p, a) > prefers_polite(p, b) for p, a, b in texts])
    judge = []
    for index, (_, a, b) in enumerate(pool_texts):
        sa, sb = judge_score(a), judge_score(b)
        choice = "A" if sa > sb else "B" if sb > sa else "tie"
        judge.append({"comparison_id": index, "choice": choice, "provenance": {"scores": [sa, sb]}})
    order = np.random.default_rng([seed, 7]).permutation(n_pool)
    return Pool(features_a, features_b, oracle_a, oracle_a.copy(), judge, n_pool, order)


def with_noise(pool: Pool, seed: int, noise: float) -> Pool:
    """The same pairs, each rater answer flipped with probability `noise` (drawn once per pair)."""
    flips = np.random.default_rng([seed, round(noise * 1000)]).random(len(pool.oracle_a)) < noise
    return replace(pool, rater_a=pool.oracle_a ^ flips)


def fit_bt(diffs: np.ndarray, l2: float, start: np.ndarray | None = None, iterations: int = 50) -> np.ndarray:
    """w minimising sum softplus(-w . d) + l2/2 |w|^2 over the rows d = phi(chosen) - phi(rejected)
    (the Bradley-Terry loss), by Newton's method with a backtracking line search from `start`
    (the loss is strictly convex: the start changes the time, not the minimum)."""
    w = np.zeros(diffs.shape[1]) if start is None else start.copy()
    if len(diffs) == 0:
        return np.zeros(diffs.shape[1])

    def loss(v: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -(diffs @ v)).sum() + 0.5 * l2 * v @ v)

    current = loss(w)
    for _ in range(iterations):
        p = np.exp(-np.logaddexp(0.0, -(diffs @ w)))  # sigmoid(margin): P(chosen beats rejected)
        gradient = -diffs.T @ (1.0 - p) + l2 * w
        hessian = (diffs.T * (p * (1.0 - p))) @ diffs + l2 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while (trial := loss(w - size * step)) > current - 1e-4 * size * float(
            gradient @ step
        ) and size > 1e-8:
            size /= 2
        w, current = w - size * step, trial
        if np.abs(size * step).max() < 1e-6:
            break
    return w


def accuracy(pool: Pool, w: np.ndarray) -> float:
    held = slice(pool.n_pool, None)
    diff = (pool.features_a[held] - pool.features_b[held]) @ w
    right = np.where(pool.oracle_a[held], diff > 0, diff < 0)
    return float(np.mean(np.where(np.abs(diff) < 1e-12, 0.5, right)))


def uncertainty(pool: Pool, w: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """1 - |2p - 1| with p = sigmoid(r(a) - r(b)): the score run's `margin` measure."""
    p = np.exp(-np.logaddexp(0.0, -((pool.features_a[ids] - pool.features_b[ids]) @ w)))
    return 1.0 - np.abs(2.0 * p - 1.0)


@dataclass
class Trace:
    labels: list[int]
    accuracy: list[float]
    judge_labels: int = 0
    audited: int = 0  # audit pairs the raters labelled
    audited_right: int = 0  # of those, where the judge agrees with the oracle


def run_strategy(
    pool: Pool, strategy: str, *, budget: int, batch: int, l2: float, seed: int,
    triage_margin: float, audit_share: float,
) -> Trace:  # fmt: skip
    """One strategy on one pool: the accuracy after every batch of human labels."""
    rng = np.random.default_rng([seed, 11])  # the same first batch for every strategy
    open_ids = list(range(pool.n_pool))
    judge_ids: list[int] = []
    audit: set[int] = set()
    if strategy.endswith("+triage"):
        sure = [v["comparison_id"] for v in pool.judge if confident(v, triage_margin)]
        n_audit = audit_count(audit_share, new=len(sure), earlier_confident=0, earlier_audited=0)
        audit = set(random.Random(f"audit:{seed}").sample(sure, n_audit))
        judge_ids = [cid for cid in sure if cid not in audit]
        taken = set(judge_ids)
        open_ids = [cid for cid in open_ids if cid not in taken]
    # the judge's labels, as (chosen - rejected) feature rows
    judge_rows = [
        (pool.features_a[c] - pool.features_b[c]) * (1 if pool.judge[c]["choice"] == "A" else -1)
        for c in judge_ids
    ]
    human_rows: list[np.ndarray] = []
    labelled: list[int] = []
    w = fit_bt(np.array(judge_rows).reshape(-1, pool.features_a.shape[1]), l2)
    trace = Trace([0], [accuracy(pool, w)], judge_labels=len(judge_ids))
    remaining = np.array(open_ids)
    random_rank = np.argsort(pool.pool_order_random)  # rank of each pair in the random order
    while len(labelled) < budget and len(remaining):
        take = min(batch, budget - len(labelled), len(remaining))
        if strategy == "arrival":
            chosen = remaining[np.argsort(remaining, kind="stable")[:take]]
        elif strategy == "random" or not labelled and not judge_ids:
            chosen = remaining[np.argsort(random_rank[remaining], kind="stable")[:take]]
        else:
            score = uncertainty(pool, w, remaining) + rng.random(len(remaining)) * 1e-9  # break ties
            score[np.isin(remaining, list(audit))] = AUDIT_PRIORITY  # the audit first
            chosen = remaining[np.argsort(-score, kind="stable")[:take]]
        chosen_set = set(chosen.tolist())
        remaining = np.array([c for c in remaining if c not in chosen_set], dtype=int)
        for c in chosen.tolist():
            sign = 1 if pool.rater_a[c] else -1
            human_rows.append((pool.features_a[c] - pool.features_b[c]) * sign)
            labelled.append(c)
            if c in audit:
                trace.audited += 1
                trace.audited_right += (pool.judge[c]["choice"] == "A") == bool(pool.oracle_a[c])
        w = fit_bt(np.array(human_rows + judge_rows), l2, start=w)
        trace.labels.append(len(labelled))
        trace.accuracy.append(accuracy(pool, w))
    return trace


def labels_to_reach(labels: Sequence[int], curve: Sequence[float], target: float) -> int | None:
    for x, y in zip(labels, curve, strict=True):
        if y >= target - 1e-12:
            return x
    return None


def write_svg(path: Path, charts: list[str]) -> None:
    body = "".join(f'<g transform="translate(0,{index * HEIGHT})">{c}</g>' for index, c in enumerate(charts))
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT * len(charts)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT * len(charts)}"><rect width="100%" height="100%" fill="white"/>'
        f"{body}</svg>\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=1600, help="pairs in the rating pool")
    parser.add_argument(
        "--held-out", type=int, default=600, help="held-out pairs the accuracy is measured on"
    )
    parser.add_argument("--generations", type=int, default=4, help="policy generations the pool arrives in")
    parser.add_argument("--budget", type=int, default=300, help="human labels per run")
    parser.add_argument("--batch", type=int, default=25, help="human labels between retrainings (B)")
    parser.add_argument("--repeats", type=int, default=6, help="seeds; the curves are their means")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.25], help="rater flip rates")
    # 308 features and up to 300 labels: a light penalty (1) overfits at 25% noise, so that every
    # curve falls as the labels near the features' count; 30 keeps them rising at both noise levels.
    parser.add_argument("--l2", type=float, default=30.0, help="L2 penalty of the reward model")
    parser.add_argument(
        "--triage-margin", type=float, default=1.5, help="judge margin above which it is sure"
    )
    parser.add_argument(
        "--audit-share", type=float, default=0.1, help="share of sure pairs audited by humans"
    )
    parser.add_argument("--plot", type=Path, default=Path("label_efficiency.svg"), help="SVG of the curves")
    parser.add_argument("--smoke", action="store_true", help="a tiny size, seconds: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompts, args.held_out, args.budget, args.batch, args.repeats = 120, 60, 40, 20, 1
        args.plot = Path(tempfile.mkdtemp(prefix="label_efficiency_")) / "curves.svg"
    started = time.monotonic()
    charts: list[str] = []
    pools = [
        build_pool(repeat, n_pool=args.prompts, n_held=args.held_out, generations=args.generations)
        for repeat in range(args.repeats)
    ]
    for noise in args.noise:
        traces: dict[str, list[Trace]] = {s: [] for s in STRATEGIES}
        sure = sure_right = 0
        for repeat in range(args.repeats):
            pool = with_noise(pools[repeat], repeat, noise)
            for v in pool.judge:
                if confident(v, args.triage_margin):
                    sure += 1
                    sure_right += (v["choice"] == "A") == bool(pool.oracle_a[v["comparison_id"]])
            for strategy in STRATEGIES:
                traces[strategy].append(run_strategy(
                    pool, strategy, budget=args.budget, batch=args.batch, l2=args.l2, seed=repeat,
                    triage_margin=args.triage_margin, audit_share=args.audit_share,
                ))  # fmt: skip
        labels = traces["random"][0].labels
        means = {}
        for strategy, runs in traces.items():
            if any(t.labels != labels for t in runs):
                raise SystemExit(f"{strategy}: the runs did not all reach {args.budget} human labels")
            means[strategy] = [float(np.mean([t.accuracy[i] for t in runs])) for i in range(len(labels))]
        target = means["random"][-1]
        random_needs = labels_to_reach(labels, means["random"], target)
        print(f"\nnoise {noise:.0%}: held-out accuracy (mean of {args.repeats} seeds) vs human labels")
        print(f"{'human labels':<18}" + "".join(f"{x:>7}" for x in labels))
        for strategy in STRATEGIES:
            print(f"{strategy:<18}" + "".join(f"{y:7.3f}" for y in means[strategy]))
        print(f"random's final accuracy {target:.3f}, first reached by random at {random_needs} labels")
        for strategy in STRATEGIES:
            needs = labels_to_reach(labels, means[strategy], target)
            share = f"{needs / random_needs:.0%} of random's" if needs is not None and random_needs else "-"
            print(f"  {strategy:<18} reaches it at {needs if needs is not None else 'never':>5} "
                  f"human labels ({share})")  # fmt: skip
        triaged = traces["uncertainty+triage"]
        audited, audited_right = sum(t.audited for t in triaged), sum(t.audited_right for t in triaged)
        print(f"  triage: {sure / args.repeats:.0f} of {args.prompts} pool pairs judged sure (mean), "
              f"{np.mean([t.judge_labels for t in triaged]):.0f} off the human queue; the judge is right "
              f"on {sure_right / max(sure, 1):.1%} of its sure pairs; the raters labelled {audited} "
              f"audited pairs ({audited_right} where the judge is right)")  # fmt: skip
        charts.append(line_chart(
            {LEGEND[s]: list(zip(labels, means[s], strict=True)) for s in STRATEGIES},
            title=f"Held-out accuracy vs human labels, rater noise {noise:.0%}",
            x_label="human labels", y_label="held-out accuracy",
        ))  # fmt: skip
        if args.smoke and not all(0.0 <= y <= 1.0 for m in means.values() for y in m):
            raise SystemExit("an accuracy outside [0, 1]")
    write_svg(args.plot, charts)
    print(f"\ncurves: {args.plot}   ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
