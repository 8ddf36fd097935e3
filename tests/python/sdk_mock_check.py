#!/usr/bin/env python3
"""Call the mock upstream through the official `openai` and `anthropic` SDKs, clients we did
not write, and check that every answer parses to the documented deterministic usage.

    sdk_mock_check.py BASE_URL      e.g. http://127.0.0.1:PORT; prints "ok" and exits 0

The mock runs with its default of 16 output tokens. Exit 3: an SDK is missing.
"""

import json
import sys
import urllib.request

try:
    import anthropic
    import openai
except ImportError as e:
    print(f"missing SDK: {e}", file=sys.stderr)
    sys.exit(3)


def check(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def openai_checks(base):
    client = openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0)
    chat = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a b c"}],
        extra_headers={"x-mock-cached-tokens": "1"},
    )
    check("chat usage", (chat.usage.prompt_tokens, chat.usage.completion_tokens), (3, 16))
    check("chat cached", chat.usage.prompt_tokens_details.cached_tokens, 1)
    check("chat finish", chat.choices[0].finish_reason, "stop")

    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "a b c"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=5,
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    check("chat stream text", "".join(parts), " ".join(["mock"] * 5))
    check("chat stream usage", (usage.prompt_tokens, usage.completion_tokens), (3, 5))

    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x y", max_tokens=3)
    check("completions usage", completion.usage.total_tokens, 5)
    chunks = list(client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="x y", max_tokens=3, stream=True))
    check("completions stream text", "".join(c.choices[0].text for c in chunks if c.choices), "mock mock mock")

    embeddings = client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    check("embeddings count", len(embeddings.data), 2)
    check("embeddings dims", len(embeddings.data[0].embedding), 8)
    check("embeddings usage", embeddings.usage.prompt_tokens, 3)

    response = client.responses.create(model="gpt-4.1", input="one two three", max_output_tokens=4)
    check("responses usage", (response.usage.input_tokens, response.usage.output_tokens), (3, 4))
    check("responses text", response.output_text, "mock mock mock mock")
    with client.responses.stream(model="gpt-4.1", input="one two three") as events:
        for _ in events:
            pass
        final = events.get_final_response()
    check("responses stream usage", final.usage.total_tokens, 19)

    try:
        client.chat.completions.create(model="m", messages=[], extra_headers={"x-mock-status": "429"})
        raise AssertionError("x-mock-status 429 did not raise")
    except openai.RateLimitError as e:
        check("openai error code", e.code, "rate_limit_exceeded")


def anthropic_checks(base):
    client = anthropic.Anthropic(base_url=base, api_key="ak-test", max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system="s t",
        messages=[{"role": "user", "content": "hi there"}],
        extra_headers={"x-mock-cached-tokens": "1", "x-mock-cache-write-tokens": "1"},
    )
    u = message.usage
    check("anthropic usage",
          (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens, u.output_tokens),
          (2, 1, 1, 16))
    check("anthropic stop", message.stop_reason, "end_turn")
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=3,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    check("anthropic stream text", text, "mock mock mock")
    check("anthropic stream stop", final.stop_reason, "max_tokens")
    check("anthropic stream usage", (final.usage.input_tokens, final.usage.output_tokens), (1, 3))
    try:
        client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}],
                               extra_headers={"x-mock-status": "529"})
        raise AssertionError("x-mock-status 529 did not raise")
    except anthropic.APIStatusError as e:
        check("anthropic error status", e.status_code, 529)
        check("anthropic error type", e.body["error"]["type"], "overloaded_error")


def main():
    base = sys.argv[1].rstrip("/")
    openai_checks(base)
    anthropic_checks(base)
    stats = json.load(urllib.request.urlopen(base + "/_mock/stats"))
    # The Anthropic SDK sends its key as `x-api-key` or, in recent versions, `Authorization`.
    headers = stats["last_headers"]
    check("last credential", headers.get("x-api-key") or headers.get("authorization"),
          headers.get("x-api-key") and "ak-test" or "Bearer ak-test")
    print("ok")


if __name__ == "__main__":
    main()
