"""Chat templates rendered the way transformers renders them, for the runners that render the
model's template themselves (ExecuTorch, LiteRT): the prompt text, and so its tokens, are
then what transformers' `apply_chat_template` gives.

transformers also defines `strftime_now` (today's date); it is left out here, so a template
that asks for it (Llama 3's) renders its own fallback date, as these runners always have.
"""

from __future__ import annotations

import json


def compile_chat_template(source: str, **constants):
    """`source` compiled as transformers compiles a chat template: its sandbox, whitespace
    control and loop controls, its `raise_exception` and `tojson`, with `constants` (the
    bos/eos token texts) bound. Render it with messages=[...], add_generation_prompt=True."""
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
        # transformers' own: jinja's escapes HTML characters and sorts keys
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source, globals=constants)
