"""HotpotQA (the JSON releases ``hotpot_train_v1.1.json`` and ``hotpot_dev_{distractor,fullwiki}_v1.json``)
-> the paragraph-packed JSON lines the HotpotQA script reads.

Writes ``hotpot_train_graph.json`` (from the training release) and ``rerank_dev_tok.json`` (from
the dev release of ``--setting``): one question per line, ``{"qid", "question", "answer", "node":
[paragraph, ...]}``, each paragraph ``{"name"`` (title), ``"context"`` (its word pieces),
``"spans"`` (``[start, end]`` inclusive in ``context``), ``"sent_pos"`` (``[start, end)`` of every
sentence in ``context``), ``"supp_label"`` (0/1 per sentence), ``"has_supp"}``; dev paragraphs
also carry ``"doc_tokens"`` (the words) and ``"tok_to_orig_index"`` (the word of every piece).

- Words and pieces: a sentence's words are its whitespace-separated tokens; the pieces come from
  ``--tokenizer`` (a fast WordPiece tokenizer; use the one of the model you fine-tune).
- Paragraph order. Training: the gold paragraphs (the titles of the supporting facts, in their
  order) first, then the others in release order; the HotpotQA task reorders the others itself.
  Dev: all paragraphs by TF-IDF similarity of title + text to the question. The original dev file
  was ordered by the Transformer-XH paragraph re-ranker, whose model and outputs are not public,
  so this ordering is a stand-in.
- Answer spans: every occurrence of the answer's word pieces (lower-cased) in a gold paragraph's
  pieces, starting and ending on word boundaries (the piece after a match does not continue a
  word); ``yes`` / ``no`` answers have none.
- Supporting facts: a fact whose title is not among the paragraphs (fullwiki dev) is counted and
  skipped; a fact pointing past its paragraph's sentences is refused, naming the question and the
  title (``--drop_bad_facts`` drops such facts instead, counted).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from ..errors import InputError
from .common import Release, iter_json_list, rank_paragraphs

TRAIN = "hotpot_train_v1.1.json"
DEV = {"fullwiki": "hotpot_dev_fullwiki_v1.json", "distractor": "hotpot_dev_distractor_v1.json"}
OUTPUT = {"train": "hotpot_train_graph.json", "dev": "rerank_dev_tok.json"}
MEMBER = re.compile(r"(?:^|/)(hotpot_(?:train_v1\.1|dev_distractor_v1|dev_fullwiki_v1)\.json)$")
YES_NO = ("yes", "no")


def add_arguments(parser) -> None:
    parser.add_argument("--setting", choices=tuple(DEV), default="fullwiki", help="which dev release to convert")
    parser.add_argument("--tokenizer", default="bert-base-uncased", help="name or folder of the WordPiece tokenizer")
    parser.add_argument(
        "--drop_bad_facts", action="store_true", help="drop supporting facts past their paragraph instead of refusing"
    )


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise InputError(f"--tokenizer {name}: cannot be loaded ({e})") from None
    if not tokenizer.is_fast:
        raise InputError(f"--tokenizer {name}: a fast tokenizer is needed (word ids of every piece)")
    return tokenizer


def _check(item, where: str) -> str:
    """The question id of a well-formed release item, else an error naming it."""
    qid = item.get("_id") if isinstance(item, dict) else None
    fields = isinstance(qid, str) and isinstance(item.get("question"), str) and isinstance(item.get("answer"), str)
    if not fields:
        raise InputError(f'{where}: an item without string "_id", "question" and "answer"')
    context = item.get("context")
    ok = isinstance(context, list) and context
    ok = ok and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], list) for p in context
    )
    if not ok:
        raise InputError(f'{where}: question {qid}: "context" must be a non-empty list of [title, [sentences]]')
    facts = item.get("supporting_facts", [])
    if not isinstance(facts, list) or not all(
        isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) for f in facts
    ):
        raise InputError(f'{where}: question {qid}: "supporting_facts" must be a list of [title, sentence index]')
    return qid


def _facts(item, qid, where, drop_bad, counts) -> dict[str, set[int]]:
    """Supporting sentence indices per title present in the context."""
    sizes = {title: len(sentences) for title, sentences in item["context"]}
    facts: dict[str, set[int]] = {}
    for title, index in item.get("supporting_facts", []):
        if title not in sizes:
            counts["facts_outside_context"] += 1
            continue
        if not isinstance(index, int) or not 0 <= index < sizes[title]:
            if drop_bad:
                counts["dropped_facts"] += 1
                continue
            raise InputError(
                f"{where}: question {qid}: supporting fact [{title!r}, {index}] points past the paragraph's"
                f" {sizes[title]} sentences (--drop_bad_facts drops such facts)"
            )
        facts.setdefault(title, set()).add(index)
    return facts


def _pieces(tokenizer, sentences: list[list[str]]) -> list[tuple[list[str], list[int]]]:
    """``(pieces, word index of every piece)`` per sentence (given as words), in one tokenizer call."""
    filled = [words for words in sentences if words]
    encoded = tokenizer(filled, is_split_into_words=True, add_special_tokens=False) if filled else None
    result, k = [], 0
    for words in sentences:
        if not words:
            result.append(([], []))
            continue
        ids = encoded.word_ids(k)
        result.append((encoded.tokens(k), [0 if i is None else i for i in ids]))
        k += 1
    return result


def find_spans(context: list[str], answer: list[str]) -> list[list[int]]:
    """``[start, end]`` (inclusive) of every word-aligned occurrence of ``answer`` in ``context``."""
    n, low, target = len(answer), [p.lower() for p in context], [p.lower() for p in answer]
    if not n:
        return []
    return [
        [i, i + n - 1]
        for i in range(len(low) - n + 1)
        if low[i] == target[0] and low[i : i + n] == target and not (i + n < len(low) and low[i + n].startswith("##"))
    ]


def _node(title, sentences, pieces, facts, answer, with_words) -> dict:
    context, sent_pos, words, origin = [], [], [], []
    for sentence, (tokens, ids) in zip(sentences, pieces, strict=True):
        start = len(context)
        context += tokens
        origin += [len(words) + i for i in ids]
        words += sentence
        sent_pos.append([start, len(context)])
    supp = [int(k in facts) for k in range(len(sentences))]
    node = {
        "name": title,
        "context": context,
        "spans": find_spans(context, answer) if answer is not None else [],
        "sent_pos": sent_pos,
        "supp_label": supp,
        "has_supp": any(supp),
    }
    if with_words:
        node.update(doc_tokens=words, tok_to_orig_index=origin)
    return node


def convert_question(item, where, tokenizer, training, drop_bad=False, counts=None) -> dict:
    """One release item -> one output line (see the module docstring)."""
    counts = Counter() if counts is None else counts
    qid = _check(item, where)
    facts = _facts(item, qid, where, drop_bad, counts)
    titles = [title for title, _ in item["context"]]
    gold = [titles.index(t) for t in dict.fromkeys(t for t, _ in item.get("supporting_facts", [])) if t in titles]
    if training:
        order = gold + [i for i in range(len(titles)) if i not in gold]
        counts["without_two_gold"] += len(gold) != 2
    else:
        texts = [" ".join([str(t), *map(str, s)]) for t, s in item["context"]]
        order = rank_paragraphs(item["question"], texts)
    words = [[str(s).split() for s in sentences] for _, sentences in item["context"]]
    pieces = _pieces(tokenizer, [sentence for paragraph in words for sentence in paragraph])
    yes_no = item["answer"].strip().lower() in YES_NO
    answer = None if yes_no else tokenizer.tokenize(item["answer"])
    nodes, first = [], [0]
    for paragraph in words:
        first.append(first[-1] + len(paragraph))
    for i in order:
        title = str(titles[i])
        own = answer if i in gold else None
        own_pieces = pieces[first[i] : first[i + 1]]
        nodes.append(_node(title, words[i], own_pieces, facts.get(title, set()), own, not training))
    counts["questions"] += 1
    counts["yes_no"] += yes_no
    counts["with_answer_span"] += any(node["spans"] for node in nodes)
    return {"qid": qid, "question": item["question"], "answer": item["answer"], "node": nodes}


def convert(
    release: Release, out: Path, setting: str = "fullwiki", tokenizer: str = "bert-base-uncased", drop_bad_facts=False
) -> dict:
    files = release.find(MEMBER, names={TRAIN, DEV[setting]})
    for name in (TRAIN, DEV[setting]):
        if name not in files:
            raise InputError(f"{release.source}: {name} not found (the HotpotQA release files)")
    pieces = load_tokenizer(tokenizer)
    counts = {}
    for split, name in (("train", TRAIN), ("dev", DEV[setting])):
        where, tally = release.where(files[name]), Counter()
        for key in ("questions", "yes_no", "with_answer_span", "facts_outside_context", "dropped_facts"):
            tally[key] = 0
        with open(out / OUTPUT[split], "w", encoding="utf-8") as f:
            for item in iter_json_list(files[name], where):
                line = convert_question(item, where, pieces, split == "train", drop_bad_facts, tally)
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        if not tally["questions"]:
            raise InputError(f"{where}: no questions")
        counts[OUTPUT[split]] = dict(tally)
    return counts
