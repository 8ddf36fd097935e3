"""Drives the Caracal gateway with the official OpenAI and Anthropic Python SDKs.

Usage: sdk_calls.py GATEWAY_URL API_KEY
Prints one JSON object: for each call, the usage the SDK saw (or the error it raised), so the
Rust test can compare it with the charges in the event log.
"""
import json
import sys

import anthropic
import openai


def main() -> None:
    gateway, key = sys.argv[1], sys.argv[2]
    oai = openai.OpenAI(base_url=f"{gateway}/openai/v1", api_key=key, max_retries=0)
    ant = anthropic.Anthropic(base_url=f"{gateway}/anthropic", api_key=key, max_retries=0)
    out = {}

    chat = oai.chat.completions.create(
        model="mock-gpt",
        max_tokens=12,
        messages=[{"role": "user", "content": "one two three four"}],
    )
    out["chat"] = {"input": chat.usage.prompt_tokens, "output": chat.usage.completion_tokens,
                   "text": chat.choices[0].message.content}

    streamed_text, usage = "", None
    for chunk in oai.chat.completions.create(
        model="mock-gpt",
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream this please"}],
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            streamed_text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    out["chat_stream"] = {"input": usage.prompt_tokens, "output": usage.completion_tokens,
                          "text": streamed_text}

    # A stream that did not ask for usage gets none: every chunk has a choice (a client that
    # reads choices[0] on every chunk must not crash), and no chunk carries usage.
    plain_text, plain_chunks, plain_with_usage = "", 0, 0
    for chunk in oai.chat.completions.create(
        model="mock-gpt",
        max_tokens=7,
        stream=True,
        messages=[{"role": "user", "content": "stream without usage"}],
    ):
        plain_chunks += 1
        plain_text += chunk.choices[0].delta.content or ""
        if "usage" in chunk.model_fields_set:
            plain_with_usage += 1
    out["chat_stream_plain"] = {"text": plain_text, "chunks": plain_chunks,
                                "chunks_with_usage": plain_with_usage}

    emb = oai.embeddings.create(model="mock-embed", input="embed these five words now")
    out["embeddings"] = {"input": emb.usage.prompt_tokens, "output": 0, "dims": len(emb.data[0].embedding)}

    msg = ant.messages.create(
        model="mock-claude",
        max_tokens=10,
        messages=[{"role": "user", "content": "hello claude from caracal"}],
    )
    out["messages"] = {"input": msg.usage.input_tokens, "output": msg.usage.output_tokens,
                       "text": msg.content[0].text}

    with ant.messages.stream(
        model="mock-claude",
        max_tokens=7,
        messages=[{"role": "user", "content": "stream claude"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["messages_stream"] = {"input": final.usage.input_tokens, "output": final.usage.output_tokens,
                              "text": text}

    try:
        oai.chat.completions.create(
            model="mock-pricey",
            max_tokens=12,
            messages=[{"role": "user", "content": "too expensive"}],
        )
        out["denied"] = {"raised": None}
    except openai.PermissionDeniedError as e:
        out["denied"] = {"raised": type(e).__name__, "status": e.status_code, "code": e.code,
                         "body": e.body}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
