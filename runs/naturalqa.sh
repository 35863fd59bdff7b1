#!/usr/bin/env bash
# NaturalQA (MRQA NaturalQuestionsShort) with bert-base-uncased:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: naturalqa/train.jsonl, dev.jsonl from the MRQA 2019
# release (set RELEASE to the folder holding train/ and dev/NaturalQuestionsShort.jsonl.gz); MRQA's own splits.
# lambda (--alpha): 2 for --train_rl, 2 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d naturalqa ] || python -m trbert prepare mrqa --name NaturalQuestionsShort --source "${RELEASE:-mrqa_release}" \
  --output_dir naturalqa
C="python run_mrqa.py --task_name naturalqa --data_dir naturalqa --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir naturalqa_models/bert --do_train
# 2. residual token scores of the training set -> naturalqa_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path naturalqa_models/bert --output_dir naturalqa_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path naturalqa_models/bert --output_dir naturalqa_models/auto \
   --do_train --train_rl --alpha 2 --guide_rate 0.2
# 4. teacher logits -> naturalqa_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path naturalqa_models/bert --output_dir naturalqa_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path naturalqa_models/auto --output_dir naturalqa_models/auto_both \
   --do_train --train_both --train_teacher --alpha 2
# 6. evaluate: EM/F1 (MRQA rules), FLOPs and measured time
$C --model_type autobert --model_name_or_path naturalqa_models/auto_both --output_dir naturalqa_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
