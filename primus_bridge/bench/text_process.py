"""A seeded, stationary synthetic text source for loss-curve comparisons: text that is learnable but never repeats.

Two runs compared step by step (e.g. an FP8 frozen base against bf16) need a loss that stays well above zero:
on data repeated until it is memorised, the loss falls to 1e-4 and relative gaps of near-zero losses are noise.
This process has structure to learn and an entropy rate of about 4.2 nats per word (1.3 per trained token of the
shipped tokenizer: benchmarks/fp8_loss_cpu_check.py estimates it from the process's own probabilities), so the
loss can only fall towards that rate, never to zero:

- a lexicon of WORDS pseudo-words built from syllables (the short ones the frequent ones, as in natural language),
  with Zipf-distributed (1/rank) frequencies;
- first-order Markov transitions: each word (and the sentence start) has its own SUCCESSORS likely next words,
  drawn from the Zipf law, with weights 1/position among them; with probability ESCAPE the next word is drawn
  from the Zipf law instead;
- sentences of 4 to 20 words with commas, ending in '.', '?' or '!'; paragraphs of 2 to 5 sentences.

A record is an alpaca record: a drawn sentence as the instruction, input "", one to three drawn paragraphs as
the output. Every record is freshly drawn, so no record repeats. The lexicon and transitions come from one seeded
generator, the text from another; both are `random.Random` seeded with strings (hashed with SHA-512, the same on
every Python 3) and only its `random()` is used, with weights 1/k (correctly rounded divisions), so a seed gives
the same bytes on every machine. The first n records of a seed are the same whatever the count asked for.
"""

import bisect
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from ..utils.atomic import atomic_write_text

SEED = 0
WORDS = 4000
SUCCESSORS = 64
ESCAPE = 0.1
"""Probability that the next word ignores the current one (drawn from the Zipf law over the whole lexicon)."""
COMMA = 0.08
ENDINGS = ((".", 0.85), ("?", 0.1), ("!", 0.05))
SENTENCE_WORDS = (4, 20)
PARAGRAPH_SENTENCES = (2, 5)
RECORD_PARAGRAPHS = (1, 3)
ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "st", "tr", "ch",
          "sh", "th", "gl", "pl")
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ea")
CODAS = ("", "", "", "n", "r", "s", "l", "m", "nd", "st")
START = WORDS
"""The Markov state of a sentence's first word."""
DESCRIPTION = (f"the bench's synthetic text process (primus_bridge/bench/text_process.py, seed {SEED}): alpaca "
               f"records freshly drawn from a first-order Markov chain over {WORDS} Zipf-distributed pseudo-words "
               "with sentences and paragraphs; no record repeats, so the loss falls towards the process's entropy "
               "rate (about 4.2 nats a word, 1.3 a trained token of the shipped tokenizer), not to zero by "
               "memorisation")


def _cumulative(weights: list[float]) -> list[float]:
    return list(accumulate(weights))


def _draw(cumulative: list[float], rng: random.Random) -> int:
    """An index drawn with the weights whose running sums are `cumulative`."""
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _uniform(low: int, high: int, rng: random.Random) -> int:
    """An integer in [low, high], each equally likely."""
    return low + int(rng.random() * (high - low + 1))


ZIPF = [1.0 / rank for rank in range(1, WORDS + 1)]
ZIPF_CUMULATIVE = _cumulative(ZIPF)
SUCCESSOR_WEIGHTS = [1.0 / rank for rank in range(1, SUCCESSORS + 1)]
SYLLABLES_CUMULATIVE = _cumulative([3.0, 5.0, 2.0])
"""Running weights of words of 1, 2 and 3 syllables."""


def _lexicon(rng: random.Random) -> list[str]:
    """WORDS distinct pseudo-words of 1 to 3 syllables, shortest first (rank 1 is the most frequent)."""
    words: dict[str, None] = {}
    while len(words) < WORDS:
        syllables = 1 + _draw(SYLLABLES_CUMULATIVE, rng)
        word = "".join(ONSETS[int(rng.random() * len(ONSETS))] + VOWELS[int(rng.random() * len(VOWELS))]
                       + CODAS[int(rng.random() * len(CODAS))] for _ in range(syllables))
        words.setdefault(word)
    return sorted(words, key=len)


def _successors(rng: random.Random) -> list[int]:
    """SUCCESSORS word ranks drawn from the Zipf law (a rank may come twice: its weights add up)."""
    return [_draw(ZIPF_CUMULATIVE, rng) for _ in range(SUCCESSORS)]


@dataclass(frozen=True)
class Structure:
    """What a model can learn: the lexicon and, for each word and the sentence start, its likely successors."""

    words: list[str]
    successors: list[list[int]]
    """successors[state]: word ranks; state START is the sentence start."""
    next_probability: list[dict[int, float]]
    """next_probability[state][rank]: the probability of a word given the state (for the information content)."""


def build_structure(seed: int = SEED) -> Structure:
    rng = random.Random(f"primus-bridge text process {seed}: structure")
    words = _lexicon(rng)
    successors = [_successors(rng) for _ in range(WORDS + 1)]
    total = sum(SUCCESSOR_WEIGHTS)
    probabilities = []
    for ranks in successors:
        chance: dict[int, float] = {}
        for rank, weight in zip(ranks, SUCCESSOR_WEIGHTS):
            chance[rank] = chance.get(rank, 0.0) + (1 - ESCAPE) * weight / total
        probabilities.append(chance)
    return Structure(words, successors, probabilities)


class TextProcess:
    """Draws records. `nats` sums the information content (-log probability) of every choice made, `output_nats`
    that of the outputs' choices: over many records, their mean estimates the entropy per record."""

    def __init__(self, seed: int = SEED):
        self.structure = build_structure(seed)
        self.rng = random.Random(f"primus-bridge text process {seed}: text")
        self.nats = 0.0
        self.output_nats = 0.0
        self._successor_cumulative = _cumulative(SUCCESSOR_WEIGHTS)
        self._ending_cumulative = _cumulative([p for _, p in ENDINGS])

    def _next_word(self, state: int) -> int:
        if self.rng.random() < ESCAPE:
            rank = _draw(ZIPF_CUMULATIVE, self.rng)
        else:
            rank = self.structure.successors[state][_draw(self._successor_cumulative, self.rng)]
        chance = self.structure.next_probability[state].get(rank, 0.0) + ESCAPE * ZIPF[rank] / ZIPF_CUMULATIVE[-1]
        self.nats -= math.log(chance)
        return rank

    def _count(self, low: int, high: int) -> int:
        self.nats += math.log(high - low + 1)
        return _uniform(low, high, self.rng)

    def _comma(self) -> bool:
        comma = self.rng.random() < COMMA
        self.nats -= math.log(COMMA if comma else 1 - COMMA)
        return comma

    def sentence(self) -> str:
        state, parts = START, []
        length = self._count(*SENTENCE_WORDS)
        for position in range(length):
            state = self._next_word(state)
            word = self.structure.words[state]
            parts.append(word.capitalize() if position == 0 else word)
            if position < length - 1 and self._comma():
                parts[-1] += ","
        ending = _draw(self._ending_cumulative, self.rng)
        self.nats -= math.log(ENDINGS[ending][1])
        return " ".join(parts) + ENDINGS[ending][0]

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self._count(*PARAGRAPH_SENTENCES)))

    def record(self) -> dict:
        instruction = self.sentence()
        before = self.nats
        output = "\n\n".join(self.paragraph() for _ in range(self._count(*RECORD_PARAGRAPHS)))
        self.output_nats += self.nats - before
        return {"instruction": instruction, "input": "", "output": output}


def text_process_records(count: int, seed: int = SEED) -> Iterator[dict]:
    """The first `count` records of the process with this seed."""
    process = TextProcess(seed)
    for _ in range(count):
        yield process.record()


def write_text_process(count: int, out: Path, seed: int = SEED) -> Path:
    """`count` records as alpaca JSONL (written atomically)."""
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in text_process_records(count, seed)]
    atomic_write_text(out, "".join(lines))
    return out
