"""Each replica's in-memory view of the indexed branches: the candidate pool of
recommendations, the autocomplete list and the vocabulary typos are corrected against."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import OSA
from rapidfuzz.process import extractOne

from search.backends.base import BranchDoc
from search.lexicon import lexicon
from search.text import HANGUL, analyze, jamo, normalize


@dataclass(frozen=True)
class Suggestion:
    text: str
    kind: str  # branch | place | facility
    branch_id: str | None
    weight: float


class Catalogue:
    def __init__(self) -> None:
        self.docs: dict[str, BranchDoc] = {}
        self._terms: Counter[str] = Counter()
        # Words of names, descriptions and keywords: what a typo is corrected towards
        # (review text would offer far more, and far noisier, candidates).
        self._words: Counter[str] = Counter()
        self._static = self._lexicon_suggestions()
        self._keys: list[tuple[str, int]] = []
        self._suggestions: list[Suggestion] = []
        self._vocabulary_latin: list[str] = []
        self._vocabulary_korean: list[str] = []
        self._dirty = True

    @staticmethod
    def _lexicon_suggestions() -> list[Suggestion]:
        vocabulary = lexicon()
        out = [Suggestion(place.name_ko, "place", None, 2.0) for place in vocabulary.places.values()] + [
            Suggestion(place.name_en.title(), "place", None, 2.0) for place in vocabulary.places.values()
        ]
        for ko, en in vocabulary.facilities.values():
            out.append(Suggestion(ko, "facility", None, 1.5))
            out.append(Suggestion(en, "facility", None, 1.5))
        return out

    def replace(self, docs: Iterable[BranchDoc]) -> None:
        self.docs = {doc.branch_id: doc for doc in docs}
        self._terms, self._words = Counter(), Counter()
        for doc in self.docs.values():
            self._count(doc, 1)
        self._dirty = True

    def _count(self, doc: BranchDoc, sign: int) -> None:
        words, reviews = self._doc_terms(doc)
        for term in words:
            self._words[term] += sign
        for term in words | reviews:
            self._terms[term] += sign

    def update(self, docs: Iterable[BranchDoc], gone: Iterable[str] = ()) -> None:
        for branch_id in gone:
            old = self.docs.pop(branch_id, None)
            if old is not None:
                self._count(old, -1)
        for doc in docs:
            old = self.docs.get(doc.branch_id)
            if old is not None:
                self._count(old, -1)
            self.docs[doc.branch_id] = doc
            self._count(doc, 1)
        self._dirty = True

    @staticmethod
    def _doc_terms(doc: BranchDoc) -> tuple[set[str], set[str]]:
        text = f"{doc.name} {doc.address} {doc.description} {' '.join(doc.keywords)} {' '.join(doc.tags)}"
        words = {term for term in analyze(text) if len(term) >= 2}
        reviews = {term for term in analyze(" ".join(doc.review_sample), morphology=False) if len(term) >= 2}
        return words, reviews

    def _rebuild(self) -> None:
        suggestions = list(self._static)
        for doc in self.docs.values():
            suggestions.append(Suggestion(doc.name, "branch", doc.branch_id, 1.0 + min(doc.review_count, 500) / 500))
        keyed = sorted(((jamo(normalize(item.text)), index) for index, item in enumerate(suggestions)))
        self._suggestions = suggestions
        self._keys = keyed
        known = [term for term, count in self._words.items() if count > 0]
        self._vocabulary_latin = [term for term in known if term.isascii() and len(term) >= 3]
        self._vocabulary_korean = [jamo(term) for term in known if HANGUL.fullmatch(term)]
        self._dirty = False

    def suggest(self, prefix: str, *, limit: int) -> list[Suggestion]:
        """Entries starting with ``prefix``; Korean compared letter by letter, so "강나"
        already finds "강남역" while the last syllable is being typed."""
        if self._dirty:
            self._rebuild()
        key = jamo(normalize(prefix))
        start = bisect.bisect_left(self._keys, (key, -1))
        found: list[Suggestion] = []
        for spelled, index in self._keys[start:]:
            if not spelled.startswith(key):
                break
            found.append(self._suggestions[index])
            if len(found) >= limit * 20:
                break
        seen: set[str] = set()
        unique = []
        for item in sorted(found, key=lambda item: (-item.weight, len(item.text), item.text)):
            if item.text not in seen:
                seen.add(item.text)
                unique.append(item)
        return unique[:limit]

    def knows(self, term: str) -> bool:
        return self._terms.get(term, 0) > 0

    def knows_any(self, terms: list[str]) -> bool:
        return any(self._terms.get(term, 0) > 0 for term in terms)

    def correct(self, term: str) -> str | None:
        """The indexed word closest to ``term`` (one edit per ~5 letters), if any."""
        if self._dirty:
            self._rebuild()
        if self.knows(term) or term in lexicon().known_words:
            return None
        if term.isascii():
            if len(term) < 4:
                return None
            limit = 1 if len(term) < 8 else 2
            best = extractOne(term, self._vocabulary_latin, scorer=OSA.distance, score_cutoff=limit)
            return str(best[0]) if best else None
        if HANGUL.fullmatch(term) and len(term) >= 2:
            spelled = jamo(term)
            limit = 1 if len(spelled) < 9 else 2
            best = extractOne(spelled, self._vocabulary_korean, scorer=OSA.distance, score_cutoff=limit)
            return _compose(str(best[0])) if best else None
        return None


_CHO = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_JUNG = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_JONG = ["", *"ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"]


def _compose(spelled: str) -> str:
    """Inverse of :func:`search.text.jamo` for strings it produced (three letters per
    syllable, the last possibly empty — so split greedily)."""
    out: list[str] = []
    index = 0
    while index < len(spelled):
        char = spelled[index]
        if char in _CHO and index + 1 < len(spelled) and spelled[index + 1] in _JUNG:
            cho, jung = _CHO.index(char), _JUNG.index(spelled[index + 1])
            jong = 0
            nxt = spelled[index + 2] if index + 2 < len(spelled) else ""
            after = spelled[index + 3] if index + 3 < len(spelled) else ""
            if nxt and nxt in _JONG and not (after in _JUNG and after):
                jong = _JONG.index(nxt)
                index += 3
            else:
                index += 2
            out.append(chr(0xAC00 + cho * 588 + jung * 28 + jong))
        else:
            out.append(char)
            index += 1
    return "".join(out)
