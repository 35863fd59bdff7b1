#!/usr/bin/env bash
# NewsQA (MRQA format) with bert-base-uncased:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: newsqa/train.jsonl, dev.jsonl from the MRQA 2019 release
# (set RELEASE to the folder holding train/NewsQA.jsonl.gz and dev/NewsQA.jsonl.gz); MRQA's own splits.
# lambda (--alpha): 3 for --train_rl, 5 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d newsqa ] || python -m trbert prepare mrqa --name NewsQA --source "${RELEASE:-mrqa_release}" --output_dir newsqa
C="python run_mrqa.py --task_name newsqa --data_dir newsqa --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir newsqa_models/bert --do_train
# 2. residual token scores of the training set -> newsqa_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path newsqa_models/bert --output_dir newsqa_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path newsqa_models/bert --output_dir newsqa_models/auto \
   --do_train --train_rl --alpha 3 --guide_rate 0.2
# 4. teacher logits -> newsqa_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path newsqa_models/bert --output_dir newsqa_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path newsqa_models/auto --output_dir newsqa_models/auto_both \
   --do_train --train_both --train_teacher --alpha 5
# 6. evaluate: EM/F1 (MRQA rules), FLOPs and measured time
$C --model_type autobert --model_name_or_path newsqa_models/auto_both --output_dir newsqa_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
