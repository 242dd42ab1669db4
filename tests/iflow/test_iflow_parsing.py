"""The tool-call parser: well-formed calls parse; every malformed completion becomes an error message, never an
exception (fuzzed with more than 10,000 generated completions)."""
from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from iflow.parsing import CLOSE_TAG, OPEN_TAG, parse_completion, parse_native, parse_text, render_call
from iflow.tools import ToolRegistry
from iflow.trajectory import ToolCall


def test_well_formed_call_with_reasoning_around_it():
    text = 'Let me look.\n<tool_call>\n{"name": "view", "arguments": {"path": "a.py"}}\n</tool_call>'
    parsed = parse_text(text)
    assert parsed.error is None
    assert parsed.call == ToolCall(name="view", arguments={"path": "a.py"})
    assert parsed.content == "Let me look."


def test_plain_text_is_neither_call_nor_error():
    parsed = parse_text("The answer is 42.")
    assert parsed.call is None and parsed.error is None and parsed.content == "The answer is 42."


def test_tolerated_variants():
    assert parse_text('<tool_call>{"name": "bash", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>').call \
        == ToolCall(name="bash", arguments={"command": "ls"})  # double-encoded arguments
    assert parse_text('<tool_call>{"name": "submit"}</tool_call>').call == ToolCall(name="submit")
    assert parse_text('<tool_call>```json\n{"name": "submit", "arguments": {}}\n```</tool_call>').call.name == "submit"
    assert parse_text('<tool_call>{"name": "submit", "arguments": {}}').call.name == "submit"  # unterminated, whole
    thought = '<think>maybe <tool_call>{"name": "bash"}</tool_call></think><tool_call>{"name": "submit"}</tool_call>'
    assert parse_text(thought).call.name == "submit"  # calls inside reasoning are ignored


def test_malformed_calls_name_the_problem():
    cases = {
        '<tool_call>{"name": "bash", "arguments": {"command": "ls"</tool_call>': "not valid JSON",
        '<tool_call>{"name": "bash"': "not closed",
        '<tool_call>{"name": "a"}</tool_call><tool_call>{"name": "b"}</tool_call>': "exactly one",
        '<tool_call><tool_call>{"name": "a"}</tool_call></tool_call>': "exactly one",
        '<tool_call>["bash"]</tool_call>': "JSON object",
        '<tool_call>{"arguments": {}}</tool_call>': '"name"',
        '<tool_call>{"name": "bash", "arguments": [1]}</tool_call>': "must be a JSON object",
        '<tool_call>{"name": "bash", "arguments": "not json"}</tool_call>': "not valid JSON",
        'done</tool_call>': "without an opening",
        "<tool_call>" + "[" * 100_000 + "</tool_call>": "nested too deeply",
    }
    for text, expected in cases.items():
        parsed = parse_text(text)
        assert parsed.call is None, text
        assert expected in parsed.error, (text[:80], parsed.error)
        assert OPEN_TAG in parsed.error  # every error repeats the expected format


def test_native_tool_calls():
    call = {"id": "call_9", "type": "function", "function": {"name": "bash", "arguments": '{"command": "ls"}'}}
    parsed = parse_completion("ok", [call])
    assert parsed.call == ToolCall(name="bash", arguments={"command": "ls"}, id="call_9")
    assert "exactly one" in parse_native([call, call]).error
    assert "not valid JSON" in parse_native([{**call, "function": {"name": "bash", "arguments": "{"}}]).error
    assert parse_native([{"id": "x"}]).error
    assert parse_native(["garbage"]).error  # type: ignore[list-item]


def test_render_call_round_trips():
    call = ToolCall(name="str_replace", arguments={"path": "ü.py", "old_str": "a\n", "new_str": '"b"'})
    assert parse_text(render_call(call)).call == call


# ---- fuzzing ---------------------------------------------------------------------------------------------------
VALID_CALLS = [
    {"name": "bash", "arguments": {"command": "ls -la"}},
    {"name": "view", "arguments": {"path": "src/a.py", "view_range": [1, 20]}},
    {"name": "str_replace", "arguments": {"path": "a.py", "old_str": "x = 1", "new_str": "x = 2"}},
    {"name": "insert", "arguments": {"path": "a.py", "insert_line": 3, "new_str": "pass"}},
    {"name": "search", "arguments": {"pattern": "def .*", "mode": "content"}},
    {"name": "submit", "arguments": {}},
]
NOISE = ["\u0000", "\ud7ff", "日本語", "🙂", "\\", '"', "{", "}", "[", "]", ",", ":", "\n", "<", ">", "</", "null",
         "tool_call", OPEN_TAG, CLOSE_TAG, "<think>", "</think>", "```", "\x1b[31m", "\u202e", "NaN", "1e999"]


def mutate(rng: random.Random) -> str:
    call = json.dumps(rng.choice(VALID_CALLS), ensure_ascii=rng.random() < 0.5)
    text = f"{OPEN_TAG}{call}{CLOSE_TAG}"
    kind = rng.randrange(10)
    if kind == 0:  # truncated anywhere
        text = text[: rng.randrange(len(text) + 1)]
    elif kind == 1:  # nested / repeated tags
        text = OPEN_TAG * rng.randint(1, 3) + call + CLOSE_TAG * rng.randint(0, 3)
    elif kind == 2:  # random noise inserted
        for _ in range(rng.randint(1, 8)):
            spot = rng.randrange(len(text) + 1)
            text = text[:spot] + rng.choice(NOISE) + text[spot:]
    elif kind == 3:  # random characters deleted
        for _ in range(rng.randint(1, 5)):
            spot = rng.randrange(max(1, len(text)))
            text = text[:spot] + text[spot + 1:]
    elif kind == 4:  # huge arguments
        text = f'{OPEN_TAG}{{"name": "bash", "arguments": {{"command": "{"x" * rng.randint(10_000, 300_000)}"}}}}'
        text += CLOSE_TAG if rng.random() < 0.5 else ""
    elif kind == 5:  # deep nesting
        depth = rng.randint(100, 5000)
        text = f'{OPEN_TAG}{{"name": "bash", "arguments": {"[" * depth}{"]" * rng.randint(0, depth)}}}{CLOSE_TAG}'
    elif kind == 6:  # random unicode soup, maybe with tags
        soup = "".join(chr(rng.randint(0, 0x2FFFF)) for _ in range(rng.randint(0, 200)))
        soup = soup.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        text = rng.choice(["", OPEN_TAG]) + soup + rng.choice(["", CLOSE_TAG])
    elif kind == 7:  # wrong JSON types in the right places
        value = rng.choice([None, 1, "s", [], [1, 2], {"a": {"b": []}}, True, 1.5])
        text = f'{OPEN_TAG}{json.dumps({"name": rng.choice([value, "bash"]), "arguments": value})}{CLOSE_TAG}'
    elif kind == 8:  # prose around a call, maybe two calls
        text = "I will now " + text + (" and also " + text if rng.random() < 0.5 else "")
    else:  # random bytes decoded leniently
        text = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))).decode("utf-8", "replace")
    return text


def fuzz_native(rng: random.Random) -> list:
    choices = [None, 1, "x", [], {}, {"function": None}, {"function": {"name": None}},
               {"id": 3, "function": {"name": "bash", "arguments": rng.choice(["{", "[]", "null", "{}", '"x"', 7])}}]
    return [rng.choice(choices) for _ in range(rng.randint(0, 3))]


def test_fuzz_ten_thousand_completions_never_raise():
    rng = random.Random(20251224)
    registry = ToolRegistry.from_names()
    outcomes = {"call": 0, "error": 0, "text": 0}
    for _ in range(10_500):
        text = mutate(rng)
        parsed = parse_completion(text, fuzz_native(rng) if rng.random() < 0.1 else None)
        assert parsed.call is None or parsed.error is None
        if parsed.call is not None:
            check = registry.check(parsed.call)  # schema validation must not raise either
            assert check is None or isinstance(check, str)
            outcomes["call"] += 1
        elif parsed.error is not None:
            assert isinstance(parsed.error, str) and parsed.error
            outcomes["error"] += 1
        else:
            outcomes["text"] += 1
    assert min(outcomes.values()) > 100, outcomes  # the generator covers all three results


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("{}[]\":,ab \n\\") + [OPEN_TAG, CLOSE_TAG, '"name"', '"arguments"']),
                max_size=80))
def test_hypothesis_structured_noise_never_raises(pieces: list[str]):
    parsed = parse_text("".join(pieces))
    assert parsed.call is None or parsed.error is None


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_hypothesis_any_json_payload_parses_or_errors(payload):
    parsed = parse_text(f"{OPEN_TAG}{json.dumps(payload)}{CLOSE_TAG}")
    if parsed.call is not None:
        assert isinstance(payload, dict) and parsed.call.name == payload["name"].strip()
        ToolRegistry.from_names().check(parsed.call)
    else:
        assert parsed.error
