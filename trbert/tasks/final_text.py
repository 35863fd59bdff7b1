"""The answer text of a predicted word-piece span, as the original's "final text" step finds it.

:func:`final_text`: the part of the whole words that the predicted pieces cover (a span ending
inside a word, or before punctuation glued to it, is trimmed there); whole words when the two
cannot be aligned. As the SQuAD reference code's step that the original (``run_hotpot.py``) calls,
written from its description: the words are split as BERT's basic tokenizer splits them, the
pieces' text is found in that, and the match is mapped back ignoring spaces on both sides.
"""

from __future__ import annotations

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer


def pieces_text(pieces: list[str]) -> str:
    """Word pieces joined into text (``##`` continuations glued on, white space collapsed)."""
    return " ".join(" ".join(pieces).replace(" ##", "").replace("##", "").split())


def final_text(predicted: str, words: str, lower: bool) -> str:
    """The part of ``words`` (the whole words the prediction lies in) that the predicted pieces'
    text ``predicted`` covers; ``words`` itself when they cannot be aligned (the prediction is not
    in the words' basic tokens, or the two differ other than by spaces, e.g. removed accents)."""
    # BERT's basic tokenizer: control characters removed, CJK characters apart, white space and
    # punctuation split; with ``lower`` lower-cased and accents removed
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower, lowercase=lower)
    tokenized = " ".join(word for word, _ in BertPreTokenizer().pre_tokenize_str(normalizer.normalize_str(words)))
    start = tokenized.find(predicted)
    if start < 0 or not predicted:
        return words
    end = start + len(predicted) - 1
    word_chars = [i for i, ch in enumerate(words) if ch != " "]  # non-space characters, in order
    token_chars = {i: k for k, i in enumerate(i for i, ch in enumerate(tokenized) if ch != " ")}
    if len(word_chars) != len(token_chars) or start not in token_chars or end not in token_chars:
        return words
    return words[word_chars[token_chars[start]] : word_chars[token_chars[end]] + 1]
