"""The search terms of a message's text and the matching rule of a search (docs/decisions.md#message-search).

Text is compared in one form: NFKC, case-folded (`normalize`), so `Hello`, `HELLO` and its full-width form
are the same word. It is cut into segments: words (letters, digits and combining marks, as in space-separated
scripts) and CJK runs (Han, Hiragana, Katakana, Hangul: no spaces between words). A message is found by a query
when every query word starts some word of the message (`hel` finds `Hello`) and every query CJK run lies inside
one of its CJK runs (`世界` finds `你好世界`). The index holds, per message, each word's prefixes of 2 to
MAX_PREFIX characters and each CJK run's character bigrams: every query word or run of 2 characters or more has a
term (its own MAX_PREFIX-prefix, or any of its bigrams) that every matching message was indexed under. Only the
first MAX_TERMS distinct terms of a message are indexed, and the rule looks at the same part of the text
(`indexed_segments`), so what the index finds and what the rule accepts are the same messages.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

# Word prefixes are indexed up to this length; a longer query word is looked up by its first MAX_PREFIX
# characters, and the rest of it is checked against the text.
MAX_PREFIX = 8
# At most this many distinct terms per message: bounds the index write of one send (one document each per
# reader scope) on both stores; a longer message is found by its beginning.
MAX_TERMS = 64
# The shortest query, in characters (after normalising and trimming), and the longest.
MIN_QUERY = 2
MAX_QUERY = 200

SegmentKind = Literal["word", "cjk"]

# Code point ranges written without spaces between words: indexed by character bigrams.
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # iteration mark, closing mark, ideographic zero
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul Jamo extended A
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xD7B0, 0xD7FF),  # Hangul Jamo extended B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B to G, compatibility supplement
)


def normalize(text: str) -> str:
    """The form text is compared in: NFKC, case-folded, NFKC again (case folding can leave text unnormalised)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _kind(char: str) -> SegmentKind | None:
    if is_cjk(char):
        return "cjk"
    if char.isalnum() or unicodedata.category(char).startswith("M"):
        return "word"
    return None  # spaces, punctuation, symbols, emoji: between segments


def segments(text: str) -> list[tuple[SegmentKind, str]]:
    """The words and CJK runs of normalised text, in order."""
    out: list[tuple[SegmentKind, str]] = []
    kind: SegmentKind | None = None
    start = 0
    for i, char in enumerate(text):
        this = _kind(char)
        if this != kind:
            if kind is not None:
                out.append((kind, text[start:i]))
            kind, start = this, i
    if kind is not None:
        out.append((kind, text[start:]))
    return out


def segment_terms(kind: SegmentKind, text: str) -> list[str]:
    """A word's prefixes of 2 to MAX_PREFIX characters; a CJK run's bigrams (a lone character has none)."""
    if kind == "word":
        return [text[:k] for k in range(2, min(len(text), MAX_PREFIX) + 1)]
    return [text[i : i + 2] for i in range(len(text) - 1)]


def indexed_segments(text: str) -> tuple[list[tuple[SegmentKind, str]], list[str]]:
    """The segments of a message's text that the index covers, and their distinct terms in order of appearance.

    Segments are taken whole while their new terms fit within MAX_TERMS; a CJK run that does not fit is cut to the
    characters whose bigrams fit; the first segment that does not fit ends the indexed part.
    """
    taken: list[tuple[SegmentKind, str]] = []
    terms: list[str] = []
    seen: set[str] = set()
    for kind, segment in segments(normalize(text)):
        new = [term for term in dict.fromkeys(segment_terms(kind, segment)) if term not in seen]
        if len(terms) + len(new) <= MAX_TERMS:
            taken.append((kind, segment))
            terms.extend(new)
            seen.update(new)
            continue
        if kind == "cjk":
            end = 1
            while end < len(segment) and (len(terms) < MAX_TERMS or segment[end - 1 : end + 1] in seen):
                bigram = segment[end - 1 : end + 1]
                if bigram not in seen:
                    terms.append(bigram)
                    seen.add(bigram)
                end += 1
            if end > 1:
                taken.append((kind, segment[:end]))
        break
    return taken, terms


def message_terms(text: str) -> list[str]:
    """The distinct terms a message's text is indexed under (at most MAX_TERMS)."""
    return indexed_segments(text)[1]


class QueryError(ValueError):
    """A query that cannot be searched for: the reason, for the 400 answer."""


@dataclass(frozen=True)
class Query:
    """A parsed search: the words and CJK runs a message must contain, and the term the index is walked by."""

    words: tuple[str, ...]
    runs: tuple[str, ...]
    term: str

    @classmethod
    def parse(cls, q: str) -> Query:
        text = normalize(q).strip()
        if len(text) < MIN_QUERY:
            raise QueryError(f"`q` must have at least {MIN_QUERY} characters")
        if len(text) > MAX_QUERY:
            raise QueryError(f"`q` must have at most {MAX_QUERY} characters")
        parts = segments(text)
        words = tuple(dict.fromkeys(s for kind, s in parts if kind == "word"))
        runs = tuple(dict.fromkeys(s for kind, s in parts if kind == "cjk"))
        # The most selective term: the longest word prefix; a CJK bigram counts as a 3-to-4-letter prefix.
        candidates: list[tuple[float, str]] = [(min(len(w), MAX_PREFIX), w[:MAX_PREFIX]) for w in words if len(w) >= 2]
        candidates += [(3.5, run[:2]) for run in runs if len(run) >= 2]
        if not candidates:
            raise QueryError("`q` must contain a word of 2 letters or more, or 2 CJK characters in a row")
        return cls(words=words, runs=runs, term=max(candidates, key=lambda c: c[0])[1])

    def matches(self, text: str) -> bool:
        """Whether a message's text is found by this query: within its indexed part, every query word starts one
        of its words and every query CJK run lies inside one of its CJK runs."""
        taken, _ = indexed_segments(text)
        words = [s for kind, s in taken if kind == "word"]
        runs = [s for kind, s in taken if kind == "cjk"]
        return all(any(w.startswith(qw) for w in words) for qw in self.words) and all(
            any(qr in r for r in runs) for qr in self.runs
        )
