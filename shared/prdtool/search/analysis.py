"""Query-side text rules both engines share (no tantivy, no numpy: the AWS search function imports
this without them): stopwords, CJK runs and their bigrams, typo distances, how many words must match,
and the weights of a word's forms."""

from __future__ import annotations

import re

#: Weights of a word's other forms against an exact match (1.0), and of CJK fields.
STEM_BOOST = 0.6
FUZZY_BOOST = 0.4
PREFIX_BOOST = 0.6
PHRASE_BOOST = 1.5
TIE_BREAKER = 0.1  # a word's other matching fields add this share of their score to its best one
CJK_BOOSTS = {"cjk_head": 1.5, "cjk_body": 1.0}

#: Words that carry no meaning alone (English, German, French); dropped from a query's optional
#: terms unless the query has nothing else, kept inside quoted phrases.
_STOPWORDS_TEXT = """
a an and are as at be but by can could do does for from had has have how i if in into is it its
me my no not of on or our so such than that the their then there these they this to us was we were
what when where which who why will with would you your
aber als am an auch auf aus bei bis das dass dem den der des die ein eine einem einen einer es fur
im in ist mit nach nicht noch oder sich sie sind so um und von vor wie wir wird zu zum zur
au aux avec ce ces dans de des du elle en est et il ils je la le les leur mais ne nous on ou par
pas pour qu que qui sa se ses son sur un une vous
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

CJK_RUN = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
    "\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0002fa1f]+"
)


def has_cjk(text: str) -> bool:
    return CJK_RUN.search(text) is not None


def split_cjk(text: str) -> tuple[str, list[str]]:
    """The text without its CJK runs (replaced by spaces), and the runs."""
    return CJK_RUN.sub(" ", text), CJK_RUN.findall(text)


def grams(run: str) -> tuple[str, ...]:
    """A CJK run as the index's ``ngram(1,2)`` analyzer sees it when matched: its bigrams (one
    character alone is its own unigram)."""
    run = run.lower()
    if len(run) == 1:
        return (run,)
    return tuple(run[i : i + 2] for i in range(len(run) - 1))


def fuzzy_distance(term: str) -> int:
    """Typos tolerated in a word: none up to 4 letters, one from 5, two from 9; none in numbers."""
    if term.isdigit():
        return 0
    return 2 if len(term) >= 9 else 1 if len(term) >= 5 else 0


def enough(optional: int) -> int:
    """How many of a query's optional words (and CJK runs) a section must match: one of one or two
    (so ``title:geofence`` still finds "geofence"), half (rounded up) of three or more — so a long
    question does not match every section sharing one common word with it, which would also flood
    hybrid fusion with incidental text matches.  Sections matching more words rank higher anyway."""
    return 1 if optional <= 2 else (optional + 1) // 2
