"""The answer text of a predicted word-piece span, as the original's "final text" step finds it.

What this file is: :func:`final_text` — given the predicted word pieces joined into text and the
whole words they lie in, the part of those words the pieces cover (so a span that ends inside a
word, or before the punctuation glued to it, is trimmed there); whole words when the two cannot
be aligned. The original (``run_hotpot.py``) calls the SQuAD reference code's step for this; the
behaviour here is the same, written from its description: the words are split as BERT's basic
tokenizer splits them (white space, punctuation, optional lower-casing with accents removed),
the pieces' text is found in that, and the match is mapped back to the words' characters by
ignoring spaces on both sides.
"""

from __future__ import annotations

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer


def basic_tokens(text: str, lower: bool) -> list[str]:
    """``text`` split as BERT's basic tokenizer splits it (control characters removed, CJK
    characters apart, white space and punctuation split; with ``lower`` lower-cased and accents
    removed)."""
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower, lowercase=lower)
    return [word for word, _ in BertPreTokenizer().pre_tokenize_str(normalizer.normalize_str(text))]


def pieces_text(pieces: list[str]) -> str:
    """Word pieces joined into text: ``##`` continuations glued to what precedes them, white
    space collapsed."""
    return " ".join(" ".join(pieces).replace(" ##", "").replace("##", "").split())


def final_text(predicted: str, words: str, lower: bool) -> str:
    """The part of ``words`` (the whole words the prediction lies in) that the predicted pieces'
    text ``predicted`` covers; ``words`` itself when they cannot be aligned (the prediction is not
    in the words' basic tokens, or the two differ other than by spaces, e.g. removed accents)."""
    tokenized = " ".join(basic_tokens(words, lower))
    start = tokenized.find(predicted)
    if start < 0 or not predicted:
        return words
    end = start + len(predicted) - 1
    word_chars = [i for i, ch in enumerate(words) if ch != " "]  # non-space characters, in order
    token_chars = {i: k for k, i in enumerate(i for i, ch in enumerate(tokenized) if ch != " ")}
    if len(word_chars) != len(token_chars) or start not in token_chars or end not in token_chars:
        return words
    return words[word_chars[token_chars[start]] : word_chars[token_chars[end]] + 1]
