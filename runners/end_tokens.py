"""The tokens that end a generation wherever a vocabulary has them, by their text, as
llama.cpp's vocabulary loader marks them: a checkpoint converted from GGUF declares only its
chat end-of-turn token, and a fixed-length generation must hold back every one of them.
Both exporters that write end tokens into their artifact (ExecuTorch, LiteRT) read them here.
"""

from __future__ import annotations

END_OF_GENERATION_TEXTS = (
    "<|endoftext|>",
    "<|im_end|>",
    "</s>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<|end|>",
    "<end_of_turn>",
)


def end_of_generation_ids(tokenizer) -> list[int]:
    """The ids a `tokenizers.Tokenizer` gives END_OF_GENERATION_TEXTS, those it has."""
    return [i for i in map(tokenizer.token_to_id, END_OF_GENERATION_TEXTS) if i is not None]
