"""The runners' one greedy decode loop (runners/decode_loop.py): its incremental detokenizer
on the default model's real tokenizer, where it stops, and that a runner's generation never
decodes its whole output again per token. The runtimes' steps are stood in for by scripts
of real token ids; the runner modules' own tests run them on real models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from runners.base import GenerationRequest, TokenEvent
from runners.decode_loop import REPLACEMENT, TextStream, greedy_decode
from runners.kept_history import KeptHistory
from tests.support.helpers import assert_decodes_incrementally

# Accented, CJK, emoji (one a ZWJ sequence) and mathematical letters: characters of 2, 3 and
# 4 UTF-8 bytes, several of which the byte-level vocabulary splits across tokens.
TEXT = (
    "Café naïve, déjà vu. 東京タワーは高い。 Emoji: 🎉🚀👩‍💻 and 🦜 — ½ ≠ ∞; Ünïcödé 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.\n"
    "Plain words between them, then ¿qué tal? Grüße aus Köln! 안녕하세요 👍🏽 done.\n"
)


@pytest.fixture(scope="module")
def tokenizer(default_checkpoint):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(default_checkpoint / "tokenizer.json"))


@pytest.fixture(scope="module")
def script(tokenizer) -> list[int]:
    """A long answer of real ids: TEXT four times (over 300 tokens)."""
    return tokenizer.encode(TEXT * 4, add_special_tokens=False).ids


def _bare(runner_class, **attributes):
    """A runner with nothing loaded: only the attributes its decode and generate use."""
    runner = runner_class.__new__(runner_class)
    runner.__dict__.update(attributes)
    return runner


def _decoders(tokenizer) -> dict:
    """Each runner's own `_detokenize` on the default model's vocabulary."""
    from runners.executorch import ExecuTorchRunner
    from runners.litert import LiteRTRunner

    decoders = {
        "executorch": _bare(ExecuTorchRunner, tokenizer=tokenizer)._detokenize,
        "litert": _bare(LiteRTRunner, tokenizer=tokenizer)._detokenize,
    }
    try:
        from llama_cpp import Llama

        from bench.data import models
        from runners.llamacpp import LlamaCppRunner
    except ImportError:
        return decoders
    gguf = models.get_model(models.default_model_id()).source_path()
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    decoders["llamacpp"] = _bare(LlamaCppRunner, llm=vocab)._detokenize
    return decoders


def test_the_pieces_join_to_the_whole_output_decoded_at_once_at_every_length(tokenizer, script):
    for runner, decode in _decoders(tokenizer).items():
        stream, joined, held = TextStream(decode), "", 0
        for k, token in enumerate(script, 1):
            piece = stream.step(token)
            joined += piece
            held += piece == ""
            # Cut anywhere, the pieces are the whole decode less the text of the last token or two
            # when they end inside a character (a token may hold a space and a character's first byte).
            whole = decode(script[:k])
            assert whole.startswith(joined) and len(whole) - len(joined) <= 3, (runner, k, whole, joined)
            assert joined == whole or whole.endswith(REPLACEMENT), (runner, k)
        assert joined == decode(script) == (TEXT * 4), runner
        assert held >= 8, f"{runner}: too few characters split across tokens to test holding them back"


def test_each_token_is_decoded_in_a_short_window_however_long_the_output(tokenizer, script):
    sizes = []
    stream = TextStream(lambda ids: sizes.append(len(ids)) or tokenizer.decode(ids))
    for token in script * 3:
        stream.step(token)
    assert len(script) * 3 <= len(sizes) <= 2 * len(script) * 3
    assert max(sizes) <= 8


def _loop(request, answer, end_ids=()):
    """Drive the loop on a script: the 'runtime' gives `answer` in order. Returns the events,
    what the loop returned and the (token, position) of each step."""
    steps, given = [], iter(answer)

    def step(token, position):
        steps.append((token, position))
        return next(given)

    events = []
    loop = greedy_decode(request, [1, 2, 3], lambda prompt: next(given), step, end_ids, lambda ids: "")
    while True:
        try:
            events.append(next(loop))
        except StopIteration as done:
            return events, done.value, steps


def test_a_chat_ends_at_the_first_end_id_unyielded_and_steps_only_for_tokens_it_yields():
    events, decoded, steps = _loop(GenerationRequest(10, text="x"), [5, 6, 99, 7], end_ids={99})
    assert [e.token_id for e in events] == [5, 6]
    assert (decoded.new_tokens, decoded.stop, decoded.steps) == (2, "eos", 2)
    assert steps == [(5, 3), (6, 4)]  # each token at its position after the 3-token prompt


def test_a_fixed_length_decode_makes_exactly_n_tokens_and_no_step_past_the_last():
    events, decoded, steps = _loop(GenerationRequest(3, token_ids=(1, 2, 3), ignore_eos=True), [5, 99, 6, 7], {99})
    assert [e.token_id for e in events] == [5, 99, 6]  # the end ids are the runner's to suppress, never a stop
    assert (decoded.new_tokens, decoded.stop, decoded.steps) == (3, "length", 2)
    assert steps == [(5, 3), (99, 4)]


# --- Runners on the loop, their runtime's step stood in for by a script of real ids ---

EOS = 2  # the default model's <|im_end|>


def _litert(tokenizer, logits_for):
    import numpy as np

    from runners.litert import LiteRTRunner

    meta = SimpleNamespace(start_token_ids=(1,), end_token_ids=(0, EOS), stop_token_ids=frozenset({EOS}))
    runner = _bare(LiteRTRunner, tokenizer=tokenizer, meta=meta, cache_length=4096, kept=KeptHistory(), position=0)
    runner._prefill = lambda ids, start: None
    runner._decode = lambda token, position: np.asarray(logits_for(), np.float32)
    return runner


def _executorch(tokenizer, logits_for):
    import torch

    from runners.executorch import ExecuTorchRunner

    runner = _bare(
        ExecuTorchRunner,
        tokenizer=tokenizer,
        torch=torch,
        eos_ids=frozenset({0, EOS}),
        max_chunk=64,
        context_tokens=4096,
        kept=KeptHistory(),
        position=0,
    )
    runner._step = lambda tokens, position: torch.tensor(logits_for())
    return runner


RUNNERS = {"litert": _litert, "executorch": _executorch}


def _scripted(make, tokenizer, answer, eos_wins_at=()):
    """The runner with its runtime answering `answer` in order; at the indexes in `eos_wins_at`
    the end of turn outranks the scripted token."""
    vocab, given = tokenizer.get_vocab_size(), iter(enumerate(answer))

    def logits_for():
        index, token = next(given)
        logits = [0.0] * vocab
        logits[token] = 1.0
        if index in eos_wins_at:
            logits[EOS] = 2.0
        return logits

    return make(tokenizer, logits_for)


@pytest.mark.parametrize("name", RUNNERS)
def test_a_runner_decodes_each_token_in_a_window_never_the_whole_output(name, tokenizer, script):
    runner = _scripted(RUNNERS[name], tokenizer, script)
    request = GenerationRequest(len(script), token_ids=(1, 5, 6), ignore_eos=True)
    events = assert_decodes_incrementally(runner, request)
    assert [e.token_id for e in events] == script
    assert "".join(e.text for e in events) == TEXT * 4  # the multi-byte characters all whole


@pytest.mark.parametrize("name", RUNNERS)
def test_a_runner_suppresses_end_tokens_at_fixed_length_and_stops_at_them_in_chat(name, tokenizer, script):
    answer = script[:20]
    fixed = _scripted(RUNNERS[name], tokenizer, answer, eos_wins_at={4, 9})
    events = list(fixed.generate(GenerationRequest(20, token_ids=(1, 5, 6), ignore_eos=True)))
    assert [e.token_id for e in events] == answer and fixed.generation_info().stop_reason == "length"

    chat = _scripted(RUNNERS[name], tokenizer, answer, eos_wins_at={4, 9})
    events = list(chat.generate(GenerationRequest(20, text="Hello")))
    assert all(isinstance(e, TokenEvent) for e in events)
    assert [e.token_id for e in events] == answer[:4] and chat.generation_info().stop_reason == "eos"
