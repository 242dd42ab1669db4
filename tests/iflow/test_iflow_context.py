"""The context manager: the budget is never exceeded, the same inputs give the same context, the system prompt and
task are always kept, and a rewrite of history is a fork (token mode re-renders instead of extending)."""
from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iflow.config import ContextConfig
from iflow.context import ContextManager, ContextOverflow, Exchange, wrap_observation
from iflow.tokens import ApproxCounter, ChatTemplateRenderer
from iflow.trajectory import ToolCall

SYSTEM = "You are a test agent. Call tools."
TASK = "Fix the bug in stats.py so that the tests pass."
WORDS = ["alpha", "beta", "def", "return", "(", ")", "\n", "x", "=", "1", "tests", "passed", "failed", "ü", "🙂"]


def text_of(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def history(seed: int, turns: int, max_obs_words: int = 400) -> list[tuple[str, str | None]]:
    rng = random.Random(seed)
    out = []
    for index in range(turns):
        completion = f'step {index} <tool_call>{{"name": "bash", "arguments": {{"command": "{text_of(rng, 5)}"}}}}' \
                     f"</tool_call>"
        observation = text_of(rng, rng.randint(0, max_obs_words)) if rng.random() < 0.9 else None
        out.append((completion, observation))
    return out


def encode(tokenizer, text: str, end_of_turn: bool = True) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.convert_tokens_to_ids("<|im_end|>")] if end_of_turn else ids


def drive_steps(manager: ContextManager, steps: list[tuple[str, str | None]], tokenizer=None):
    """Build a prompt, yield it, add the scripted turn; repeat."""
    for index, (completion, observation) in enumerate(steps):
        prompt = manager.build()
        yield prompt
        ids = encode(tokenizer, completion, end_of_turn=index % 3 != 2) if tokenizer is not None else []
        cut = manager.cut_observation(observation) if observation is not None else None
        manager.add(Exchange(index, completion, ids, ToolCall(name="bash"), cut))


def drive(manager: ContextManager, steps: list[tuple[str, str | None]], tokenizer=None) -> list:
    return list(drive_steps(manager, steps, tokenizer))


@pytest.fixture(scope="module")
def renderer(tokenizer):
    return ChatTemplateRenderer(tokenizer)


def test_first_prompt_is_the_chat_template_rendering(tokenizer, renderer):
    manager = ContextManager(SYSTEM, TASK, ContextConfig(), renderer)
    prompt = manager.build()
    expected = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}],
                                             tokenize=False, add_generation_prompt=True)
    assert prompt.ids == list(tokenizer(expected, add_special_tokens=False)["input_ids"])
    assert not prompt.fork and prompt.tokens == len(prompt.ids)


def test_incremental_prompts_extend_verbatim_and_add_end_of_turn(tokenizer, renderer):
    manager = ContextManager(SYSTEM, TASK, ContextConfig(max_context_tokens=100_000), renderer)
    steps = history(1, 6)
    prompts = drive(manager, steps, tokenizer)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for index in range(1, len(prompts)):
        previous, completion = prompts[index - 1].ids, encode(tokenizer, steps[index - 1][0], (index - 1) % 3 != 2)
        assert not prompts[index].fork
        assert prompts[index].ids[: len(previous) + len(completion)] == previous + completion
        after = prompts[index].ids[len(previous) + len(completion):]
        # a completion that ended with <|im_end|> is not given a second one; one that did not gets it
        assert (after[0] == end) == ((index - 1) % 3 == 2)
        observation = steps[index - 1][1]
        if observation is not None:
            assert wrap_observation(manager.exchanges[index - 1].observation) in tokenizer.decode(after)
        assert tokenizer.decode(after).endswith("<|im_start|>assistant\n")


def test_incremental_equals_full_rendering_when_nothing_is_compressed(tokenizer, renderer):
    manager = ContextManager(SYSTEM, TASK, ContextConfig(max_context_tokens=100_000), renderer)
    prompt = None
    for index, (completion, observation) in enumerate(history(2, 6)):
        prompt = manager.build()
        manager.add(Exchange(index, completion, encode(tokenizer, completion), ToolCall(name="bash"),
                             manager.cut_observation(observation) if observation is not None else None))
    prompt = manager.build(user_input="and one more thing")
    # completions that end in <|im_end|>: the incremental ids are exactly the template's rendering of the messages
    messages = manager.messages(user_input="and one more thing")
    assert prompt.ids == renderer.render(messages)
    assert messages[-1]["content"].endswith("and one more thing") and prompt.messages is None


def test_fork_when_history_is_compressed(tokenizer, renderer):
    config = ContextConfig(max_context_tokens=1500, max_observation_tokens=400, keep_recent_turns=1)
    manager = ContextManager(SYSTEM, TASK, config, renderer)
    steps = history(3, 14)
    prompts = drive(manager, steps, tokenizer)
    forks = [index for index, prompt in enumerate(prompts) if prompt.fork]
    assert forks, "the budget was small enough to force compression"
    for index in range(1, len(prompts)):
        previous = prompts[index - 1].ids + encode(tokenizer, steps[index - 1][0], (index - 1) % 3 != 2)
        extends = prompts[index].ids[: len(previous)] == previous
        if prompts[index].fork:
            assert not extends  # a fork never pretends the old prefix still holds
            assert prompts[index].ids == renderer.render(prompts[index].messages)
        else:
            assert extends
        assert prompts[index].tokens <= config.max_context_tokens
    assert "[output omitted to save context" in tokenizer.decode(prompts[-1].ids)


def test_observations_are_cut_to_head_and_tail(tokenizer, renderer):
    manager = ContextManager(SYSTEM, TASK, ContextConfig(max_observation_tokens=100), renderer)
    observation = "HEAD " + "filler " * 2000 + " TAIL"
    cut = manager.cut_observation(observation)
    assert cut.startswith("HEAD") and cut.endswith("TAIL") and "tokens of output cut" in cut
    assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 110
    assert manager.cut_observation("short") == "short"
    approx = ContextManager(SYSTEM, TASK, ContextConfig(max_observation_tokens=100), counter=ApproxCounter())
    cut = approx.cut_observation(observation)
    assert cut.startswith("HEAD") and cut.endswith("TAIL") and "characters of output cut" in cut


def test_oldest_turns_are_compressed_first_and_recent_ones_kept(renderer, tokenizer):
    config = ContextConfig(max_context_tokens=3000, keep_recent_turns=2, compress_threshold=0.6, compress_target=0.4)
    manager = ContextManager(SYSTEM, TASK, config, renderer)
    steps = [(c, o or "x") for c, o in history(4, 12, max_obs_words=150)]
    drive(manager, steps, tokenizer)
    levels = manager.levels
    assert levels[-2:] == [0, 0] or sum(levels[-2:]) < sum(levels[:2])
    # compression is monotone in age, among turns whose stub is shorter than what it replaces (a stub longer than a
    # tiny observation is skipped by design)
    worth = [level for level, (_, observation) in zip(levels, steps) if len(observation.split()) >= 20]
    assert worth == sorted(worth, reverse=True) and len(worth) >= 6


def test_system_and_task_too_big_is_a_clear_overflow(renderer):
    manager = ContextManager(SYSTEM, "word " * 5000, ContextConfig(max_context_tokens=500), renderer)
    with pytest.raises(ContextOverflow, match="max_context_tokens is 500"):
        manager.build()


def test_non_incremental_template_falls_back_to_forks(tokenizer):
    odd = copy.deepcopy(tokenizer)
    odd.chat_template = ("{{ messages | length }} turns\n{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                         "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}"
                         "<|im_start|>assistant\n{% endif %}")
    renderer = ChatTemplateRenderer(odd)
    assert not renderer.incremental
    manager = ContextManager(SYSTEM, TASK, ContextConfig(), renderer)
    prompts = drive(manager, history(5, 3), odd)
    assert [prompt.fork for prompt in prompts] == [False, True, True]


BUDGETS = st.integers(min_value=700, max_value=4000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), turns=st.integers(1, 25), budget=BUDGETS,
       keep=st.integers(0, 4), token_mode=st.booleans())
def test_budget_is_never_exceeded_and_context_is_deterministic(tokenizer, renderer, seed, turns, budget, keep,
                                                              token_mode):
    config = ContextConfig(max_context_tokens=budget, max_observation_tokens=min(300, budget // 4),
                           keep_recent_turns=keep)
    steps = history(seed, turns)

    def run():
        manager = ContextManager(SYSTEM, TASK, config, renderer if token_mode else None,
                                 None if token_mode else ApproxCounter())
        built: list = []
        try:
            built.extend(drive_steps(manager, steps, tokenizer if token_mode else None))
        except ContextOverflow:
            built.append("overflow")
        return built

    first, second = run(), run()
    assert [(p.ids, p.messages, p.fork) if p != "overflow" else p for p in first] == \
        [(p.ids, p.messages, p.fork) if p != "overflow" else p for p in second]
    for prompt in first:
        if prompt == "overflow":
            continue
        assert prompt.tokens <= budget
        if token_mode:
            assert prompt.tokens == len(prompt.ids)
        messages = prompt.messages or []  # token mode extending the last prompt renders no messages
        if messages:
            assert messages[0] == {"role": "system", "content": SYSTEM}
            assert messages[1]["role"] == "user" and messages[1]["content"].startswith(TASK)
        if token_mode:  # the system prompt and the task are always in the tokens
            text = renderer.tokenizer.decode(prompt.ids)
            assert SYSTEM in text and TASK in text

