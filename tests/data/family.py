"""Tokenizers that carry a model family's official chat template, built from the project tokenizer.

The official templates are stored under official_templates/ (one Jinja file per family, each naming the model
repository it comes from); the family's marker tokens are added to a copy of the project tokenizer so every
marker is one token, as in the real tokenizer.
"""

import copy
from pathlib import Path

from tokenizers import AddedToken

from primus_bridge.data.records import Conversation, Turn

OFFICIAL_TEMPLATES = Path(__file__).parent / "official_templates"


def official_template(name: str) -> str:
    """The Jinja text of official_templates/<name>.jinja (its first line, a `{#- source -#}` comment, included)."""
    return (OFFICIAL_TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def family_tokenizer(base, template: str, bos: str | None, eos: str, special: tuple[str, ...] = (),
                     plain: tuple[str, ...] = ()):
    """A copy of `base` with `special` (and non-special `plain`) tokens added, the family's bos/eos, and `template`
    (Jinja text) as its chat_template."""
    family = copy.deepcopy(base)
    markers = [m for m in (bos, eos, *special) if m]
    family.add_tokens([AddedToken(m, special=True, normalized=False) for m in markers], special_tokens=True)
    if plain:
        family.add_tokens([AddedToken(m, special=False, normalized=False) for m in plain])
    family.bos_token, family.eos_token = bos, eos
    family.chat_template = template
    return family


WHERE = "chats.jsonl:7"
CHATS = {  # the chat cases every family is checked on
    "single turn": Conversation(None, (Turn("What is 2 + 2?", "2 + 2 = 4."),), WHERE, 0),
    "multi-turn with system": Conversation("You are brief.", (Turn("Hi!", "Hello!"),
                                                               Turn("Capital of Japan?", "Tokyo.")), WHERE, 1),
    "empty system": Conversation("", (Turn("Hi", "Hello"), Turn("Bye", "Bye!")), WHERE, 2),
    "whitespace around content": Conversation(" Padded system \n", (
        Turn("  spaced question \n", "\n spaced answer  "), Turn("\tnext\t", " ok \n")), WHERE, 3),
    "code": Conversation(None, (Turn("Fix:\n```python\nfor i in range(3):\n\tprint(i)\n```\n",
                                     "```python\nfor i in range(3):\n    print(i)\n```\nIndent with spaces."),),
                         WHERE, 4),
    "CJK with input": Conversation("你是助手。", (Turn("把下面的词翻译成英文。", "apple", "苹果"),
                                                 Turn("再来一个：水", "water")), WHERE, 5),
}
