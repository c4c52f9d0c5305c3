"""What the query parser recognises, kept as data (``search/data/*.json``): Seoul's
stations and districts, facilities, review attributes, hours and words without meaning
for search — in Korean and English — and the fuzzy phrase matcher over them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from rapidfuzz.distance import OSA
from rapidfuzz.process import cdist

from search.text import Word, jamo, normalize, words

PhraseKind = Literal["place", "facility", "attribute", "open_24h", "open_now", "near_me", "cheap", "top_rated", "stop"]


@dataclass(frozen=True)
class Place:
    id: str
    kind: Literal["station", "district"]
    name_ko: str
    name_en: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Phrase:
    kind: PhraseKind
    key: str  # the place id, facility or attribute tag; the kind again for flags
    text: str  # normalised, spaces removed
    spelled: str  # jamo of text
    size: int  # words in the phrase
    negative: bool = False


@dataclass(frozen=True)
class Match:
    phrase: Phrase
    first: int  # word index
    last: int  # inclusive
    exact: bool
    surface: str


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("search.data").joinpath(name).read_text(encoding="utf-8"))
    return data


class Lexicon:
    def __init__(self, gazetteer: dict[str, Any], vocabulary: dict[str, Any]) -> None:
        self.places = {
            item["id"]: Place(item["id"], item["kind"], item["ko"][0], item["en"][0], item["lat"], item["lon"])
            for item in gazetteer["places"]
        }
        self.facilities: dict[str, tuple[str, str]] = {
            tag: (names["ko"][0], names["en"][0]) for tag, names in vocabulary["facilities"].items()
        }
        self.attributes: dict[str, dict[str, list[str]]] = vocabulary["attributes"]
        # Every word of every name of a place: what is left of a long place name after
        # the matcher took a shorter one ("guro digital [complex]") is not a search word.
        self.place_words: dict[str, set[str]] = {
            item["id"]: {word.form for name in (*item["ko"], *item["en"]) for word in words(normalize(name))}
            for item in gazetteer["places"]
        }
        phrases: list[Phrase] = []
        for item in gazetteer["places"]:
            for name in (*item["ko"], *item["en"]):
                phrases.append(self._phrase("place", item["id"], name))
        for tag, names in vocabulary["facilities"].items():
            for name in (*names["ko"], *names["en"]):
                phrases.append(self._phrase("facility", tag, name))
        for tag, names in self.attributes.items():
            for name in (*names["ko"], *names["en"]):
                phrases.append(self._phrase("attribute", tag, name))
            for name in (*names.get("negative_ko", ()), *names.get("negative_en", ())):
                phrases.append(self._phrase("attribute", tag, name, negative=True))
        flags: tuple[PhraseKind, ...] = ("open_24h", "open_now", "near_me", "cheap", "top_rated")
        for flag in flags:
            for name in (*vocabulary[flag]["ko"], *vocabulary[flag]["en"]):
                phrases.append(self._phrase(flag, flag, name))
        for name in (*vocabulary["stopwords"]["ko"], *vocabulary["stopwords"]["en"]):
            phrases.append(self._phrase("stop", "stop", name))
        # Longest first: "gangnam station" wins over "gangnam".
        self.phrases = sorted(
            (phrase for phrase in phrases if phrase.text), key=lambda phrase: (-phrase.size, -len(phrase.text))
        )
        self._exact: dict[tuple[int, str], Phrase] = {}
        for phrase in self.phrases:
            self._exact.setdefault((phrase.size, phrase.text), phrase)
        self._fuzzy = [phrase for phrase in self.phrases if phrase.kind != "stop"]
        self.known_words = {phrase.text for phrase in self.phrases if phrase.size == 1}

    @staticmethod
    def _phrase(kind: PhraseKind, key: str, name: str, *, negative: bool = False) -> Phrase:
        found = words(normalize(name))
        text = "".join(word.form for word in found) if found else ""
        return Phrase(kind, key, text, jamo(text), max(1, len(found)), negative)

    def match(self, text: str, found: Sequence[Word], *, fuzzy: bool = True) -> list[Match]:
        """Phrases in ``found`` (the words of normalised ``text``), non-overlapping, longest
        first; exact matches before fuzzy ones (one edit per ~5 letters, transpositions
        cost one)."""
        taken = [False] * len(found)
        matches: list[Match] = []
        for size in (3, 2, 1):
            for first in range(len(found) - size + 1):
                last = first + size - 1
                if any(taken[first : last + 1]):
                    continue
                key = "".join(word.form for word in found[first : last + 1])
                phrase = self._exact.get((size, key))
                if phrase is None and size > 1:
                    # Korean compounds split by Kiwi ("24" + "시간") match a one-word phrase.
                    phrase = self._exact.get((1, key))
                if phrase is not None:
                    matches.append(Match(phrase, first, last, True, text[found[first].start : found[last].end]))
                    for index in range(first, last + 1):
                        taken[index] = True
        if fuzzy:
            matches.extend(self._fuzzy_matches(text, found, taken))
        return sorted(matches, key=lambda match: match.first)

    def _fuzzy_matches(self, text: str, found: Sequence[Word], taken: list[bool]) -> list[Match]:
        windows: list[tuple[int, int, str]] = []
        for size in (2, 1):
            for first in range(len(found) - size + 1):
                last = first + size - 1
                if any(taken[first : last + 1]):
                    continue
                surface = "".join(word.form for word in found[first : last + 1])
                if len(surface) >= 3 and not surface.isdigit():
                    windows.append((first, last, surface))
        if not windows:
            return []
        distances = cdist(
            [jamo(surface) for _, _, surface in windows],
            [phrase.spelled for phrase in self._fuzzy],
            scorer=OSA.distance,
            score_cutoff=2,
            workers=1,
        )
        matches: list[Match] = []
        # Best window first, each word used once.
        ranked: list[tuple[float, int, int]] = []
        for row, (_first, _last, surface) in enumerate(windows):
            for column, phrase in enumerate(self._fuzzy):
                distance = int(distances[row][column])
                if distance <= _allowed_edits(phrase.spelled) and distance <= _allowed_edits(jamo(surface)):
                    ranked.append((distance / len(phrase.spelled), row, column))
        # Fewest edits per letter first; on a tie the window of more words.
        ranked.sort(key=lambda item: (round(item[0], 3), -(windows[item[1]][1] - windows[item[1]][0]), item[2]))
        for _distance, row, column in ranked:
            first, last, surface = windows[row]
            if any(taken[first : last + 1]):
                continue
            for index in range(first, last + 1):
                taken[index] = True
            matches.append(Match(self._fuzzy[column], first, last, False, text[found[first].start : found[last].end]))
        return matches


def _allowed_edits(spelled: str) -> int:
    if len(spelled) <= 4:
        return 0
    if len(spelled) <= 9:
        return 1
    return 2


@cache
def lexicon() -> Lexicon:
    return Lexicon(_load("gazetteer.json"), _load("vocabulary.json"))
