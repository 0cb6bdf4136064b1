"""The llama.cpp backend against the session's real llama.cpp server: load under concurrency, errors."""

from __future__ import annotations

import anyio
import pytest

from tooti.backends.endpoints import create_response
from tooti.backends.protocol import BackendSettings
from tooti.errors import BackendBadRequest
from tooti_backend_llamacpp.backend import LlamaCppBackend
from tooti_backend_llamacpp.config import LlamaCppConfig

pytestmark = [pytest.mark.live, pytest.mark.anyio]


@pytest.fixture
async def backend(llama_server):
    b = LlamaCppBackend.from_config(BackendSettings(base_url=llama_server.base_url), LlamaCppConfig())
    yield b
    await b.aclose()


def _long(n: int) -> dict:
    return {"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": n, "temperature": 1.0}


async def test_load_reports_processing_and_deferred_requests(backend) -> None:
    started = anyio.Event()
    first_chunks = 0

    async def stream_until_cancelled() -> None:
        nonlocal first_chunks
        async for _chunk in backend.chat_stream(_long(600)):
            first_chunks += 1
            if first_chunks >= 2:
                started.set()

    peak_in_flight = peak_queued = 0
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(3):  # 3 requests, 2 slots: one must wait
                tg.start_soon(stream_until_cancelled)
            await started.wait()
            while peak_queued == 0 or peak_in_flight < 2:
                load = await backend.load()
                peak_in_flight, peak_queued = max(peak_in_flight, load.in_flight), max(peak_queued, load.queued)
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        while (await backend.load()).in_flight:
            await anyio.sleep(0.05)
    assert peak_in_flight == 2
    assert peak_queued >= 1


async def test_prompt_longer_than_the_slot_is_a_bad_request(backend) -> None:
    body = {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 2}
    with anyio.fail_after(60), pytest.raises(BackendBadRequest, match="context"):
        await backend.chat(body)


async def test_embeddings(backend) -> None:
    with anyio.fail_after(30):
        reply = await backend.embeddings({"input": ["hello", "world"], "encoding_format": "float"})
    assert reply["object"] == "list"
    vectors = [d["embedding"] for d in reply["data"]]
    assert len(vectors) == 2
    assert len(vectors[0]) == len(vectors[1]) == 576  # SmolLM2-135M's embedding width


async def test_completion_and_unknown_fields_pass_through(backend) -> None:
    with anyio.fail_after(30):
        reply = await backend.completion({"prompt": "Once upon a time", "max_tokens": 3, "n_probs": 0, "x_extra": 1})
    assert reply["object"] == "text_completion"
    assert reply["usage"]["completion_tokens"] <= 3


async def test_plugin_entry_point_registers_the_backend() -> None:
    from tooti.plugins.host import PluginHost

    host = PluginHost(environ={})
    assert host.backend_class("llamacpp") is LlamaCppBackend


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


async def test_tools_with_smollm2_are_accepted_and_answered_as_text(backend) -> None:
    """What the shipped model does with ``tools`` (documented in the plugin README).

    The managed server renders prompts with Jinja (``use_jinja``), so a model whose template
    supports tools gets them and its ``tool_calls`` are parsed. SmolLM2-135M's template does not
    (``/props`` says ``supports_tools: false``): llama.cpp accepts ``tools`` and ``tool_choice``
    (no 4xx, no 5xx) and answers with plain content and no ``tool_calls``.
    """
    with anyio.fail_after(60):
        caps = (await backend.http.request_json("GET", "/props"))["chat_template_caps"]
        reply = await backend.chat(
            {
                "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                "tools": [WEATHER_TOOL],
                "tool_choice": "auto",
                "max_tokens": 16,
            }
        )
    assert caps["supports_tools"] is False
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert isinstance(message["content"], str)
    assert message["content"]
    assert not message.get("tool_calls")


async def _busy_slots(backend) -> int:
    return sum(1 for s in await backend.http.request_any_json("GET", "/slots") if s.get("is_processing"))


@pytest.mark.parametrize(("call", "after_s"), [("chat", 0.4), ("chat", 1.3), ("completion", 1.0), ("responses", 1.0)])
async def test_a_cancelled_whole_answer_frees_the_slot_at_once(backend, call, after_s) -> None:
    """A non-streamed call cancelled mid-generation stops llama.cpp within 1 s (it is streamed underneath).

    Without that, llama.cpp noticed the closed connection of a non-streamed request only sometimes
    (here: never at 0.4 s or 1.3 s; the whole 900 tokens were generated).
    """
    bodies = {
        "chat": {"messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 900},
        "completion": {"prompt": "Once upon a time", "max_tokens": 900},
        "responses": {"input": "Tell a long story.", "max_output_tokens": 900},
    }
    with anyio.fail_after(60):
        while await _busy_slots(backend):
            await anyio.sleep(0.05)
        with anyio.move_on_after(after_s):
            body = {**bodies[call], "ignore_eos": True}
            # Responses go the node's way: translated through a chat stream (create_response).
            await (create_response(backend, body) if call == "responses" else getattr(backend, call)(body))
            pytest.fail("900 tokens in under a second")
        left = anyio.current_time()
        while await _busy_slots(backend) and anyio.current_time() - left < 30:
            await anyio.sleep(0.02)
        stopped_after = anyio.current_time() - left
    assert stopped_after < 1.0, f"llama.cpp generated on for {stopped_after:.1f} s"
