"""trbert: TR-BERT (Dynamic Token Reduction for Accelerating BERT Inference, NAACL 2021).

Public surface: the reduction models, the selector, the FLOPs counter, int8 inference and the QA
pipeline (policies: :mod:`trbert.core.policy`; the entry scripts: :mod:`trbert.train.pipeline`).
"""

from .core.encoder import ReductionOutput
from .core.flops import FlopsCounter, layer_macs, mflops
from .core.heads import (
    TRBertForHotpotQA,
    TRBertForMultipleChoice,
    TRBertForQuestionAnswering,
    TRBertForSequenceClassification,
    TRBertForWikihop,
    TRDistilBertForMultipleChoice,
    TRDistilBertForQuestionAnswering,
    TRDistilBertForSequenceClassification,
)
from .core.selector import Selector
from .tools.serving import TRQuestionAnsweringPipeline
from .train.inference import quantized

__all__ = [
    "FlopsCounter",
    "ReductionOutput",
    "Selector",
    "TRBertForHotpotQA",
    "TRBertForMultipleChoice",
    "TRBertForQuestionAnswering",
    "TRBertForSequenceClassification",
    "TRBertForWikihop",
    "TRDistilBertForMultipleChoice",
    "TRDistilBertForQuestionAnswering",
    "TRDistilBertForSequenceClassification",
    "TRQuestionAnsweringPipeline",
    "layer_macs",
    "mflops",
    "quantized",
]
