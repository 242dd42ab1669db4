"""The embedded procedural task family: find the secret word a note names and write it into answer.txt.

    Read the note docs/memo12.txt and write the secret word it names into answer.txt, then submit.

Solving takes at least two tool calls (read the note, write the answer) plus submit; with `hops=2` the note only
names a second file that holds the word (one more read). Decoy files hold other words. Instances are randomized by
seed (file names, folders, words, decoys); the instance space is split deterministically into train and eval
(held-out) by a hash of the instance, so no eval instance ever appears in training. The verifier runs in the sandbox:
`answer.txt`, whitespace stripped, must equal the word.

Optional latency mix (for benchmarks): a `sleep` in setup and verification drawn per instance (mostly fast, a
fraction slow), standing for slow environment start-up and slow test suites."""
from __future__ import annotations

import hashlib
import random
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field

from roll.tasks.schema import Limits, TaskRecord, Verifier
from roll.tasks.words import DECOY_PHRASES, SECRET_WORDS, fresh_path

ANSWER_FILE = "answer.txt"
SIGN_OFFS = ["Thanks.", "Keep it safe.", "Do not share.", "See you.", "Regards, ops.", "Ask if unsure."]
EVAL_BUCKETS = 5  # one instance in five belongs to the eval split


class LatencyMix(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slow_fraction: float = Field(0.2, ge=0, le=1)
    fast_seconds: float = Field(0.1, ge=0)
    slow_seconds: float = Field(3.0, ge=0)


class SecretWordOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hops: int = Field(1, ge=1, le=2, description="1: the note holds the word; 2: it names the file that does")
    distractors: int = Field(2, ge=0, le=8, description="decoy files with other words")
    max_turns: int = Field(6, ge=2, description="episode turn limit written into each record")
    words: int | None = Field(None, ge=2, description="draw the word from the first N of the word list "
                                                      "(null = all); fewer words = less to copy")
    note_path: str | None = Field(None, description="a fixed path for the note (null = a random folder/name)")
    memo_ids: bool = Field(False, description="wrap the sentence in a random memo number and sign-off, so that "
                                              "instances differ even with a fixed note path and few words")
    latency: LatencyMix | None = Field(None, description="benchmark latency mix (setup + verifier sleeps)")


def _split_of(signature: str) -> Literal["train", "eval"]:
    bucket = int(hashlib.sha256(signature.encode()).hexdigest(), 16) % EVAL_BUCKETS
    return "eval" if bucket == 0 else "train"


def _instance(rng: random.Random, options: SecretWordOptions) -> tuple[str, dict]:
    taken: set[str] = set()
    note = options.note_path or fresh_path(rng, taken)
    taken.add(note)
    vocabulary = SECRET_WORDS[: options.words] if options.words else SECRET_WORDS
    word = rng.choice(vocabulary)
    files: dict[str, str] = {}
    chain = [note]
    if options.hops == 2:
        target = fresh_path(rng, taken)
        files[note] = f"The secret word is in {target}."
        files[target] = f"The secret word is {word}."
        chain.append(target)
    elif options.memo_ids:
        files[note] = f"Memo {rng.randint(100, 999)}. The secret word is {word}. {rng.choice(SIGN_OFFS)}"
    else:
        files[note] = f"The secret word is {word}."
    for _ in range(options.distractors):
        decoy = rng.choice([w for w in SECRET_WORDS if w != word])
        files[fresh_path(rng, taken)] = rng.choice(DECOY_PHRASES).format(word=decoy)
    signature = f"{options.hops}|{word}|{'>'.join(chain)}|{sorted(files.items())}"
    return signature, {"note": note, "word": word, "chain": chain, "files": files}


def make_task(index: int, seed: int = 0, split: Literal["train", "eval"] = "train",
              options: SecretWordOptions | None = None) -> TaskRecord:
    """The `index`-th instance of `split` for `seed` (deterministic)."""
    options = options or SecretWordOptions()
    rng = random.Random(f"secret_word|{seed}|{split}|{index}")
    for attempt in range(1000):
        signature, inst = _instance(rng, options)
        if _split_of(signature) == split:
            break
    else:  # pragma: no cover - probability ~0.8**1000
        raise RuntimeError("could not draw an instance of the requested split")
    setup = [f"chmod a-w {' '.join(sorted(inst['files']))}"]
    verify = f"test \"$(cat {ANSWER_FILE} 2>/dev/null | tr -d '[:space:]')\" = {inst['word']}"
    if options.latency is not None:
        mix = options.latency
        slow = rng.random() < mix.slow_fraction
        seconds = mix.slow_seconds if slow else mix.fast_seconds
        setup.append(f"sleep {seconds:g}")
        verify = f"sleep {seconds:g}; {verify}"
    return TaskRecord(
        id=f"sw-{split}-s{seed}-{index}",
        instruction=f"Read the note {inst['note']} and write the secret word it names into {ANSWER_FILE}, "
                    "then submit.",
        files=inst["files"],
        setup=setup,
        verifier=Verifier(command=verify, reward="exit_code", timeout=30.0 + (options.latency.slow_seconds
                                                                              if options.latency else 0.0)),
        limits=Limits(max_turns=options.max_turns),
        metadata={"family": "secret_word", "split": split, "seed": seed, "index": index, "word": inst["word"],
                  "chain": inst["chain"], "hops": options.hops, "signature": signature},
    )


def generate(n: int, seed: int = 0, split: Literal["train", "eval"] = "train",
             options: SecretWordOptions | None = None, start: int = 0) -> Iterator[TaskRecord]:
    for index in range(start, start + n):
        yield make_task(index, seed=seed, split=split, options=options)
