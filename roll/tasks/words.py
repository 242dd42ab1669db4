"""Fixed vocabularies of the embedded task family: secret words, file stems, folders.

Kept in one place because the tiny model's tokenizer is trained on text built from them (so that every secret word is
one token) and the task generator samples from them. Changing a list changes the tokenizer's cache key."""
from __future__ import annotations

import random

SECRET_WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "tiger", "maple", "ocean", "piano", "lemon", "eagle",
    "candle", "garden", "silver", "forest", "rocket", "pencil", "window", "dragon", "castle", "island",
    "orange", "yellow", "purple", "planet", "bridge", "button", "carpet", "cookie", "copper", "cotton",
    "desert", "dinner", "falcon", "finger", "flower", "ginger", "guitar", "hammer", "helmet", "jacket",
    "kitten", "ladder", "magnet", "marble", "meadow", "mirror", "monkey", "needle", "parrot", "pepper",
    "pillow", "pocket", "puzzle", "rabbit", "saddle", "salmon", "shadow", "spider", "spring", "summer",
    "ticket", "tomato", "tunnel", "turtle", "velvet", "violin", "walnut", "winter", "wizard", "zebra",
    "anchor", "basket", "beacon", "cherry", "coffee", "comet", "crystal", "dolphin", "engine", "feather",
    "glacier", "harbor", "lantern", "melon", "nectar", "oyster", "pebble", "quartz", "raven", "sparrow",
    "thunder", "tulip", "valley", "willow", "amber", "badger", "bamboo", "cactus", "cedar", "daisy",
)

FILE_STEMS: tuple[str, ...] = (
    "memo", "note", "todo", "draft", "log", "plan", "list", "ideas", "hint", "clue", "letter", "diary",
)

FOLDERS: tuple[str, ...] = ("docs", "notes", "tmp", "data", "inbox", "misc")

DECOY_PHRASES: tuple[str, ...] = (
    "The decoy word is {word}.",
    "Ignore this file. It says {word}.",
    "Old draft: {word} (not the secret).",
)


def fresh_path(rng: random.Random, taken: set[str]) -> str:
    """A random `folder/stemNN.txt` not in `taken` (added to it)."""
    while True:
        path = f"{rng.choice(FOLDERS)}/{rng.choice(FILE_STEMS)}{rng.randint(1, 99)}.txt"
        if path not in taken:
            taken.add(path)
            return path
