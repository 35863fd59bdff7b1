"""Tasks: one family module per kind of head, each with short dataset readers.

A task implements the protocol the loop needs: ``path``/``read`` a split into examples,
``featurize`` them into arrays (``settings``: what else changes the features), the per-row
``row_loss`` that the reward needs, and ``score`` (the metric dict; ``_files`` in it are written
next to the results). ``head`` names the model head; ``family`` the entry script's flag set.
"""

from ..errors import InputError
from .choice import RaceTask, WikihopTask
from .classify import CLASSIFICATION_TASKS, ClassificationTask, get_task
from .hotpot import HotpotTask
from .qa_readers import read_mrqa, read_squad
from .span import SpanTask
from .trivia import TriviaTask, read_trivia

FAMILIES = ("classification", "squad", "mrqa", "trivia", "hotpot", "race", "wikihop")


def make_task(args, family: str):
    """The task an entry script's arguments describe."""
    if family == "classification":
        return get_task(args.task_name)
    if family not in FAMILIES:
        raise InputError(f"unknown task family {family!r}")
    if family == "race":
        head = "choice" if args.shared_selection else "classification"
        return RaceTask(max_qa_length=args.max_qa_length, head=head, num_labels=1 if args.shared_selection else 2)
    if family == "wikihop":
        keys = ("train_file", "predict_file", "max_segment", "max_doc_len", "max_num_candidates", "doc_stride")
        return WikihopTask(**{k: getattr(args, k) for k in keys})
    if family == "hotpot":
        return HotpotTask(
            train_file=args.train_file,
            predict_file=args.predict_file,
            max_answer_length=args.max_answer_length,
            seed=args.seed,
        )
    options = {
        "train_file": args.train_file,
        "predict_file": args.predict_file,
        "doc_stride": args.doc_stride,
        "max_query_length": args.max_query_length,
        "n_best_size": args.n_best_size,
        "max_answer_length": args.max_answer_length,
        "version_2_with_negative": args.version_2_with_negative,
        "null_score_diff_threshold": args.null_score_diff_threshold,
    }
    if family == "squad":
        return SpanTask("squad", read_squad, family="squad", **options)
    if family == "trivia":
        task = TriviaTask("triviaqa", read_trivia, family="trivia", **options)
        task.max_segment, task.max_num_answers = args.max_segment, args.max_num_answers
        return task
    return SpanTask(args.task_name, read_mrqa, family="mrqa", drop_answerless_train_windows=True, **options)


__all__ = [
    "CLASSIFICATION_TASKS",
    "FAMILIES",
    "ClassificationTask",
    "HotpotTask",
    "RaceTask",
    "SpanTask",
    "WikihopTask",
    "get_task",
    "make_task",
]
