"""Command line of every entry script: the original flags, defined once, validated on parse.

What this file is: the argument table (original names and defaults, spec §9.10, plus a few new
flags marked NEW) and its validation. Running the stages is :mod:`trbert.pipeline`.
"""

from __future__ import annotations

import argparse

from .checkpoint import MODEL_TYPES
from .errors import InputError
from .stages import STAGES, model_kind, training_stage

_SPAN = dict(learning_rate=5e-5, guide_rate=0.2)
# per-family defaults that differ from the table below (spec §9.10)
FAMILY_DEFAULTS = {
    "classification": {},
    "squad": dict(
        _SPAN, task_name="squad", max_seq_length=384, train_file="train-v2.0.json", predict_file="dev-v2.0.json"
    ),
    "trivia": dict(
        _SPAN,
        task_name="triviaqa",
        data_dir="triviaqa",
        max_seq_length=1024,
        learning_rate=3e-5,
        alpha=0.1,
        num_train_epochs=5.0,
        warmup_steps=1000,
        save_steps=-1,
        train_file="train.json",
        predict_file="dev.json",
        doc_stride=-1,
        max_query_length=55,
        n_best_size=10,
    ),
    "race": dict(task_name="race", learning_rate=2e-5, warmup_steps=0),
    "wikihop": dict(
        task_name="wikihop",
        data_dir="wikihop",
        max_seq_length=1024,
        per_gpu_train_batch_size=2,
        learning_rate=5e-5,
        num_train_epochs=5.0,
        warmup_steps=0,
        save_steps=-1,
        train_file="train.json",
        predict_file="dev_sort.json",
    ),
    "hotpot": dict(
        _SPAN,
        task_name="hotpotqa",
        guide_rate=0.5,
        max_seq_length=1024,
        per_gpu_train_batch_size=4,
        per_gpu_eval_batch_size=4,
        warmup_steps=1000,
        train_file="hotpot_train_graph.json",
        predict_file="rerank_dev_tok.json",
    ),
    "mrqa": dict(
        _SPAN,
        max_seq_length=512,
        per_gpu_train_batch_size=2,
        alpha=3.0,
        warmup_steps=0,
        logging_steps=50,
        save_steps=2000,
        train_file="train.jsonl",
        predict_file="dev.jsonl",
        max_query_length=40,
    ),
}

_FLAGS = [
    # (flag, argparse keyword arguments)
    ("--data_dir", dict(required=True, help="directory with the split files (train/dev/test)")),
    (
        "--task_name",
        dict(required=True, help="imdb, yelp_f (or yelp_*), 20news, hyperpartisan; run_mrqa.py: newsqa, naturalqa..."),
    ),
    (
        "--model_type",
        dict(
            required=True,
            choices=sorted(MODEL_TYPES),
            help="bert/distilbert: baseline; auto*: TR-BERT; init*: selector warm start",
        ),
    ),
    ("--model_name_or_path", dict(required=True, help="checkpoint directory or hub name to start training from")),
    (
        "--output_dir",
        dict(
            required=True,
            help="where the trained model goes; also the model read by --do_eval, --do_eval_grad, --do_eval_logits",
        ),
    ),
    ("--config_name", dict(default="", help="inert (the config comes with the checkpoint)")),
    ("--tokenizer_name", dict(default="", help="tokenizer to use instead of the checkpoint's")),
    ("--cache_dir", dict(default="", help="Hugging Face download cache")),
    ("--max_seq_length", dict(type=int, default=512, help="padded length T (head truncation)")),
    (
        "--do_train",
        dict(action="store_true", help="train (which stage: --train_both > --train_rl > --train_init > fine-tune)"),
    ),
    ("--do_eval", dict(action="store_true", help="evaluate output_dir (metric, FLOPs, speed) on dev")),
    ("--do_test", dict(action="store_true", help="evaluate on test instead of dev")),
    ("--evaluate_during_training", dict(action="store_true", help="evaluate every step checkpoint")),
    (
        "--do_lower_case",
        dict(action="store_true", help="lower-case the input (default: as the tokenizer is configured)"),
    ),
    ("--train_rl", dict(action="store_true", help="stage 3: train the selectors only, REINFORCE + imitation")),
    ("--train_both", dict(action="store_true", help="stage 5: train everything, task loss + REINFORCE")),
    ("--train_teacher", dict(action="store_true", help="with --train_both: distil from the fine-tuned model's logits")),
    ("--train_init", dict(action="store_true", help="stage 2b: regress the selectors onto rank targets")),
    ("--do_eval_grad", dict(action="store_true", help="stage 2: write residual token scores of the training set")),
    ("--do_eval_logits", dict(action="store_true", help="stage 4: write teacher logits of the training set")),
    ("--per_gpu_train_batch_size", dict(type=int, default=8, help="examples per batch (RL stages run 8 rows each)")),
    ("--per_gpu_eval_batch_size", dict(type=int, default=8, help="evaluation batch size (1 for the paper's FLOPs)")),
    ("--learning_rate", dict(type=float, default=3e-5)),
    ("--alpha", dict(type=float, default=1.0, help="length-penalty weight lambda in the reward")),
    ("--guide_rate", dict(type=float, default=0.5, help="fraction of --train_rl steps with one guided replica")),
    ("--beta", dict(type=float, default=1.0, help="weight of the REINFORCE term in --train_both")),
    ("--temperature", dict(type=float, default=1.0, help="distillation temperature")),
    ("--gradient_accumulation_steps", dict(type=int, default=1)),
    ("--weight_decay", dict(type=float, default=0.0)),
    ("--adam_epsilon", dict(type=float, default=1e-8)),
    ("--max_grad_norm", dict(type=float, default=1.0)),
    ("--num_train_epochs", dict(type=float, default=3.0)),
    ("--max_steps", dict(type=int, default=-1, help="if > 0: number of optimizer steps, overrides epochs")),
    ("--warmup_steps", dict(type=int, default=-1, help="linear warm-up steps; -1: 10%% of the steps")),
    ("--logging_steps", dict(type=int, default=5)),
    ("--save_steps", dict(type=int, default=100000, help="write output_dir/checkpoint-<step> every N steps")),
    ("--eval_all_checkpoints", dict(action="store_true", help="also evaluate every checkpoint-* under output_dir")),
    ("--no_cuda", dict(action="store_true")),
    ("--overwrite_output_dir", dict(action="store_true")),
    ("--overwrite_cache", dict(action="store_true", help="rebuild the feature cache")),
    ("--seed", dict(type=int, default=42)),
    ("--fp16", dict(action="store_true", help="float16 autocast (torch.amp) with a gradient scaler")),
    ("--fp16_opt_level", dict(default="O1", help="inert (apex)")),
    ("--bf16", dict(action="store_true", help="NEW: bfloat16 autocast")),
    (
        "--local_rank",
        dict(type=int, default=-1, help="GPU of this process under torch.distributed.launch (torchrun: LOCAL_RANK)"),
    ),
    (
        "--resume_from_checkpoint",
        dict(default="", help="NEW: continue a killed --do_train from a step checkpoint directory, or 'latest'"),
    ),
    ("--save_total_limit", dict(type=int, default=0, help="NEW: keep only the newest N step checkpoints (0: all)")),
    (
        "--example_seeded_dropout",
        dict(
            action="store_true",
            help="NEW: dropout masks seeded per example (runs equal across world sizes and resumes; slower)",
        ),
    ),
    ("--server_ip", dict(default="", help="inert")),
    ("--server_port", dict(default="", help="inert")),
    ("--score_path", dict(default="", help="NEW: token scores for --train_rl (default: found next to the checkpoint)")),
    (
        "--teacher_npy_path",
        dict(default="", help="teacher logits for --train_teacher (default: found next to the checkpoint)"),
    ),
    (
        "--rank_path",
        dict(default="", help="NEW: rank targets for --train_init (default: found next to the checkpoint)"),
    ),
    (
        "--length_penalty",
        dict(
            default="padded",
            choices=["padded", "true"],
            help="NEW: kept fraction relative to the padded length (original) or the true length",
        ),
    ),
    (
        "--batch_uniform_selection",
        dict(action="store_true", help="NEW: original batched inference, same token count for every row of a batch"),
    ),
    (
        "--inference_path",
        dict(
            default="auto",
            choices=["auto", "padded", "unpadded"],
            help="NEW: evaluation path; auto: unpadded except with --batch_uniform_selection",
        ),
    ),
    (
        "--attention_kernel",
        dict(
            default="auto",
            choices=["auto", "padded", "jagged"],
            help="NEW: attention of the unpadded path; auto: jagged on CUDA, padded on CPU",
        ),
    ),
    ("--features_cache_dir", dict(default="", help="NEW: feature cache (default <data_dir>/cached_features)")),
]


# flags of the span-QA scripts only
_SPAN_FLAGS = [
    ("--train_file", dict(default="", help="training file inside --data_dir")),
    ("--predict_file", dict(default="", help="evaluation file inside --data_dir")),
    ("--version_2_with_negative", dict(action="store_true", help="questions may have no answer (SQuAD 2.0)")),
    (
        "--null_score_diff_threshold",
        dict(type=float, default=0.0, help="answer 'no answer' when null score - best span score exceeds this"),
    ),
    (
        "--doc_stride",
        dict(type=int, default=128, help="step between the starts of consecutive context windows; -1: no overlap"),
    ),
    ("--max_query_length", dict(type=int, default=64, help="question word pieces kept (longer ones are cut)")),
    ("--n_best_size", dict(type=int, default=20, help="start and end candidates considered per window")),
    ("--max_answer_length", dict(type=int, default=30, help="longest answer in word pieces")),
    ("--verbose_logging", dict(action="store_true", help="inert")),
    ("--threads", dict(type=int, default=1, help="inert (feature conversion runs in the fast tokenizer)")),
]
# flags of run_triviaqa.py besides the span ones
_TRIVIA_FLAGS = [
    ("--max_segment", dict(type=int, default=1, help="windows read per document (the rest is ignored)")),
    ("--max_num_answers", dict(type=int, default=64, help="gold positions kept per window")),
    ("--max_doc_len", dict(type=int, default=-1, help="inert (the document is cut by --max_segment windows)")),
    ("--ignore_seq_with_no_answers", dict(action="store_true", help="inert")),
]
_INERT = dict(action="store_true", help="inert (a leftover of the original)")
_RACE_FLAGS = [
    ("--max_qa_length", dict(type=int, default=128, help="question + option word pieces kept")),
    (
        "--shared_selection",
        dict(action="store_true", help="NEW: run_mcrace.py's model: one selection per question shared by its options"),
    ),
    *[(flag, _INERT) for flag in ("--train_both_self", "--train_jiaoti", "--train_pred", "--do_calc")],
]
_WIKIHOP_FLAGS = [
    ("--train_file", dict(default="", help="training file inside --data_dir")),
    ("--predict_file", dict(default="", help="evaluation file inside --data_dir")),
    ("--max_doc_len", dict(type=int, default=1024, help="supporting-text word pieces read per question")),
    ("--max_segment", dict(type=int, default=8, help="windows per question")),
    ("--max_num_candidates", dict(type=int, default=79, help="candidate markers at most")),
    ("--doc_stride", dict(type=int, default=-1, help="step between window starts in the document; -1: no overlap")),
    ("--max_question_len", dict(type=int, default=55, help="inert (the query is never cut)")),
    ("--race_npy_path", dict(default="", help="inert")),
    *[(flag, _INERT) for flag in ("--ignore_seq_with_no_answers", "--test", "--verbose_logging")],
    ("--threads", dict(type=int, default=1, help="inert")),
]
FAMILY_FLAGS = {
    "classification": [],
    "squad": _SPAN_FLAGS,
    "mrqa": _SPAN_FLAGS,
    "trivia": _SPAN_FLAGS + _TRIVIA_FLAGS,
    "hotpot": _SPAN_FLAGS + [("--drop_data", _INERT)],
    "race": _RACE_FLAGS,
    "wikihop": _WIKIHOP_FLAGS,
}
# the original scripts' other spellings of shared flags
FAMILY_ALIASES = {
    "trivia": {"--max_seq_length": "--max_seq_len", "--max_query_length": "--max_question_len"},
    "wikihop": {"--max_seq_length": "--max_seq_len"},
}


def build_parser(family: str = "classification", prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=f"TR-BERT {family} pipeline")
    for flag, kwargs in _FLAGS + FAMILY_FLAGS[family]:
        if flag[2:] in FAMILY_DEFAULTS[family] and kwargs.get("required"):
            kwargs = {**kwargs, "required": False}
        alias = FAMILY_ALIASES.get(family, {}).get(flag)
        parser.add_argument(flag, *([alias] if alias else []), **kwargs)
    parser.set_defaults(**FAMILY_DEFAULTS[family])
    return parser


# integer flags that must be positive (where the script has them)
POSITIVE = (
    "per_gpu_train_batch_size",
    "per_gpu_eval_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
    "max_query_length",
    "n_best_size",
    "max_answer_length",
    "max_segment",
    "max_num_answers",
    "max_num_candidates",
    "max_qa_length",
)


def validate(args) -> None:
    """Reject combinations the pipeline cannot run, before anything is read or written."""
    kind = model_kind(args.model_type)
    if args.do_train:
        stage = training_stage(args)
        if kind not in stage.kinds:
            allowed = ", ".join(t for t in MODEL_TYPES if model_kind(t) in stage.kinds)
            raise InputError(f"{stage.name} needs --model_type {allowed}, not {args.model_type}")
    elif args.train_rl or args.train_both or args.train_init:
        raise InputError("--train_rl / --train_both / --train_init go with --do_train")
    for flag in ("do_eval_grad", "do_eval_logits"):
        if getattr(args, flag) and kind not in STAGES[flag[3:]].kinds:
            raise InputError(f"--{flag} runs on the fine-tuned baseline: use --model_type bert or distilbert")
    if args.resume_from_checkpoint and not args.do_train:
        raise InputError("--resume_from_checkpoint goes with --do_train")
    if args.save_total_limit < 0:
        raise InputError("--save_total_limit must be 0 (keep all) or more")
    if args.train_teacher and not args.train_both:
        raise InputError("--train_teacher goes with --train_both")
    if not (args.do_train or args.do_eval or args.do_eval_grad or args.do_eval_logits):
        raise InputError("nothing to do: give --do_train, --do_eval, --do_eval_grad or --do_eval_logits")
    if args.fp16 and args.bf16:
        raise InputError("choose one of --fp16 and --bf16")
    for name in POSITIVE:
        if hasattr(args, name) and getattr(args, name) < 1:
            raise InputError(f"--{name} must be at least 1")
    if hasattr(args, "doc_stride") and args.doc_stride < 1 and args.doc_stride != -1:
        raise InputError("--doc_stride must be at least 1, or -1 (windows without overlap)")


def parse_args(argv=None, family: str = "classification", prog: str | None = None):
    args = build_parser(family, prog).parse_args(argv)
    args.task_name = args.task_name.lower()
    args.family = family
    validate(args)
    return args
