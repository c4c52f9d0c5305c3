"""The offline keyword extractor: review attributes ("quiet", "clean" …) counted from
the lexicon's Korean and English words, with their opposites counted against them. It
is what runs without an LLM partner, when the partner's budget is spent or its circuit
is open — and what the local stand-in of the partner answers with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from search.lexicon import lexicon
from search.text import normalize

MAX_KEYWORDS = 12


@dataclass(frozen=True)
class Extraction:
    tags: list[str]
    keywords: list[str]
    tokens: int = 0
    source: str = "offline"


def _mentions(text: str, words: Sequence[str]) -> bool:
    return any(word in text for word in words)


def extract_offline(*, description: str, reviews: Sequence[str]) -> Extraction:
    attributes = lexicon().attributes
    texts = [normalize(text) for text in reviews if text]
    about = normalize(description)
    tags: list[str] = []
    for tag, names in attributes.items():
        positive_words = [normalize(word) for word in (*names["ko"], *names["en"])]
        negative_words = [normalize(word) for word in (*names.get("negative_ko", ()), *names.get("negative_en", ()))]
        positive = sum(1 for text in texts if _mentions(text, positive_words) and not _mentions(text, negative_words))
        negative = sum(1 for text in texts if _mentions(text, negative_words))
        if _mentions(about, positive_words):
            positive += 2
        enough = max(2, round(0.2 * len(texts))) if len(texts) > 3 else 1
        if positive >= enough and positive > 2 * negative:
            tags.append(tag)
    keywords: list[str] = []
    for tag in tags:
        keywords.extend([attributes[tag]["ko"][0], attributes[tag]["en"][0]])
    return Extraction(tags=tags, keywords=keywords[:MAX_KEYWORDS])
