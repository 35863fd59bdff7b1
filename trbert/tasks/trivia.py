"""TriviaQA (spec §9.7): long documents as up to ``--max_segment`` windows of one example,
trained with a loss normalised over all of the example's windows together.

What this file is: the span family's differences for TriviaQA — the reader (a JSON list of
``{"context", "qas": [{"question", "qid", "answers": {"Aliases": [...]}, "detected_answers":
[{"char_spans": [[start, end]]}]}]}``, end inclusive), features with a window axis
(``input_ids [N, S, T]``, every gold position of every window in ``starts``/``ends [N, S, A]``), the
shared-normalisation ("OR") loss per example (D12 fixed: loss, distillation and selector loss all
per example), decoding of the best span across windows, and the official EM/F1 over aliases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..model import MASKED
from .answer_metrics import trivia_scores
from .files import load_json, require
from .span import QAExample, SpanTask, token_span


def read_trivia(path: Path) -> list[QAExample]:
    entries = load_json(path)
    require(isinstance(entries, list), str(path), "expected a JSON list of entries")
    examples = []
    for number, entry in enumerate(entries):
        where = f"{path}: entry {number}"
        require(isinstance(entry, dict) and isinstance(entry.get("context"), str), where, 'no string "context"')
        for question in entry.get("qas", []):
            require(isinstance(question.get("question"), str), where, 'a question without "question"')
            aliases = (question.get("answers") or {}).get("Aliases", [])
            spans = [
                (int(s), int(e) + 1)
                for answer in question.get("detected_answers", [])
                for s, e in answer.get("char_spans", [])
            ]
            qid = str(question.get("qid", f"{number}"))
            examples.append(
                QAExample(qid, question["question"], entry["context"], list(aliases), where=where, spans=spans)
            )
    return examples


class TriviaTask(SpanTask):
    max_segment: int = 1
    max_num_answers: int = 64

    @property
    def settings(self) -> dict:
        return {**super().settings, "max_segment": self.max_segment, "max_num_answers": self.max_num_answers}

    def featurize(self, examples: list[QAExample], tokenizer, max_length: int, split: str = "train") -> dict:
        self.counts = {"truncated_questions": 0, "empty_contexts": 0, "questions_without_gold_span": 0}
        n, s, a = len(examples), self.max_segment, self.max_num_answers
        arrays = {
            "input_ids": np.full((n, s, max_length), tokenizer.pad_token_id or 0, dtype=np.int32),
            "token_type_ids": np.zeros((n, s, max_length), dtype=np.int8),
            "lengths": np.ones((n, s), dtype=np.int32),  # a filler window holds [CLS] only
            "offsets": np.full((n, s, max_length, 2), -1, dtype=np.int32),
            "max_context": np.zeros((n, s, max_length), dtype=bool),
            "starts": np.full((n, s, a), -1, dtype=np.int64),
            "ends": np.full((n, s, a), -1, dtype=np.int64),
        }
        arrays["input_ids"][:, :, 0] = tokenizer.cls_token_id
        for i, example in enumerate(examples):
            self._fill(arrays, i, example, tokenizer, max_length)
        return arrays

    def _fill(self, arrays, i, example, tokenizer, max_length) -> None:
        if not example.context.strip():
            self.counts["empty_contexts"] += 1
            return
        found = False
        for w, row in enumerate(self._tokenized_windows(example, tokenizer, max_length)[: self.max_segment]):
            k = len(row["ids"])
            arrays["input_ids"][i, w, :k], arrays["token_type_ids"][i, w, :k] = row["ids"], row["types"]
            arrays["lengths"][i, w] = k
            arrays["offsets"][i, w, :k], arrays["max_context"][i, w, :k] = row["offsets"], row["max_context"]
            starts, ends = _gold_positions(row["offsets"], row["context"], example.spans)
            found |= len(starts) > 0
            starts, ends = starts[: self.max_num_answers], ends[: self.max_num_answers]
            arrays["starts"][i, w, : len(starts)], arrays["ends"][i, w, : len(ends)] = starts, ends
        if not found:  # no gold anywhere: [CLS] of every window (as the original)
            self.counts["questions_without_gold_span"] += 1
            arrays["starts"][i, :, 0] = arrays["ends"][i, :, 0] = 0

    def row_loss(self, logits: torch.Tensor, batch: dict, teacher: bool = False, temperature: float = 1.0):
        """Per example: ``-(logsumexp over gold positions of all windows - logsumexp over all
        positions of all windows)``, start and end averaged; ``logits [B, S, 2, T]``."""
        b, s, _, t = logits.shape
        alive = batch["attention_mask"].bool()[:, :, None, :]
        z = logits.float().masked_fill(~alive, MASKED).transpose(1, 2).reshape(b, 2, s * t)
        if teacher:
            target = batch["teacher"].float().masked_fill(~alive, MASKED).transpose(1, 2).reshape(b, 2, s * t)
            soft = torch.softmax(target / temperature, -1)
            return -(soft * torch.log_softmax(z / temperature, -1)).sum(-1).sum(-1)
        window = torch.arange(s, device=z.device)[None, :, None] * t
        losses = []
        for i, key in enumerate(("starts", "ends")):
            gold = batch[key]
            index = (gold + window).masked_fill(gold < 0, 0).flatten(1)
            picked = z[:, i].gather(1, index).masked_fill(gold.flatten(1) < 0, float("-inf"))
            losses.append(torch.logsumexp(z[:, i], -1) - torch.logsumexp(picked, -1))
        return (losses[0] + losses[1]) / 2

    def decode(self, logits: np.ndarray, arrays: dict, examples: list[QAExample]):
        """The best span over all windows of each example (no null answer in TriviaQA)."""
        answers = {}
        for i, example in enumerate(examples):
            best = (-np.inf, "")
            for w in range(logits.shape[1]):
                offsets = arrays["offsets"][i, w]
                span = self._best_span(logits[i, w, 0], logits[i, w, 1], offsets, arrays["max_context"][i, w])
                if span is not None and span[0] > best[0]:
                    best = (span[0], example.context[offsets[span[1]][0] : offsets[span[2]][1]])
            answers[example.qid] = best[1]
        return answers, {}

    def score(self, logits: np.ndarray, arrays: dict, data_dir: str, split: str) -> dict:
        examples = self.read(data_dir, split)
        answers, _ = self.decode(logits, arrays, examples)
        return {**trivia_scores({e.qid: e.answers for e in examples}, answers), "_files": {"predictions.json": answers}}


def _gold_positions(offsets: np.ndarray, context: list[int], spans) -> tuple[list[int], list[int]]:
    """Token positions of every gold character span inside this window, duplicates removed."""
    found = sorted({pair for pair in (token_span(offsets, context, span) for span in spans) if pair is not None})
    return [s for s, _ in found], [e for _, e in found]
