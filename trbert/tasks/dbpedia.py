"""DBpedia-14 ontology classification (Zhang, Zhao and LeCun 2015; not in the paper): a dataset added
as one module (docs/design.md), read from ``train.csv`` and ``test.csv`` of ``dbpedia_csv.tar.gz``
as it unpacks (rows ``label,title,content``, labels 1..14, title and content joined). The release
has no dev split: dev is every 20th training row (28,000 of the 560,000), train the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .classification import ClassificationTask, Example, read_label_csv, register_dataset


@dataclass(frozen=True)
class DbpediaTask(ClassificationTask):
    dev_every: int = 20

    @property
    def settings(self) -> dict:
        return {"dev_every": self.dev_every}

    def path(self, data_dir: str, split: str) -> Path:
        return super().path(data_dir, "test" if split == "test" else "train")

    def read(self, data_dir: str, split: str) -> Iterator[Example]:
        for number, example in enumerate(super().read(data_dir, split)):
            if split == "test" or (number % self.dev_every == 0) == (split == "dev"):
                yield example


register_dataset(DbpediaTask("dbpedia", 14, "csv", read_label_csv))
