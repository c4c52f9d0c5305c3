"""Text analysis shared by the index and the query: one analyser on both sides, so a
word is cut the same way wherever it appears.

Korean words carry particles and endings (강남역에서, 조용한); Kiwi's morphological
analysis finds the content morphemes, and every run of Hangul also yields its syllable
bigrams, so "강남" finds "강남구" and a word Kiwi cuts oddly still matches by its parts.
Latin words are lower-cased with a light plural strip. Kiwi's model ships on PyPI
(``kiwipiepy_model``); nothing is downloaded at run time.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiwipiepy import Kiwi

HANGUL = re.compile(r"[\uac00-\ud7a3]+")
WORD = re.compile(r"[\uac00-\ud7a3]+|[a-z0-9]+(?:[.'][a-z0-9]+)*")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")
# Morpheme tags that carry meaning for search: nouns, roots, numbers, foreign words, and
# the stems of adjectives ("조용하" is kept as its root 조용 through XR).
CONTENT_TAGS = ("NNG", "NNP", "NNB", "NR", "SN", "SL", "XR", "VA", "VV", "MAG", "SH", "W_")

_CHO = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_JUNG = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_JONG = ["", *"ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"]


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become plain), lower case, one space."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def has_control_characters(text: str) -> bool:
    return CONTROL.search(text) is not None


def jamo(text: str) -> str:
    """Hangul syllables spelled out letter by letter: a typo is then one or two edits
    (샤워싷 vs 샤워실) instead of a whole different syllable."""
    out: list[str] = []
    for char in text:
        code = ord(char) - 0xAC00
        if 0 <= code < 11172:
            out.append(_CHO[code // 588])
            out.append(_JUNG[(code % 588) // 28])
            out.append(_JONG[code % 28])
        else:
            out.append(char)
    return "".join(out)


def singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def bigrams(run: str) -> list[str]:
    if len(run) < 2:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


_kiwi: Kiwi | None = None
_kiwi_lock = threading.Lock()


def kiwi() -> Kiwi:
    """The one Kiwi of the process (loading its model takes ~2 s; the first analysis
    another few): created and warmed on first use, or at start-up by :func:`warm_up`."""
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                instance = Kiwi()
                instance.tokenize("강남역 근처 헬스장")
                _kiwi = instance
    return _kiwi


def warm_up() -> None:
    kiwi()


@dataclass(frozen=True)
class Word:
    """One meaningful word of a text: its surface (as written) and its search form."""

    form: str
    start: int
    end: int
    korean: bool


@lru_cache(maxsize=4096)
def _morphemes(run: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(
        (token.form, token.start, token.start + token.len)
        for token in kiwi().tokenize(run)
        if token.tag.startswith(CONTENT_TAGS)
    )


def words(text: str) -> list[Word]:
    """Content words of normalised ``text`` in order, with their character spans: Kiwi's
    morphemes for Korean, plain words for the rest."""
    out: list[Word] = []
    for match in WORD.finditer(text):
        piece = match.group(0)
        if HANGUL.fullmatch(piece):
            morphemes = _morphemes(piece)
            if not morphemes:
                continue
            for form, start, end in morphemes:
                out.append(Word(form, match.start() + start, match.start() + end, korean=True))
        else:
            out.append(Word(singular(piece), match.start(), match.end(), korean=False))
    return out


def analyze(text: str, *, morphology: bool = True) -> list[str]:
    """Index terms of ``text``: content words plus Hangul bigrams. Without ``morphology``
    (long review texts on the bulk path), Korean gets bigrams and whole words only."""
    normalized = normalize(text)
    terms: list[str] = []
    for match in WORD.finditer(normalized):
        piece = match.group(0)
        if HANGUL.fullmatch(piece):
            if morphology:
                terms.extend(form for form, _start, _end in _morphemes(piece) if len(form) > 1 or HANGUL.match(form))
            else:
                terms.append(piece)
            terms.extend(bigrams(piece))
        else:
            terms.append(singular(piece))
    return terms


def analyze_query_words(forms: list[str]) -> list[str]:
    """Index terms for the words left in a query after parsing: the same cuts as
    :func:`analyze` gives a document."""
    terms: list[str] = []
    for form in forms:
        if HANGUL.fullmatch(form):
            terms.append(form)
            if len(form) > 2:
                terms.extend(bigrams(form))
        else:
            terms.append(form)
    return list(dict.fromkeys(terms))
