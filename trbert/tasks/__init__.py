"""Tasks: one family module per kind of head, each with short dataset readers.

A task family implements the protocol the loop needs (see :class:`trbert.tasks.classify.ClassificationTask`):
``read`` a split into examples, ``featurize`` them into arrays, the per-row ``row_loss`` that the
reward needs, and ``score`` (the metric dict, its main key first).
"""

from .classify import CLASSIFICATION_TASKS, ClassificationTask, get_task

__all__ = ["CLASSIFICATION_TASKS", "ClassificationTask", "get_task"]
