"""The commands of ``python -m trbert`` beyond the entry scripts: the accuracy-cost curve, the token
view, the demo, data preparation and serving. They import the pipeline (:mod:`trbert.train`); the
pipeline never imports them. Each command's flags are a dataclass (:func:`trbert.train.cli.add_fields`)."""

from dataclasses import dataclass

from ..config import option
from ..tasks import FAMILIES


@dataclass
class ModelCommand:
    """The flags of the commands that read a model and take an entry script's flags after their own."""

    family: str = option("classification", "task family of the entry-script flags that follow", choices=tuple(FAMILIES))
    model_dir: str = option(help="the model the command reads", required=True)
