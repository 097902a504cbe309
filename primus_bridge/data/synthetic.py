"""Generated records for throughput benchmarks and large-input tests.

synthetic_alpaca: shaped like Stanford Alpaca (an instruction of about a dozen words, an input on a third of
them, a reply of two to four sentences), about 140 tokens a sample. synthetic_chats: sharegpt conversations of
real SFT length (one to four turns, a few hundred to a couple of thousand tokens, log-normally distributed like
the sample lengths of public chat SFT sets). Both draw from the shipped sample data's domains (arithmetic, unit
conversion, capitals, translation), so the project tokenizer sees text like the text it was trained on.
"""

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Egypt", "Cairo"),
            ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Greece", "Athens"), ("Poland", "Warsaw")]
UNITS = [("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("hours", "minutes", 60),
         ("kilograms", "grams", 1000), ("days", "hours", 24), ("liters", "milliliters", 1000)]
WORDS = [("apple", "苹果"), ("water", "水"), ("book", "书"), ("river", "河"), ("teacher", "老师"), ("flower", "花")]


def _arithmetic(rng: random.Random) -> dict:
    a, b, c = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 9)
    return {"instruction": f"What is {a} + {b}? Then multiply the result by {c} and explain each step.",
            "input": "",
            "output": f"First add the two numbers: {a} + {b} = {a + b}. Then multiply by {c}: {a + b} * {c} = "
                      f"{(a + b) * c}. The answer is {(a + b) * c}."}


def _conversion(rng: random.Random) -> dict:
    src, dst, factor = rng.choice(UNITS)
    n = rng.randint(2, 500)
    return {"instruction": f"Convert the amount below from {src} to {dst} and show the calculation.",
            "input": f"The amount is {n} {src}.",
            "output": f"There are {factor} {dst} in one of the {src}. So {n} {src} is {n} * {factor} = "
                      f"{n * factor} {dst}."}


def _capital(rng: random.Random) -> dict:
    (country, city), (other, other_city) = rng.sample(CAPITALS, 2)
    return {"instruction": f"What is the capital of {country}, and what is the capital of {other}?",
            "input": "",
            "output": f"The capital of {country} is {city}. The capital of {other} is {other_city}. "
                      f"Both {city} and {other_city} are large cities."}


def _translation(rng: random.Random) -> dict:
    (en, zh), (en2, zh2) = rng.sample(WORDS, 2)
    return {"instruction": "Translate the two words below into Chinese and use each one in a short sentence.",
            "input": f"{en}, {en2}",
            "output": f"\"{en}\" is \"{zh}\" in Chinese, and \"{en2}\" is \"{zh2}\". I see the {en} near the "
                      f"{en2}. 我看见{zh}和{zh2}。"}


MAKERS = (_arithmetic, _conversion, _capital, _translation)
CLOSINGS = (
    "You can check the result by doing the same calculation again in the other direction.",
    "Let me know if you would like another example or a longer explanation of the answer.",
    "This is a short answer, and each step above can be checked on its own.",
)


def synthetic_alpaca(count: int, seed: int = 0) -> Iterator[dict]:
    """`count` alpaca records, the same for the same seed."""
    rng = random.Random(seed)
    for _ in range(count):
        record = rng.choice(MAKERS)(rng)
        record["output"] += " " + rng.choice(CLOSINGS)
        yield record


CHARS_PER_TOKEN = 2.5
"""About how many characters of this text make one token of the project tokenizer (measured, template text
included); only used to aim the generated lengths."""
SYSTEM_PROMPTS = ("You are a helpful assistant that answers briefly.",
                  "You are a patient teacher. Explain every step of the calculation.")


def _reply(rng: random.Random, chars: int) -> str:
    """Paragraphs of worked answers and closing remarks, about `chars` characters long."""
    sentences, size = [], 0
    while size < chars:
        sentence = rng.choice(MAKERS)(rng)["output"] if rng.random() < 0.75 else rng.choice(CLOSINGS)
        sentences.append(sentence + ("\n\n" if rng.random() < 0.25 else " "))
        size += len(sentences[-1])
    return "".join(sentences).rstrip()


def synthetic_chats(count: int, seed: int = 0, median_tokens: int = 700) -> Iterator[dict]:
    """`count` sharegpt conversations, the same for the same seed: sample lengths log-normal around
    median_tokens (sigma 0.6, clipped to 128..3072 tokens), 1-4 turns, a system prompt on a third of them."""
    rng = random.Random(seed)
    for _ in range(count):
        tokens = min(max(rng.lognormvariate(math.log(median_tokens), 0.6), 128), 3072)
        turns = rng.choice((1, 1, 2, 2, 3, 4))
        reply_chars = int(tokens * CHARS_PER_TOKEN / turns)
        messages = []
        for _ in range(turns):
            maker = rng.choice(MAKERS)(rng)
            question = maker["instruction"] + (f" {maker['input']}" if maker["input"] else "")
            messages += [{"from": "human", "value": question}, {"from": "gpt", "value": _reply(rng, reply_chars)}]
        system = {"system": rng.choice(SYSTEM_PROMPTS)} if rng.random() < 1 / 3 else {}
        yield system | {"conversations": messages}


def write_jsonl(path: str | Path, records) -> Path:
    """Write records as JSON Lines (a plain write: this is generated test input, not a product output)."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
