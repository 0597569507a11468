"""Drive `paceline serve` (in front of `paceline mock`) with the official `openai` Python SDK.

Usage: gateway_sdk_check.py GATEWAY_BASE_URL
  The gateway has the clients `sdk` (key client-key-sdk, no limits of its own) and `tight`
  (key client-key-tight, 60 requests/min); its upstream mock answers 20 ms per token.

Exits non-zero (with a message) on any mismatch.
"""

import asyncio
import base64
import struct
import sys
import time

import openai

MSGS = [{"role": "user", "content": "Say hello"}]


def check(cond, msg):
    if not cond:
        print(f"FAILED: {msg}", file=sys.stderr)
        sys.exit(1)


def main():
    base_url = sys.argv[1]
    client = openai.OpenAI(base_url=base_url, api_key="client-key-sdk", max_retries=0)

    # A completion, with the gateway's status headers.
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSGS, max_tokens=5)
    chat = raw.parse()
    check(chat.object == "chat.completion", f"object {chat.object}")
    check(chat.usage.completion_tokens == 5, f"completion tokens {chat.usage.completion_tokens}")
    check(raw.headers.get("x-paceline-attempts") == "1", "x-paceline-attempts")
    check(raw.headers.get("x-paceline-queue-ms") is not None, "x-paceline-queue-ms")

    # A stream: chunks arrive as the provider writes them, and no usage chunk unless asked.
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=20, stream=True)
    times, text, usage_seen = [], "", False
    for chunk in stream:
        times.append(time.monotonic())
        usage_seen |= chunk.usage is not None
        for choice in chunk.choices:
            text += choice.delta.content or ""
    spread = times[-1] - times[0]
    check(spread >= 0.2, f"stream chunks spread over {spread:.3f}s only: buffered?")
    check(not usage_seen, "usage chunk the client did not ask for")
    check(len(text.split(" ")) == 20, f"streamed text {text!r}")
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MSGS, max_tokens=3, stream=True, stream_options={"include_usage": True}
    )
    usage = [c.usage for c in stream if c.usage is not None]
    check(len(usage) == 1 and usage[0].completion_tokens == 3, f"asked-for usage {usage}")

    # Embeddings: floats, and base64 (what the Node SDK sends) passed through intact.
    floats = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float")
    check(len(floats.data) == 2 and len(floats.data[0].embedding) == 1536, "float embeddings")
    b64 = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="base64")
    encoded = b64.data[0].embedding
    check(isinstance(encoded, str), "base64 embedding is a string")
    blob = base64.b64decode(encoded)
    decoded = struct.unpack(f"<{len(blob) // 4}f", blob)
    expected = [struct.unpack("<f", struct.pack("<f", x))[0] for x in floats.data[0].embedding]
    check(list(decoded) == expected, "base64 decodes to the float values")

    # Errors surface as the SDK's own exception types.
    try:
        openai.OpenAI(base_url=base_url, api_key="sk-not-a-client", max_retries=0).models.list()
        check(False, "expected a 401")
    except openai.AuthenticationError as err:
        check(err.status_code == 401 and err.code == "invalid_api_key", f"401 {err.body}")
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[], max_tokens=2)
        check(False, "expected a 400 from the provider")
    except openai.BadRequestError as err:
        check(err.status_code == 400, f"400 {err.body}")
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, max_tokens=2, extra_headers={"x-paceline-priority": "soon"}
        )
        check(False, "expected a 400 from the gateway")
    except openai.BadRequestError as err:
        check("x-paceline-priority" in err.message, f"400 {err.body}")
    tight = openai.OpenAI(
        base_url=base_url,
        api_key="client-key-tight",
        max_retries=0,
        default_headers={"x-paceline-max-wait": "100ms"},
    )
    tight.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=2)
    try:
        tight.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=2)
        check(False, "expected a 429 past the deadline")
    except openai.RateLimitError as err:
        hint_ms = int(err.response.headers["retry-after-ms"])
        check(100 < hint_ms <= 1000, f"retry-after-ms {hint_ms}")
        check(err.code == "rate_limit_exceeded", f"429 {err.body}")

    # Fifty concurrent clients, no SDK retries: nobody sees a 429 while max_wait allows the wait.
    async def many():
        aclient = openai.AsyncOpenAI(base_url=base_url, api_key="client-key-sdk", max_retries=0)
        sem_free = asyncio.Semaphore(50)

        async def one():
            async with sem_free:
                r = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MSGS, max_tokens=1)
                return r.usage.completion_tokens

        results = await asyncio.gather(*(one() for _ in range(60)), return_exceptions=True)
        await aclient.close()
        return results

    results = asyncio.run(many())
    errors = [r for r in results if isinstance(r, Exception)]
    check(not errors, f"{len(errors)} of 60 concurrent calls failed: {errors[:3]}")
    print(f"ok: openai {openai.__version__}; stream spread {spread:.3f}s")


if __name__ == "__main__":
    main()
