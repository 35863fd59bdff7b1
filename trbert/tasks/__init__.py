"""Tasks: the protocol (:mod:`.base`) and one module per task family or dataset, each registering
itself: every module of this folder is imported here, so a new one is found without a list.

| family         | script                   | module             | datasets                                      |
|----------------|--------------------------|--------------------|-----------------------------------------------|
| classification | run_classification.py    | classification.py  | imdb, yelp_f, 20news, hyperpartisan, agnews;  |
|                |                          | dbpedia.py         | dbpedia (a dataset added as one module)       |
| squad          | run_squad.py             | squad.py (span.py) | SQuAD 2.0                                     |
| mrqa           | run_mrqa.py              | mrqa.py (span.py)  | NewsQA, NaturalQuestions (MRQA format)        |
| trivia         | run_triviaqa.py          | trivia.py          | TriviaQA                                      |
| hotpot         | run_hotpotqa.py          | hotpot.py          | HotpotQA                                      |
| race           | run_race_classify.py     | race.py            | RACE                                          |
| wikihop        | run_wikihop.py           | wikihop.py         | WikiHop                                       |
"""

import importlib
import pkgutil

from .base import FAMILIES, Family, Predictions, Task, family
from .classification import DATASETS, get_task

for _module in pkgutil.iter_modules(__path__):  # every family and dataset module registers itself
    importlib.import_module(f"{__name__}.{_module.name}")


def make_task(family_name: str, config=None, task_name: str = "", seed: int = 42) -> Task:
    """The task of a family from its config (the family's defaults when ``config`` is None)."""
    chosen = family(family_name)
    return chosen.build(config if config is not None else chosen.config(), task_name, seed)


__all__ = ["DATASETS", "FAMILIES", "Family", "Predictions", "Task", "family", "get_task", "make_task"]
