#!/usr/bin/env bash
# SQuAD 2.0 with bert-base-uncased:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: squad/train-v2.0.json, dev-v2.0.json, checked by prepare
# (set RELEASE to a folder holding the two downloaded files).
# lambda (--alpha): 5 for --train_rl, 5 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d squad ] || python -m trbert prepare squad --source "${RELEASE:-squad_release}" --output_dir squad
C="python run_squad.py --data_dir squad --version_2_with_negative --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir squad_models/bert --do_train
# 2. residual token scores of the training set -> squad_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path squad_models/bert --output_dir squad_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path squad_models/bert --output_dir squad_models/auto \
   --do_train --train_rl --alpha 5 --guide_rate 0.2
# 4. teacher logits -> squad_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path squad_models/bert --output_dir squad_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path squad_models/auto --output_dir squad_models/auto_both \
   --do_train --train_both --train_teacher --alpha 5
# 6. evaluate: EM/F1 (official v2.0 rules), FLOPs and measured time
$C --model_type autobert --model_name_or_path squad_models/auto_both --output_dir squad_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
