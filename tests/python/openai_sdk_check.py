"""Drive the mock with the official `openai` Python SDK.

Usage: openai_sdk_check.py BASE_URL LIMITED_BASE_URL
  BASE_URL          a mock with no limits
  LIMITED_BASE_URL  a mock started with `--rpm 20 --burst 1` (one request per 3 s)

Exits non-zero (with a message) on any mismatch.
"""

import base64
import struct
import sys
import time

import openai

# Seconds per request of the limited mock (`--rpm 20 --burst 1`).
PERIOD_S = 3


def check(cond, msg):
    if not cond:
        print(f"FAILED: {msg}", file=sys.stderr)
        sys.exit(1)


def main():
    base_url, limited_url = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key="sk-sdk-test", max_retries=0)

    # A completion.
    chat = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=12,
    )
    check(chat.object == "chat.completion", f"object {chat.object}")
    check(chat.choices[0].message.role == "assistant", "assistant role")
    check(len(chat.choices[0].message.content) > 0, "non-empty content")
    check(chat.usage.prompt_tokens == 9, f"prompt tokens {chat.usage.prompt_tokens}")
    check(1 <= chat.usage.completion_tokens <= 12, "completion tokens within max_tokens")

    # A stream with usage.
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    check(usage is not None, "usage chunk")
    check(finish in ("stop", "length"), f"finish_reason {finish}")
    check(len(text.split(" ")) == usage.completion_tokens, "streamed text matches usage")

    # Embeddings: floats, and base64 decoded to the same floats.
    floats = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    check(len(floats.data) == 2 and len(floats.data[0].embedding) == 1536, "float embeddings")
    raw = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="base64"
    )
    encoded = raw.data[0].embedding
    check(isinstance(encoded, str), "base64 embedding is a string")
    decoded = struct.unpack(f"<{len(base64.b64decode(encoded)) // 4}f", base64.b64decode(encoded))
    check(list(decoded) == [struct.unpack("<f", struct.pack("<f", x))[0] for x in floats.data[0].embedding],
          "base64 decodes to the float values")
    check(floats.usage.prompt_tokens == 2, f"embedding usage {floats.usage.prompt_tokens}")

    # A 429: the SDK waits what the headers say, then retries and succeeds.
    limited = openai.OpenAI(base_url=limited_url, api_key="sk-sdk-test", max_retries=2)
    no_retry = openai.OpenAI(base_url=limited_url, api_key="sk-sdk-test", max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    first_sent = time.monotonic()
    limited.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=2)
    try:
        no_retry.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=2)
        check(False, "expected a 429")
    except openai.RateLimitError as err:
        hint_ms = int(err.response.headers["retry-after-ms"])
        check(0 < hint_ms <= PERIOD_S * 1000, f"retry-after-ms {hint_ms}")
        check(err.response.headers["retry-after"] == str(-(-hint_ms // 1000)), "retry-after")
        check(err.body["code"] == "rate_limit_exceeded", f"429 body {err.body}")
    limited.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=2)
    # The bucket holds one request and refills one per PERIOD_S: the retried call can only have
    # succeeded after the SDK waited for it.
    elapsed = time.monotonic() - first_sent
    check(elapsed >= PERIOD_S, f"the SDK retried after {elapsed:.3f}s, before the {PERIOD_S}s refill")
    print(f"ok: openai {openai.__version__}; the retried call finished {elapsed:.2f}s after the first")


if __name__ == "__main__":
    main()
