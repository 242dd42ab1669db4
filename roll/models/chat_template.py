"""The ChatML chat template of the tiny model (Qwen2.5 style tool calling).

Tools are listed in the system message inside <tools></tools>; an assistant tool call is
`<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`; tool results come back as a user turn wrapped in
`<tool_response>\n...\n</tool_response>` (consecutive tool messages share one user turn). eos is <|im_end|>.

transformers renders templates with trim_blocks/lstrip_blocks, which drop a newline right after a block tag; every
such newline is therefore written as an expression, so the text renders the same with or without those flags."""
from __future__ import annotations

DEFAULT_SYSTEM = "You are a coding agent working in a sandbox. Use the tools to solve the task."

TOOLS_HEADER = "\n\n# Tools\n\nCall one function per turn. The functions are listed in <tools></tools>:\n<tools>"
TOOLS_FOOTER = (
    "\n</tools>\n\nTo call a function, reply with a JSON object inside <tool_call></tool_call> tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

_PARTS = [
    "{% if messages and messages[0]['role'] == 'system' %}",
    "{% set system = messages[0]['content'] %}{% set rest = messages[1:] %}",
    "{% else %}{% set system = '" + DEFAULT_SYSTEM + "' %}{% set rest = messages %}{% endif %}",
    "<|im_start|>system\n{{ system }}",
    "{% if tools %}" + TOOLS_HEADER,
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}",
    TOOLS_FOOTER + "{% endif %}<|im_end|>\n",
    "{% for message in rest %}",
    "{% if message['role'] == 'user' or message['role'] == 'system' %}",
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n",
    "{% elif message['role'] == 'assistant' %}",
    "<|im_start|>assistant\n{% if message['content'] %}{{ message['content'] }}{% endif %}",
    "{% if message['tool_calls'] %}{% for tc in message['tool_calls'] %}",
    "{% if tc['function'] is defined %}{% set call = tc['function'] %}{% else %}{% set call = tc %}{% endif %}",
    "{% if message['content'] or not loop.first %}\n{% endif %}",
    '<tool_call>\n{"name": "{{ call[\'name\'] }}", "arguments": ',
    "{% if call['arguments'] is string %}{{ call['arguments'] }}{% else %}{{ call['arguments'] | tojson }}{% endif %}",
    "}\n</tool_call>{% endfor %}{% endif %}<|im_end|>\n",
    "{% elif message['role'] == 'tool' %}",
    "{% if loop.first or rest[loop.index0 - 1]['role'] != 'tool' %}<|im_start|>user{% endif %}",
    "\n<tool_response>\n{{ message['content'] }}\n</tool_response>",
    "{% if loop.last or rest[loop.index0 + 1]['role'] != 'tool' %}<|im_end|>\n{% endif %}",
    "{% endif %}{% endfor %}",
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
]
CHAT_TEMPLATE = "".join(_PARTS).replace("%}\n", "%}{{ '\\n' }}")
