"""The pool canary prompts are drawn from: short, everyday questions whose answers differ per prompt.

Combined from templates and fillers, the pool holds thousands of distinct prompts, so a node cannot
learn a list of canaries and answer only those honestly. The questions have short, specific answers
(a number, a word, a name), which makes a node that answers every prompt with the same text stand
out, and keeps a canary cheap (``max_tokens`` is small).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

__all__ = ["draw_prompt", "pool_size"]

_WORDS = (
    "apple", "river", "window", "garden", "rocket", "pencil", "winter", "candle", "mirror", "forest",
    "bridge", "silver", "planet", "orange", "castle", "butter", "thunder", "violin", "harbor", "meadow",
    "lantern", "pepper", "island", "compass", "feather", "tiger", "marble", "canyon", "blanket", "shadow",
)  # fmt: skip
_COUNTRIES = (
    "France", "Japan", "Brazil", "Canada", "Kenya", "Norway", "Peru", "Egypt", "India", "Spain",
    "Chile", "Italy", "Ghana", "Poland", "Mexico", "Vietnam", "Sweden", "Morocco", "Greece", "Turkey",
)  # fmt: skip
_LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese", "Dutch")
_OPENERS = ("", "", "Quick question: ", "Hi! ", "Please help: ", "Hey, ", "I wonder: ", "Tell me: ")
_CLOSERS = ("", "", " Thanks!", " Keep it short.", " Be brief.", " One line please.")
_TEMPLATES = (
    "What is {a} plus {b}? Answer with the number only.",
    "What is {a} times {b}?",
    "Spell the word '{w}' backwards.",
    "Give one word that rhymes with '{w}'.",
    "Translate the word '{w}' into {lang}.",
    "Write one short sentence that uses the word '{w}'.",
    "What is the capital of {country}?",
    "Name a famous dish from {country}.",
    "How many letters are in the word '{w}'?",
    "Is {a} an even or an odd number?",
    "Give a synonym for '{w}'.",
    "What continent is {country} in?",
    "Count from {a} to {c}.",
    "Write the word '{w}' in capital letters.",
    "Which is larger, {a} or {b}?",
    "Describe a {w} in five words.",
)


def pool_size() -> int:
    """A lower bound on the number of distinct prompts (for docs and tests)."""
    fillers = min(len(_WORDS), len(_COUNTRIES))
    return len(_TEMPLATES) * fillers * (len(_OPENERS) - 1) * (len(_CLOSERS) - 1)


def draw_prompt(rng: random.Random) -> str:
    """One prompt, drawn at random."""
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    question = rng.choice(_TEMPLATES).format(
        a=a,
        b=b,
        c=a + rng.randint(3, 6),
        w=rng.choice(_WORDS),
        lang=rng.choice(_LANGUAGES),
        country=rng.choice(_COUNTRIES),
    )
    return rng.choice(_OPENERS) + question + rng.choice(_CLOSERS)
