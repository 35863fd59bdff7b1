"""trbert: TR-BERT (Dynamic Token Reduction for Accelerating BERT Inference, NAACL 2021).

Public surface: the reduction models, the selection ops, the objective, the FLOPs counter and
the pipeline entry point. See README.md.
"""

from .flops import FlopsCounter, layer_macs, mflops
from .heads import (
    TRBertForHotpotQA,
    TRBertForMultipleChoice,
    TRBertForQuestionAnswering,
    TRBertForSequenceClassification,
    TRBertForWikihop,
    TRDistilBertForMultipleChoice,
    TRDistilBertForQuestionAnswering,
    TRDistilBertForSequenceClassification,
)
from .inference import quantized
from .model import ReductionOutput
from .selector import Selector
from .serving import TRQuestionAnsweringPipeline

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
