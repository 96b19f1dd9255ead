"""Oracles: scripted preferences for dry runs and tests.

An oracle is any callable `score(prompt: str, completion: str) -> float`; the higher score wins.
`rlhf simulate --oracle MODULE:FUNCTION` labels a project with one, through the same pages human
raters use, so the whole loop (labels -> reward model -> PPO/DPO -> new pairs) can be exercised
on a preference whose right answer is known, e.g. "more bananas is better".

Shipped here:

* `prefers_word`: counts occurrences of `TARGET_WORD` (default "banana"), whole words, any case.
  `make_prefers_word("kiwi")` makes one for another word.
* `prefers_shorter` / `prefers_longer`: minus / plus the number of words.
* `prefers_polite`: counts polite phrases (please, thanks, thank you, ...).

Your own: put a function in any importable module and pass `my_module:my_score`.

Edit rules: how a simulated writer edits a text (`rlhf simulate --edit-rule MODULE:FUNCTION`, any
callable `edit(prompt: str, text: str) -> str`). A write task's answer is the rule applied to the
best of the prompt's model samples by the oracle; an improve task's, the rule applied to the
completion shown. Shipped: `add_target_word` (appends `TARGET_WORD` where the text lacks it, so
that `prefers_word` scores the edit higher), `keep` (returns the text as it is: a lazy writer).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable

Oracle = Callable[[str, str], float]

TARGET_WORD = "banana"  # what `prefers_word` counts; read at call time
POLITE_PHRASES = (
    "please",
    "thanks",
    "thank you",
    "kindly",
    "appreciate",
    "appreciated",
    "grateful",
    "sorry",
    "apologies",
    "you're welcome",
    "you are welcome",
    "happy to help",
)
_POLITE_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in POLITE_PHRASES) + r")\b",
    re.IGNORECASE,
)


class OracleError(ValueError):
    """A bad oracle spec; `str()` says what is wrong and how to write it."""


def count_word(text: str, word: str) -> int:
    """Whole-word, case-insensitive occurrences of `word` in `text`."""
    return len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE))


def make_prefers_word(word: str) -> Oracle:
    """An oracle that scores a completion by how often it says `word`."""
    if not word.strip():
        raise ValueError("the target word is empty")
    word = word.strip()

    def prefers_word(prompt: str, completion: str) -> float:
        return float(count_word(completion, word))

    prefers_word.__doc__ = f"Occurrences of {word!r} in the completion."
    prefers_word.__name__ = f"prefers_word[{word}]"
    return prefers_word


def prefers_word(prompt: str, completion: str) -> float:
    """Occurrences of `TARGET_WORD` (default "banana") in the completion."""
    return float(count_word(completion, TARGET_WORD))


def prefers_shorter(prompt: str, completion: str) -> float:
    """Minus the number of words: the shorter completion wins."""
    return -float(len(completion.split()))


def prefers_longer(prompt: str, completion: str) -> float:
    """The number of words: the longer completion wins."""
    return float(len(completion.split()))


def prefers_polite(prompt: str, completion: str) -> float:
    """Polite phrases (please, thanks, thank you, sorry, ...) in the completion."""
    return float(len(_POLITE_RE.findall(completion)))


ORACLES: dict[str, Oracle] = {
    "prefers_word": prefers_word,
    "prefers_shorter": prefers_shorter,
    "prefers_longer": prefers_longer,
    "prefers_polite": prefers_polite,
}


EditRule = Callable[[str, str], str]


def add_target_word(prompt: str, text: str) -> str:
    """The text with `TARGET_WORD` appended where it does not say it yet."""
    text = text.strip()
    if count_word(text, TARGET_WORD):
        return text
    return f"{text} {TARGET_WORD}".strip()


def keep(prompt: str, text: str) -> str:
    """The text unchanged (a lazy writer, for the lazy-writer checks)."""
    return text


EDIT_RULES: dict[str, EditRule] = {"add_target_word": add_target_word, "keep": keep}


def load_edit_rule(spec: str) -> EditRule:
    """Resolve `module:function` (or a shipped rule's bare name) to an edit rule."""
    name = (spec or "").strip()
    if ":" not in name and name in EDIT_RULES:
        return EDIT_RULES[name]
    if ":" not in name:
        shipped = ", ".join(f"app.oracles:{rule}" for rule in EDIT_RULES)
        raise OracleError(f"edit rule {spec!r} is not of the form MODULE:FUNCTION (shipped: {shipped})")
    try:
        return load_oracle(name)  # type: ignore[return-value]  # the same (prompt, text) call
    except OracleError as error:
        raise OracleError(str(error).replace("oracle", "edit rule", 1)) from None


def load_oracle(spec: str) -> Oracle:
    """Resolve `module:function` (e.g. `app.oracles:prefers_word`) to an oracle.

    A bare name of a shipped oracle (`prefers_shorter`) is accepted as a shorthand for
    `app.oracles:<name>`. Raises `OracleError` with a readable message for anything else.
    """
    spec = (spec or "").strip()
    shipped = ", ".join(f"app.oracles:{name}" for name in ORACLES)
    if ":" not in spec:
        if spec in ORACLES:
            return ORACLES[spec]
        raise OracleError(f"oracle {spec!r} is not of the form MODULE:FUNCTION (shipped: {shipped})")
    module_name, _, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute:
        raise OracleError(f"oracle {spec!r}: both MODULE and FUNCTION are needed (MODULE:FUNCTION)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (module_name == error.name or module_name.startswith(error.name + ".")):
            raise OracleError(
                f"oracle {spec!r}: no module named {module_name!r} (is it on PYTHONPATH?)"
            ) from None
        raise OracleError(f"oracle {spec!r}: importing {module_name!r} failed: {error}") from error
    except Exception as error:  # noqa: BLE001 - any import-time failure is the spec's problem
        raise OracleError(
            f"oracle {spec!r}: importing {module_name!r} failed: {error.__class__.__name__}: {error}"
        ) from error
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            hint = f" (shipped: {shipped})" if module_name == __name__ else ""
            raise OracleError(f"oracle {spec!r}: {module_name!r} has no {attribute!r}{hint}")
        target = getattr(target, part)
    if not callable(target):
        raise OracleError(f"oracle {spec!r}: {attribute!r} is a {type(target).__name__}, not a function")
    _check_signature(spec, target)
    return target  # type: ignore[return-value]


def _check_signature(spec: str, function: Callable[..., object]) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        signature.bind("prompt", "completion")
    except TypeError:
        raise OracleError(
            f"oracle {spec!r}: takes {signature}, but oracles are called as "
            "score(prompt: str, completion: str) -> float"
        ) from None
