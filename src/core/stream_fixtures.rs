//! Recorded-style streaming responses, byte for byte as OpenAI and Anthropic send them (LF line
//! endings, a blank line after every event), for the stream usage tests. Test-only data:
//! nothing outside `#[cfg(test)]` may use it.

/// OpenAI chat completions, `stream_options.include_usage: true`: `data:` lines only, a final
/// chunk with empty `choices` carrying `usage`, then `[DONE]`.
pub const OPENAI_CHAT: &str = r#"data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"U3yK"}

data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"d2"}

data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":"! How"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Qm0"}

data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{"content":" can I help \u00e9t\u00e9 \ud83d\ude00?"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x"}

data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"Nf0aBc"}

data: {"id":"chatcmpl-CGn3sWb7xYzK4LxEwqHo1Jd9ZpQ2a","object":"chat.completion.chunk","created":1757952104,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_560af6e559","choices":[],"usage":{"prompt_tokens":1045,"completion_tokens":9,"total_tokens":1054,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"k1"}

data: [DONE]

"#;

/// OpenAI legacy completions, streamed with `include_usage`.
pub const OPENAI_COMPLETIONS: &str = r#"data: {"id":"cmpl-CGn5Jx0S6T3b9nV1cQe7rLk2ZmA4p","object":"text_completion","created":1757952193,"choices":[{"text":"\n\n","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct:20230824-v2","usage":null}

data: {"id":"cmpl-CGn5Jx0S6T3b9nV1cQe7rLk2ZmA4p","object":"text_completion","created":1757952193,"choices":[{"text":"This is a test","index":0,"logprobs":null,"finish_reason":null}],"model":"gpt-3.5-turbo-instruct:20230824-v2","usage":null}

data: {"id":"cmpl-CGn5Jx0S6T3b9nV1cQe7rLk2ZmA4p","object":"text_completion","created":1757952193,"choices":[{"text":".","index":0,"logprobs":null,"finish_reason":"stop"}],"model":"gpt-3.5-turbo-instruct:20230824-v2","usage":null}

data: {"id":"cmpl-CGn5Jx0S6T3b9nV1cQe7rLk2ZmA4p","object":"text_completion","created":1757952193,"model":"gpt-3.5-turbo-instruct:20230824-v2","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}

data: [DONE]

"#;

/// OpenAI Responses API: named events, usage only on `response.completed`.
pub const OPENAI_RESPONSES: &str = r#"event: response.created
data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_68c7e0d9a3b88196a8f2d6e7c1b0e4f50b2d9c8e7f6a5b4c","object":"response","created_at":1757864153,"status":"in_progress","background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},"safety_identifier":null,"service_tier":"auto","store":true,"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}

event: response.in_progress
data: {"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_68c7e0d9a3b88196a8f2d6e7c1b0e4f50b2d9c8e7f6a5b4c","object":"response","created_at":1757864153,"status":"in_progress","background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"gpt-4.1-2025-04-14","output":[],"parallel_tool_calls":true,"previous_response_id":null,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},"safety_identifier":null,"service_tier":"auto","store":true,"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1.0,"truncation":"disabled","usage":null,"user":null,"metadata":{}}}

event: response.output_item.added
data: {"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","type":"message","status":"in_progress","content":[],"role":"assistant"}}

event: response.content_part.added
data: {"type":"response.content_part.added","sequence_number":3,"item_id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":""}}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","output_index":0,"content_index":0,"delta":"Hi","logprobs":[],"obfuscation":"q1W7aXbYz0V8Wd"}

event: response.output_text.delta
data: {"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","output_index":0,"content_index":0,"delta":" there!","logprobs":[],"obfuscation":"a5f0L2hk9"}

event: response.output_text.done
data: {"type":"response.output_text.done","sequence_number":6,"item_id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","output_index":0,"content_index":0,"text":"Hi there!","logprobs":[]}

event: response.content_part.done
data: {"type":"response.content_part.done","sequence_number":7,"item_id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there!"}}

event: response.output_item.done
data: {"type":"response.output_item.done","sequence_number":8,"output_index":0,"item":{"id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there!"}],"role":"assistant"}}

event: response.completed
data: {"type":"response.completed","sequence_number":9,"response":{"id":"resp_68c7e0d9a3b88196a8f2d6e7c1b0e4f50b2d9c8e7f6a5b4c","object":"response","created_at":1757864153,"status":"completed","background":false,"error":null,"incomplete_details":null,"instructions":null,"max_output_tokens":null,"max_tool_calls":null,"model":"gpt-4.1-2025-04-14","output":[{"id":"msg_68c7e0da1c2c8196b1a4e5f6d7c8b9a00b2d9c8e7f6a5b4c","type":"message","status":"completed","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"Hi there!"}],"role":"assistant"}],"parallel_tool_calls":true,"previous_response_id":null,"prompt_cache_key":null,"reasoning":{"effort":null,"summary":null},"safety_identifier":null,"service_tier":"default","store":true,"temperature":1.0,"text":{"format":{"type":"text"},"verbosity":"medium"},"tool_choice":"auto","tools":[],"top_logprobs":0,"top_p":1.0,"truncation":"disabled","usage":{"input_tokens":2073,"input_tokens_details":{"cached_tokens":1920},"output_tokens":4,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":2077},"user":null,"metadata":{}}}

"#;

/// Anthropic messages: `event:` + `data:` pairs, a `ping`, input and cache counts on
/// `message_start`, cumulative output on `message_delta`.
pub const ANTHROPIC: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":2051,"cache_read_input_tokens":10240,"cache_creation":{"ephemeral_5m_input_tokens":2051,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! été 😀"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// Anthropic with a tool call and the newer cumulative `message_delta` usage that repeats the
/// input counts.
pub const ANTHROPIC_TOOL_USE: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let me check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"San Fra"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

/// Every fixture, with the usage (input, cached, cache write, output), output delta count and
/// event count a parser must report for it.
pub const ALL: &[(&str, &str, [u64; 4], u64, usize)] = &[
    ("openai_chat", OPENAI_CHAT, [21, 1024, 0, 9], 5, 7),
    ("openai_completions", OPENAI_COMPLETIONS, [5, 0, 0, 7], 3, 5),
    (
        "openai_responses",
        OPENAI_RESPONSES,
        [153, 1920, 0, 4],
        2,
        10,
    ),
    ("anthropic", ANTHROPIC, [14, 10240, 2051, 12], 2, 8),
    (
        "anthropic_tool_use",
        ANTHROPIC_TOOL_USE,
        [472, 0, 0, 89],
        5,
        13,
    ),
];
