#!/usr/bin/env bash
# WikiHop (QAngaroo) with BERT at 1024 tokens:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: wikihop/train.json, dev.json, checked by prepare (set
# RELEASE to the downloaded qangaroo_v1.1.zip or its folder); dev.json stands in for the original's dev_sort.json.
# lambda (--alpha): the original README gives none for WikiHop; 1 / 1 is the script's default.
# See docs/tasks.md.
set -euo pipefail
[ -d wikihop ] || python -m trbert prepare wikihop --source "${RELEASE:-qangaroo_v1.1.zip}" --output_dir wikihop
C="python run_wikihop.py --data_dir wikihop --max_seq_len 1024 --do_lower_case"

# 1. fine-tune the baseline
# (the paper used the authors' BERT-1024 checkpoint: pass its folder instead of bert-base-uncased;
# otherwise the 512 learned positions are repeated to 1024, see docs/tasks.md)
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir wikihop_models/bert --do_train
# 2. residual token scores of the training set -> wikihop_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path wikihop_models/bert --output_dir wikihop_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path wikihop_models/bert --output_dir wikihop_models/auto \
   --do_train --train_rl --alpha 1 --guide_rate 0.5
# 4. teacher logits -> wikihop_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path wikihop_models/bert --output_dir wikihop_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path wikihop_models/auto --output_dir wikihop_models/auto_both \
   --do_train --train_both --train_teacher --alpha 1
# 6. evaluate: accuracy, FLOPs and measured time
$C --model_type autobert --model_name_or_path wikihop_models/auto_both --output_dir wikihop_models/auto_both \
   --do_eval
