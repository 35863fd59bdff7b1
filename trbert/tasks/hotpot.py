"""HotpotQA (spec §9.5): paragraphs packed into one long input, answer span or yes/no, supporting facts.

What this file is: the reader of the authors' preprocessed files (one JSON object per line:
``question``, ``answer``, ``node``: paragraphs with ``name``, ``context`` (word pieces), ``spans``
(``[start, end]`` inclusive in ``context``), ``sent_pos`` (``[start, end)`` per sentence),
``supp_label``; dev lines also ``qid`` and per paragraph ``doc_tokens``/``tok_to_orig_index``),
the features (``[CLS] question [SEP]`` then ``[unused1] title [unused2] context`` per paragraph
until ``--max_seq_length``), the loss of the three heads of :class:`trbert.heads.TRBertForHotpotQA`
(empty sentence slots and padding masked, D21 fixed) and answer F1 as HotpotQA's evaluation
defines it. The paragraph order is fixed per example (the original reshuffled every epoch, which
broke the alignment with the token scores: D24 and §4.4), gold paragraphs first then shuffled
once with a seeded generator.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..model import MASKED
from ..objective import distillation_rows
from .answer_metrics import f1, normalize_answer
from .files import json_lines, require, split_file

MAX_ANSWERS, MAX_SENTENCES, MAX_QUESTION = 8, 80, 80
SWITCH = {"yes": 1, "no": 2}


@dataclass
class HotpotExample:
    qid: str
    question: str
    answer: str
    paragraphs: list[dict]  # name, context (word pieces), spans, sent_pos, supp_label, doc_tokens, tok_to_orig_index
    where: str = ""


def read_hotpot(path: Path) -> list[HotpotExample]:
    examples = []
    for where, number, item in json_lines(path):
        require(isinstance(item, dict) and isinstance(item.get("question"), str), where, 'no string "question"')
        nodes = item.get("node")
        require(isinstance(nodes, list) and nodes, where, 'no "node" list of paragraphs')
        for node in nodes:
            require(isinstance(node.get("context"), list), where, 'a paragraph without a "context" word-piece list')
        qid = str(item.get("qid", number))
        examples.append(HotpotExample(qid, item["question"], str(item.get("answer", "")), nodes, where))
    return examples


@dataclass
class HotpotTask:
    name: str = "hotpotqa"
    train_file: str = "hotpot_train_graph.json"
    predict_file: str = "rerank_dev_tok.json"
    max_answer_length: int = 30
    seed: int = 42
    family: str = "hotpot"
    head: str = "hotpot"
    num_labels: int = 7
    counts: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        return {"paragraph_order_seed": self.seed}

    def path(self, data_dir: str, split: str) -> Path:
        return split_file(data_dir, split, self.train_file, self.predict_file)

    def read(self, data_dir: str, split: str) -> list[HotpotExample]:
        examples = read_hotpot(self.path(data_dir, split))
        if not examples:
            raise InputError(f"{self.path(data_dir, split)}: the file holds no questions")
        return examples

    def featurize(self, examples: list[HotpotExample], tokenizer, max_length: int, split: str = "train") -> dict:
        rows = [self._features(i, e, tokenizer, max_length, split == "train") for i, e in enumerate(examples)]
        n = len(rows)
        arrays = {
            "input_ids": np.full((n, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, max_length), dtype=np.int8),
            "starts": np.full((n, MAX_ANSWERS), -1, dtype=np.int64),
            "ends": np.full((n, MAX_ANSWERS), -1, dtype=np.int64),
            "sent_starts": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "sent_ends": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "sent_labels": np.full((n, MAX_SENTENCES), -1, dtype=np.int64),
            "origin": np.full((n, max_length, 2), -1, dtype=np.int32),  # (paragraph, word) of every text token
        }
        for i, row in enumerate(rows):
            k = len(row["ids"])
            arrays["input_ids"][i, :k], arrays["token_type_ids"][i, :k] = row["ids"], row["types"]
            arrays["origin"][i, :k] = row["origin"]
            for key in ("starts", "ends", "sent_starts", "sent_ends", "sent_labels"):
                arrays[key][i, : len(row[key])] = row[key]
        arrays["lengths"] = np.array([len(r["ids"]) for r in rows], dtype=np.int32)
        arrays["switch"] = np.array([r["switch"] for r in rows], dtype=np.int64)
        arrays["starts"][arrays["starts"][:, 0] < 0, 0] = 0  # no span ([CLS]): yes/no answers, lost answers
        arrays["ends"][arrays["ends"][:, 0] < 0, 0] = 0
        return arrays

    def _order(self, number: int, example: HotpotExample, training: bool) -> list[int]:
        order = list(range(len(example.paragraphs)))
        if training:  # gold paragraphs 0 and 1 first, the others in a fixed random order
            rest = order[2:]
            random.Random(self.seed * 100003 + number).shuffle(rest)
            order = order[:2] + rest
        return order

    def _features(self, number, example, tokenizer, max_length, training) -> dict:
        question = tokenizer.tokenize(example.question)[:MAX_QUESTION]
        tokens = [tokenizer.cls_token, *question, tokenizer.sep_token]
        types, origin = [0] * len(tokens), [(-1, -1)] * len(tokens)
        row = {"starts": [], "ends": [], "sent_starts": [], "sent_ends": [], "sent_labels": []}
        for p in self._order(number, example, training):
            node = example.paragraphs[p]
            head = ["[unused1]", *tokenizer.tokenize(str(node.get("name", "")).replace("_", " ")), "[unused2]"]
            room = max_length - 1 - len(tokens) - len(head)
            if room <= 0:
                break
            context = node["context"][:room]
            offset = len(tokens) + len(head)
            words = node.get("tok_to_orig_index") or list(range(len(node["context"])))
            tokens += head + context
            origin += [(-1, -1)] * len(head) + [(p, words[i]) for i in range(len(context))]
            for s, e in node.get("spans", []):
                if e < len(context) and len(row["starts"]) < MAX_ANSWERS:
                    row["starts"].append(offset + s)
                    row["ends"].append(offset + e)
            labels = node.get("supp_label", [])
            for k, (s, e) in enumerate(node.get("sent_pos", [])):
                if e <= len(context) and s < e and len(row["sent_starts"]) < MAX_SENTENCES:
                    row["sent_starts"].append(offset + s)
                    row["sent_ends"].append(offset + e - 1)
                    row["sent_labels"].append(int(labels[k]) if k < len(labels) else 0)
        tokens.append(tokenizer.sep_token)
        origin.append((-1, -1))
        types += [1] * (len(tokens) - len(types))
        row.update(ids=tokenizer.convert_tokens_to_ids(tokens), types=types, origin=origin)
        row["switch"] = SWITCH.get(example.answer.strip().lower(), 0)
        return row

    def row_loss(self, logits: torch.Tensor, batch: dict, teacher: bool = False, temperature: float = 1.0):
        """Per row: span loss averaged over the gold spans, switch cross-entropy, and the mean
        supporting-fact cross-entropy over real sentences (spec §7.2; empty slots masked, D21).
        With ``teacher``: the same three terms against the teacher's distributions."""
        z = logits.float()
        alive = batch["attention_mask"].bool()
        span = z[:, :2].masked_fill(~alive[:, None], MASKED)
        switch = z[:, 2:5, 0]
        valid = batch["sent_starts"] >= 0
        sentences = z[:, 5:7].gather(2, batch["sent_starts"].clamp_min(0)[:, None].expand(-1, 2, -1)).transpose(1, 2)
        count = valid.sum(1).clamp_min(1)
        if teacher:
            t = batch["teacher"].float()
            t_span = t[:, :2].masked_fill(~alive[:, None], MASKED)
            t_sent = t[:, 5:7].gather(2, batch["sent_starts"].clamp_min(0)[:, None].expand(-1, 2, -1)).transpose(1, 2)
            span_loss = sum(distillation_rows(span[:, i], t_span[:, i], temperature) for i in (0, 1))
            sent = distillation_rows(sentences.flatten(0, 1), t_sent.flatten(0, 1), temperature).view_as(valid)
            return span_loss + distillation_rows(switch, t[:, 2:5, 0], temperature) + (sent * valid).sum(1) / count
        gold = batch["starts"] >= 0
        picked = [
            F.cross_entropy(
                span[:, i, None].expand(-1, gold.shape[1], -1).transpose(1, 2), batch[k].clamp_min(0), reduction="none"
            )
            for i, k in enumerate(("starts", "ends"))
        ]
        span_loss = ((picked[0] + picked[1]) * gold).sum(1) / (2 * gold.sum(1).clamp_min(1))
        labels = batch["sent_labels"].masked_fill(~valid, 0)
        sent = F.cross_entropy(sentences.transpose(1, 2), labels, reduction="none")
        return span_loss + F.cross_entropy(switch, batch["switch"], reduction="none") + (sent * valid).sum(1) / count

    def decode(self, logits: np.ndarray, arrays: dict, examples: list[HotpotExample]) -> dict[str, str]:
        """yes / no by the switch, else the best text span (both ends in one paragraph's text)."""
        answers = {}
        for i, example in enumerate(examples):
            switch = int(np.argmax(logits[i, 2:5, 0]))
            if switch:
                answers[example.qid] = "yes" if switch == 1 else "no"
                continue
            origin = arrays["origin"][i]
            text = origin[:, 0] >= 0
            start = np.where(text, logits[i, 0], -np.inf)
            end = np.where(text, logits[i, 1], -np.inf)
            best, answer = -np.inf, ""
            for s in np.argsort(-start)[:20]:
                for e in range(s, min(s + self.max_answer_length, len(end))):
                    if text[s] and text[e] and origin[s, 0] == origin[e, 0] and start[s] + end[e] > best:
                        best = start[s] + end[e]
                        answer = self._text(example, origin[s], origin[e])
            answers[example.qid] = answer
        return answers

    @staticmethod
    def _text(example: HotpotExample, first, last) -> str:
        node = example.paragraphs[first[0]]
        words = node.get("doc_tokens")
        if words:
            return " ".join(words[first[1] : last[1] + 1])
        pieces = node["context"][first[1] : last[1] + 1]
        return " ".join(pieces).replace(" ##", "")

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str, split: str) -> dict:
        """Answer F1 as HotpotQA's evaluation script defines it (a yes/no/noanswer that differs scores 0)."""
        examples = self.read(data_dir, split)
        answers = self.decode(logits, arrays, examples)
        total = 0.0
        for e in examples:
            gold, pred = normalize_answer(e.answer), normalize_answer(answers[e.qid])
            special = {"yes", "no", "noanswer"}
            total += 0.0 if (gold in special or pred in special) and gold != pred else f1(e.answer, answers[e.qid])
        return {"f1": 100.0 * total / len(examples), "total": len(examples), "_files": {"predictions.json": answers}}
