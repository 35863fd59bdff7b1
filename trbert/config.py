"""Typed configuration: every flag of the entry scripts, declared once as a dataclass field.

The shared configs — :class:`RunArgs` (what to run on which files), :class:`TrainConfig`
(optimisation), :class:`ReductionConfig` (the TR-BERT objective), :class:`EvalConfig` (inference),
:class:`Precision` — and :func:`option`, a field that is also a flag with its help. A task family
adds its own config next to its reader (:mod:`trbert.tasks`); :mod:`trbert.train.cli` builds the
command line from the fields; the loop, stages and models take these objects, never a namespace.
Field metadata: ``help``, ``choices``, ``fixed`` (a resumed run must keep the value),
``required`` (no usable default: given unless a family supplies one).
"""

import contextlib
import dataclasses
from dataclasses import dataclass

import torch

MODEL_TYPES = ("bert", "distilbert", "autobert", "distilautobert", "initbert", "initdistilbert")


def option(default=None, help: str = "", *, fixed: bool = False, choices=None, required: bool = False):
    """A config field that is also a command-line flag of the same name."""
    meta = {"help": help, "fixed": fixed, "choices": choices, "required": required}
    return dataclasses.field(default=default, metadata=meta)


def inert(default=False, help: str = "inert (a leftover of the original)"):
    """A flag the original scripts accept without effect; accepted so their commands keep working (never checked)."""
    return dataclasses.field(default=default, metadata={"help": help, "inert": True})


def with_defaults(cls, name: str, **defaults):
    """A subclass of the config dataclass ``cls`` whose fields ``defaults`` default differently
    (same flags and help texts): one family's defaults, declared in one place."""
    fields = []
    for f in dataclasses.fields(cls):
        if f.name in defaults:
            fields.append((f.name, f.type, dataclasses.field(default=defaults.pop(f.name), metadata=f.metadata)))
    if defaults:
        raise TypeError(f"{cls.__name__} has no fields {sorted(defaults)}")
    return dataclasses.make_dataclass(name, fields, bases=(cls,))


@dataclass
class RunArgs:
    """Which model, data and stages one invocation runs, and where it writes."""

    # data_dir and task_name are required unless --dataset_name (checked by trbert.train.cli.validate)
    data_dir: str = option("", "directory with the split files (train/dev/test); required unless --dataset_name")
    task_name: str = option("", "imdb, yelp_f, 20news, hyperpartisan, agnews, dbpedia; newsqa...", fixed=True)
    model_type: str = option(help="bert/distilbert, auto*: TR-BERT, init*: warm start", choices=MODEL_TYPES,
                             required=True, fixed=True)  # fmt: skip
    model_name_or_path: str = option(help="checkpoint directory or hub name to start training from", required=True)
    output_dir: str = option(help="where the model goes; --do_eval(_grad, _logits) read the model there", required=True)
    config_name: str = inert("", "inert (the config comes with the checkpoint)")
    tokenizer_name: str = option("", "tokenizer to use instead of the checkpoint's")
    cache_dir: str = option("", "Hugging Face download cache")
    max_seq_length: int = option(512, "padded length T (head truncation)", fixed=True)
    do_train: bool = option(False, "train (which stage: --train_both > --train_rl > --train_init > fine-tune)")
    do_eval: bool = option(False, "evaluate output_dir (metric, FLOPs, speed) on dev")
    do_test: bool = option(False, "evaluate on test instead of dev")
    do_lower_case: bool = option(False, "lower-case the input (default: as the tokenizer is configured)")
    train_rl: bool = option(False, "stage 3: train the selectors only, REINFORCE + imitation")
    train_both: bool = option(False, "stage 5: train everything, task loss + REINFORCE")
    train_init: bool = option(False, "stage 2b: regress the selectors onto rank targets")
    do_eval_grad: bool = option(False, "stage 2: write residual token scores of the training set")
    do_eval_logits: bool = option(False, "stage 4: write teacher logits of the training set")
    eval_all_checkpoints: bool = option(False, "also evaluate every checkpoint-* under output_dir")
    no_cuda: bool = option(False, "run on the CPU even where CUDA is available")
    overwrite_output_dir: bool = option(False, "replace what an earlier run wrote into output_dir")
    overwrite_cache: bool = option(False, "rebuild the feature cache")
    fp16_opt_level: str = inert("O1", "inert (apex)")
    local_rank: int = option(-1, "GPU of this process under torch.distributed.launch (torchrun: LOCAL_RANK)")
    resume_from_checkpoint: str = option("", "NEW: continue a killed --do_train from a step checkpoint, or 'latest'")
    server_ip: str = inert("", "inert")
    server_port: str = inert("", "inert")
    score_path: str = option("", "NEW: token scores for --train_rl (default: found next to the checkpoint)")
    teacher_npy_path: str = option("", "teacher logits for --train_teacher (default: found next to the checkpoint)")
    rank_path: str = option("", "NEW: rank targets for --train_init (default: found next to the checkpoint)")
    features_cache_dir: str = option(
        "", "NEW: feature cache (default <data_dir>/cached_features, or the datasets cache)"
    )


@dataclass
class TrainConfig:
    """Optimisation: batches, AdamW, the schedule, logging and step checkpoints."""

    per_gpu_train_batch_size: int = option(8, "examples per batch (RL stages run 8 rows each)", fixed=True)
    learning_rate: float = option(3e-5, "peak learning rate", fixed=True)
    selector_learning_rate: float = option(
        None, "NEW: the selectors' own peak rate (default: --learning_rate)", fixed=True
    )
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step", fixed=True)
    weight_decay: float = option(
        0.0, "AdamW weight decay (not on *bias* / *LayerNorm.weight*, as the original)", fixed=True
    )
    adam_epsilon: float = option(1e-8, "AdamW epsilon", fixed=True)
    max_grad_norm: float = option(1.0, "gradient clipping norm", fixed=True)
    num_train_epochs: float = option(3.0, "epochs (whole epochs are run)", fixed=True)
    max_steps: int = option(-1, "if > 0: number of optimizer steps, overrides epochs", fixed=True)
    warmup_steps: int = option(-1, "linear warm-up steps; -1: 10%% of the steps", fixed=True)
    logging_steps: int = option(5, "TensorBoard scalars and a log line every N optimizer steps")
    save_steps: int = option(100000, "write output_dir/checkpoint-<step> every N steps")
    save_total_limit: int = option(0, "NEW: keep only the newest N step checkpoints (0: all)")
    evaluate_during_training: bool = option(False, "evaluate every step checkpoint")
    seed: int = option(42, "seed of sampling, shuffling and initialisation", fixed=True)
    example_seeded_dropout: bool = option(
        False, "NEW: dropout seeded per example (equal across world sizes)", fixed=True
    )

    def rates(self) -> tuple[float, float]:
        """``(backbone rate, selector rate)``; one rate for all unless ``--selector_learning_rate``."""
        selector = self.selector_learning_rate
        return self.learning_rate, self.learning_rate if selector is None else selector


@dataclass
class ReductionConfig:
    """The TR-BERT objective of the RL stages."""

    alpha: float = option(1.0, "length-penalty weight lambda in the reward", fixed=True)
    guide_rate: float = option(0.5, "fraction of --train_rl steps with one guided replica", fixed=True)
    beta: float = option(1.0, "weight of the REINFORCE term in --train_both", fixed=True)
    temperature: float = option(1.0, "distillation temperature", fixed=True)
    train_teacher: bool = option(False, "with --train_both: distil from the fine-tuned model's logits", fixed=True)
    length_penalty: str = option("padded", "NEW: kept fraction of the padded (original) or true length",
                                 choices=("padded", "true"), fixed=True)  # fmt: skip


@dataclass
class EvalConfig:
    """Inference: batch size, selection mode and the fast path."""

    per_gpu_eval_batch_size: int = option(8, "evaluation batch size (1 for the paper's FLOPs)")
    batch_uniform_selection: bool = option(False, "NEW: the original's batched inference (one count per batch)")
    inference_path: str = option("auto", "NEW: auto: unpadded except with --batch_uniform_selection",
                                 choices=("auto", "padded", "unpadded"))  # fmt: skip
    attention_kernel: str = option("auto", "NEW: of the unpadded path; auto: varlen on CUDA in fp16/bf16, else padded",
                                   choices=("auto", "padded", "jagged", "varlen"))  # fmt: skip
    quantize: str = option("none", "NEW: int8: dynamic int8 Linear layers for CPU inference (torch's API)",
                           choices=("none", "int8"))  # fmt: skip


@dataclass
class Precision:
    """Mixed precision through ``torch.amp``; rewards, probabilities and log-likelihoods stay float32."""

    fp16: bool = option(False, "float16 autocast (torch.amp) with a gradient scaler", fixed=True)
    bf16: bool = option(False, "NEW: bfloat16 autocast", fixed=True)

    def autocast(self, device: torch.device):
        if not (self.fp16 or self.bf16):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.float16 if self.fp16 else torch.bfloat16)
