"""Question answering with a trained TR-BERT model through ``transformers.pipeline``.

A ``transformers.Pipeline`` for extractive QA that windows the context, runs the model (its own
selection, unpadded) and decodes with the code ``--do_eval`` uses (:class:`~trbert.tasks.span.SpanTask`),
so the two answer alike. Registered as ``"trbert-question-answering"``, and as ``"question-answering"``
where the installed transformers no longer ships one (removed in the 5.x series); where it does,
that stock pipeline serves TR-BERT too. Text classification needs nothing: the stock one works.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, Pipeline
from transformers import pipelines as hf_pipelines

from ..tasks.answer_metrics import squad_scores
from ..tasks.span import QAExample, SpanTask

QA_KEYS = ("question", "context")


class TRQuestionAnsweringPipeline(Pipeline):
    """``qa(question=..., context=...)`` -> ``{"answer", "start", "end", "null_odds"}``. Options (the
    flags of ``run_squad.py``): ``max_seq_len`` (384), ``doc_stride`` (128), ``max_question_len``
    (64), ``max_answer_len`` (30), ``n_best`` (20), ``handle_impossible_answer`` (SQuAD 2.0 null
    answers) and ``null_threshold`` (0)."""

    def _sanitize_parameters(self, max_seq_len=None, doc_stride=None, max_question_len=None, max_answer_len=None,
                             n_best=None, handle_impossible_answer=None, null_threshold=None, **unused):  # fmt: skip
        given = dict(max_length=max_seq_len, doc_stride=doc_stride, max_query_length=max_question_len,
                     max_answer_length=max_answer_len, n_best_size=n_best,
                     version_2_with_negative=handle_impossible_answer, null_score_diff_threshold=null_threshold)  # fmt: skip
        settings = {k: v for k, v in given.items() if v is not None}
        return settings, {}, settings  # one key each, so a call's options add to the pipeline's own

    @staticmethod
    def _task(settings: dict) -> tuple[SpanTask, int]:
        options = {k: v for k, v in settings.items() if k != "max_length"}
        return SpanTask("pipeline", None, squad_scores, "", "", **options), settings.get("max_length", 384)

    def __call__(self, inputs=None, question=None, context=None, **kwargs):
        """``qa(question=q, context=c)``, ``qa(q, c)``, ``qa({"question": q, "context": c})`` or a
        list of such dicts (a list of answers)."""
        if isinstance(inputs, str):  # positional question (and context)
            inputs, question, context = None, inputs, context if context is not None else question
        if question is not None or context is not None:
            inputs = {"question": question, "context": context}
        items = inputs if isinstance(inputs, list) else [inputs]
        if not items or not all(isinstance(i, dict) and all(isinstance(i.get(k), str) for k in QA_KEYS) for i in items):
            raise ValueError("question answering needs question= and context= texts, or dicts of them (or a list)")
        if any(not i["context"].strip() for i in items):
            raise ValueError("question answering needs a non-empty context= text")
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs: dict, **settings):
        task, length = self._task(settings)
        if length > (positions := self.model.config.max_position_embeddings):
            raise ValueError(f"max_seq_len {length}: the model reads at most {positions} positions")
        example = QAExample("q", inputs["question"], inputs["context"], [])
        features = task.featurize([example], self.tokenizer, length, "predict", 0, Counter())
        width = int(features["lengths"].max()) if len(features["lengths"]) else 1
        ids = torch.from_numpy(features["input_ids"][:, :width]).long()
        model_inputs = {
            "input_ids": ids,
            "attention_mask": torch.arange(width)[None, :] < torch.from_numpy(features["lengths"])[:, None],
            "token_type_ids": torch.from_numpy(features["token_type_ids"][:, :width]).long(),
        }
        return {**model_inputs, "features": features, "example": example}

    def _forward(self, inputs: dict):
        out = self.model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        return {"logits": out.logits, "features": inputs["features"], "example": inputs["example"]}

    def postprocess(self, outputs: dict, **settings):
        task, length = self._task(settings)
        features, example = outputs["features"], outputs["example"]
        logits = np.full((len(features["lengths"]), 2, length), -1e4, dtype=np.float32)
        logits[..., : outputs["logits"].shape[-1]] = outputs["logits"].float().cpu().numpy()
        null, score, span = task.best_spans(logits, features).get(0, (np.inf, -np.inf, None))
        odds = float(null - score) if np.isfinite(score) else float("inf")
        if span is None or (task.version_2_with_negative and odds > task.null_score_diff_threshold):
            return {"answer": "", "start": -1, "end": -1, "null_odds": odds}
        return {"answer": example.context[span[0] : span[1]], "start": span[0], "end": span[1], "null_odds": odds}


def register() -> None:
    registry = hf_pipelines.PIPELINE_REGISTRY
    getattr(hf_pipelines, "REMOVED_TASKS", {}).pop("question-answering", None)  # its removal notice, where kept
    stock = "question-answering" in registry.get_supported_tasks()
    for name in ["trbert-question-answering"] + ["question-answering"] * (not stock):
        registry.register_pipeline(
            name, pipeline_class=TRQuestionAnsweringPipeline, pt_model=AutoModelForQuestionAnswering
        )


register()
