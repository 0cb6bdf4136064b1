"""The backend contract (:mod:`~tooti.backends.protocol`) and building blocks for backend plugins.

- :mod:`~tooti.backends.http`: :class:`HttpTransport`, a pooled httpx client with caps and error mapping.
- :mod:`~tooti.backends.http_errors`: HTTP status / transport failure → :mod:`tooti.errors`.
- :mod:`~tooti.backends.streaming`: line, SSE and JSON decoders for streamed bodies.
- :mod:`~tooti.backends.openai_compat`: :class:`OpenAICompatBackend`, the shared base of backends
  whose servers speak OpenAI's HTTP API (llama.cpp, vLLM).
"""
