"""`primus-bridge chat --model HF_EXPORT_OR_ADAPTER_OR_CHECKPOINT`: talk to a trained model.

On a terminal, without --prompt / --input, it is an interactive chat that keeps the conversation's history
(/reset starts over, /exit or Ctrl-D ends). With --prompt TEXT (repeatable) and/or --input FILE.jsonl (records
{"prompt": ...} or {"messages": [...]} in the openai layout) it answers each and writes one JSON line per
answer to --output (default stdout): the input record plus response, finish_reason, prompt_tokens and
completion_tokens.

The prompt is rendered with the template the model was trained with (recorded in its checkpoint and export;
--template overrides it, with a warning when it differs) and tokenized as training tokenized it; generation
stops at the template's end-of-reply token or the tokenizer's EOS. A checkpoint of either engine is first
exported to HF in a temporary folder (removed afterwards).
"""

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import EXPORT_MARKER, MARKER_FILE
from ..cli.errors import run_verb, wants_debug
from ..cli.parser import ArgumentParser
from ..config import ConfigError
from ..data.records import Conversation, Turn
from ..data.templates import TEMPLATES
from .backends import BACKENDS, DTYPES, Reply, Sampling, load_backend, require_backend
from .inputs import ChatRequest, prompt_request, read_requests
from .model_source import ModelSource, note, open_model
from .prompt import ChatFormat

BATCH = 32
"""Requests handed to the backend at once (vLLM batches them; Transformers answers one by one)."""
EXIT_COMMANDS = ("/exit", "/quit")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="primus-bridge chat", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="an HF export, a PEFT adapter folder, or a checkpoint folder (megatron or hf engine)")
    parser.add_argument("--base_model", help="the base model of a PEFT adapter (default: the one it records)")
    parser.add_argument("--template", choices=list(TEMPLATES),
                        help="prompt template (default: the one the model was trained with)")
    parser.add_argument("--template_date", metavar="'26 Jul 2024'",
                        help="the date templates such as llama3.1 write (default: the one recorded in training)")
    parser.add_argument("--system", help="system prompt (for conversations that bring none)")
    parser.add_argument("--prompt", action="append", default=[], help="answer this prompt (repeatable); batch mode")
    parser.add_argument("--input", metavar="FILE.jsonl", help="answer each record of this JSON Lines file")
    parser.add_argument("--output", metavar="FILE.jsonl", help="where batch answers go (default stdout)")
    parser.add_argument("--max_new_tokens", type=int, default=256, help="tokens per reply at most (default 256)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature; 0 (the default) decodes greedily")
    parser.add_argument("--do_sample", action="store_true", help="sample (temperature 1.0 unless given)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (default 1.0: off)")
    parser.add_argument("--top_k", type=int, default=0, help="sample among the k likeliest tokens (default 0: off)")
    parser.add_argument("--seed", type=int, help="random seed (sampling)")
    parser.add_argument("--backend", choices=BACKENDS, default="transformers",
                        help="generation backend (default transformers; vllm when installed)")
    parser.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="weights dtype (default: the model's)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def sampling_from(args: argparse.Namespace) -> Sampling:
    problems = []
    if args.do_sample and args.temperature == 0:
        problems.append("--do_sample with --temperature 0: give a temperature above 0, or drop --do_sample")
    temperature = args.temperature if args.temperature is not None else (1.0 if args.do_sample else 0.0)
    for bad, message in ((args.max_new_tokens < 1, "--max_new_tokens: must be at least 1"),
                         (temperature < 0, "--temperature: must be 0 (greedy) or more"),
                         (not 0 < args.top_p <= 1, "--top_p: must be in (0, 1]"),
                         (args.top_k < 0, "--top_k: must be 0 (off) or more")):
        if bad:
            problems.append(message)
    if problems:
        raise ConfigError(problems)
    return Sampling(args.max_new_tokens, temperature, args.top_p, args.top_k, args.seed)


def choose_template(source: ModelSource, override: str | None, tokenizer, model: str,
                    date_override: str | None = None) -> tuple[str, str | None]:
    """(template name, template_date): the recorded ones, or --template (warning when it differs) and
    --template_date, or the tokenizer's own chat_template for a model that records none."""
    trained = source.trained
    date = date_override or (trained.template_date if trained else None)
    if override:
        if trained and trained.name != override:
            print(f"warning: --template {override} differs from the template the model was trained with "
                  f"({trained.name}, recorded in {trained.recorded_in}); its replies may not be what it learned",
                  file=sys.stderr)
        return override, date
    if trained:
        note(f"template {trained.name} (recorded in {trained.recorded_in})")
        return trained.name, date
    if getattr(tokenizer, "chat_template", None):
        note(f"{model} records no training template; using the tokenizer's own chat_template (template "
             "'tokenizer'; --template NAME chooses another)")
        return "tokenizer", None
    raise ConfigError(f"--model {model}: no training template recorded (no 'template' in {EXPORT_MARKER} or "
                      f"{MARKER_FILE}) and its tokenizer has no chat_template; pass --template NAME, the template "
                      f"it was trained with ({', '.join(TEMPLATES)})")


@dataclass
class ChatSession:
    chat_format: ChatFormat
    backend: object
    sampling: Sampling

    def answer(self, conversations: list[Conversation]) -> list[tuple[list[int], Reply]]:
        prompts = [self.chat_format.prompt_ids(conversation) for conversation in conversations]
        replies = self.backend.generate(prompts, self.sampling, self.chat_format.stop_token_ids)
        return list(zip(prompts, replies))


def answer_record(request: ChatRequest, prompt_ids: list[int], reply: Reply) -> dict:
    return {**request.record, "response": reply.text, "finish_reason": reply.finish_reason,
            "prompt_tokens": len(prompt_ids), "completion_tokens": len(reply.token_ids)}


def run_batch(session: ChatSession, requests: list[ChatRequest], write: Callable[[str], object]) -> None:
    for start in range(0, len(requests), BATCH):
        chunk = requests[start:start + BATCH]
        for request, (prompt_ids, reply) in zip(chunk, session.answer([r.conversation for r in chunk])):
            write(json.dumps(answer_record(request, prompt_ids, reply), ensure_ascii=False) + "\n")


def chat_loop(session: ChatSession, system: str | None, lines: Iterable[str], show: Callable[[str], object]) -> int:
    """The interactive chat: each line is a user message answered with the whole conversation so far."""
    history: list[Turn] = []
    for line in lines:
        text = line.strip()
        if text in EXIT_COMMANDS:
            break
        if text == "/reset":
            history.clear()
            show("(conversation cleared)")
            continue
        if not text:
            continue
        conversation = Conversation(system, (*history, Turn(text, "")), "interactive", len(history))
        [(_, reply)] = session.answer([conversation])
        history.append(Turn(text, reply.text))
        show(reply.text + ("\n(cut at --max_new_tokens)" if reply.finish_reason == "length" else ""))
    return 0


def terminal_lines() -> Iterable[str]:
    print("chat: /reset starts over, /exit or Ctrl-D ends", file=sys.stderr)
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def collect_requests(args: argparse.Namespace) -> list[ChatRequest]:
    """Every batch request, read and checked before the model is loaded."""
    requests = [prompt_request(text, args.system, f"--prompt #{i + 1}", i) for i, text in enumerate(args.prompt)]
    return requests + (list(read_requests(args.input, args.system)) if args.input else [])


def run(args: argparse.Namespace) -> int:
    sampling = sampling_from(args)
    batch = bool(args.prompt or args.input)
    if not batch and not sys.stdin.isatty():
        raise ConfigError("chat: stdin is not a terminal; give --prompt TEXT or --input FILE.jsonl for batch "
                          "answers (JSON Lines)")
    if args.output and not batch:
        raise ConfigError("--output holds batch answers; give --prompt TEXT or --input FILE.jsonl with it")
    if args.output and not Path(args.output).parent.is_dir():
        raise ConfigError(f"--output {args.output}: its folder does not exist; create it or choose another path")
    require_backend(args.backend)
    requests = collect_requests(args) if batch else []
    answers = sys.stdout
    # Only answers go to stdout (JSON Lines in batch mode): what the libraries print or log there while the
    # model loads (Megatron-Bridge's export, datasets' import notices) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return answer(args, sampling, requests, answers)


def answer(args: argparse.Namespace, sampling: Sampling, requests: list[ChatRequest], answers) -> int:
    """Load the model once, then answer the batch `requests` (or the terminal when there are none)."""
    from transformers import AutoTokenizer

    batch = bool(args.prompt or args.input)
    with open_model(args.model, args.base_model) as source:
        tokenizer = AutoTokenizer.from_pretrained(source.tokenizer, local_files_only=True)
        name, date = choose_template(source, args.template, tokenizer, args.model, args.template_date)
        chat_format = ChatFormat.load(name, tokenizer, date)
        backend = load_backend(args.backend, source, tokenizer, args.device, args.dtype, args.seed)
        session = ChatSession(chat_format, backend, sampling)
        if not batch:
            return chat_loop(session, args.system, terminal_lines(), lambda text: print(text, file=answers))
        if not args.output:
            run_batch(session, requests, answers.write)
            return 0
        with open(args.output, "w", encoding="utf-8") as out:
            run_batch(session, requests, out.write)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return run_verb(lambda: run(args), wants_debug(argv))


if __name__ == "__main__":
    sys.exit(main())
