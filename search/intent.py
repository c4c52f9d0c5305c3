"""Rule-based reading of a search query: place, "near me", hours, facilities, price,
rating and review attributes become filters and boosts; what is left is matched as text.

No model and no network on this path: regular expressions for amounts, then the
lexicon's phrase matcher (typo-tolerant) over the query's words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from search.lexicon import Place, lexicon
from search.text import analyze_query_words, normalize, words

_KRW_MAN = re.compile(r"(\d+(?:\.\d+)?)\s*만\s*원?\s*(?:이하|미만|아래|까지|안쪽|以下)?")
_KRW_WON = re.compile(r"(\d{1,3}(?:,\d{3})+|\d{4,})\s*원\s*(?:이하|미만|아래|까지)?")
_EN_PRICE = re.compile(
    r"(?:under|below|less than|max|up to|cheaper than|<)\s*(?:₩|krw\s*)?(\d[\d,]*(?:\.\d+)?)\s*(k)?\s*(?:won|krw)?\b"
)
_RATING = re.compile(
    r"(?:평점|별점|rated|rating)\s*(\d(?:\.\d)?)\s*(?:점)?\s*(?:이상|\+|or more|and up|above)?"
    r"|(\d(?:\.\d)?)\s*(?:\+\s*)?(?:stars?|점)\s*(?:이상|\+|or more|and up|and above)?"
)
# A cheap gym and a well-rated one, when the query says so without a number.
CHEAP_MONTHLY_KRW = 50_000
TOP_RATED_MIN = 4.0


@dataclass
class ParsedQuery:
    text: str
    place: Place | None = None
    near_me: bool = False
    facilities: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    avoid_attributes: list[str] = field(default_factory=list)
    open_24h: bool = False
    open_now: bool = False
    price_max_krw: int | None = None
    cheap: bool = False
    rating_min: float | None = None
    top_rated: bool = False
    # Words left for full-text matching: their surfaces (for highlights) and index terms.
    free_words: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    corrections: dict[str, str] = field(default_factory=dict)

    @property
    def structured(self) -> bool:
        return bool(
            self.place or self.near_me or self.facilities or self.open_24h or self.open_now or self.attributes
        ) or (self.price_max_krw is not None or self.rating_min is not None or self.cheap or self.top_rated)


def parse(query: str) -> ParsedQuery:
    text = normalize(query)
    parsed = ParsedQuery(text=text)
    text = _take_amounts(text, parsed)
    found = words(text)
    vocabulary = lexicon()
    used: set[int] = set()
    for match in vocabulary.match(text, found):
        phrase = match.phrase
        used.update(range(match.first, match.last + 1))
        canonical = _canonical(phrase.kind, phrase.key)
        if not match.exact and canonical:
            parsed.corrections[match.surface] = canonical
        if phrase.kind == "place":
            if parsed.place is None or (
                parsed.place.kind == "district" and vocabulary.places[phrase.key].kind == "station"
            ):
                parsed.place = vocabulary.places[phrase.key]
        elif phrase.kind == "facility":
            _add(parsed.facilities, phrase.key)
        elif phrase.kind == "attribute":
            _add(parsed.avoid_attributes if phrase.negative else parsed.attributes, phrase.key)
        elif phrase.kind == "open_24h":
            parsed.open_24h = True
        elif phrase.kind == "open_now":
            parsed.open_now = True
        elif phrase.kind == "near_me":
            parsed.near_me = True
        elif phrase.kind == "cheap":
            parsed.cheap = True
        elif phrase.kind == "top_rated":
            parsed.top_rated = True
    if parsed.place is not None:
        parsed.near_me = False  # "강남역 근처" is near the station, not near the caller
    place_words = vocabulary.place_words.get(parsed.place.id, set()) if parsed.place else set()
    free = [word for index, word in enumerate(found) if index not in used and word.form not in place_words]
    parsed.free_words = [text[word.start : word.end] for word in free]
    parsed.terms = analyze_query_words([word.form for word in free])
    return parsed


def _take_amounts(text: str, parsed: ParsedQuery) -> str:
    def price_man(match: re.Match[str]) -> str:
        parsed.price_max_krw = int(float(match.group(1)) * 10_000)
        return " "

    def price_won(match: re.Match[str]) -> str:
        parsed.price_max_krw = int(match.group(1).replace(",", ""))
        return " "

    def price_en(match: re.Match[str]) -> str:
        amount = float(match.group(1).replace(",", ""))
        parsed.price_max_krw = int(amount * (1000 if match.group(2) else 1))
        return " "

    def rating(match: re.Match[str]) -> str:
        value = float(match.group(1) or match.group(2))
        if not 0 < value <= 5:
            return match.group(0)
        parsed.rating_min = value
        return " "

    text = _RATING.sub(rating, text)
    text = _KRW_MAN.sub(price_man, text)
    text = _KRW_WON.sub(price_won, text)
    return _EN_PRICE.sub(price_en, text)


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def _canonical(kind: str, key: str) -> str:
    vocabulary = lexicon()
    if kind == "place":
        place = vocabulary.places[key]
        return place.name_ko
    if kind == "facility":
        return vocabulary.facilities[key][0]
    if kind == "attribute":
        return vocabulary.attributes[key]["ko"][0]
    return ""
