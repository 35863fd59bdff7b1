#!/usr/bin/env bash
# RACE with bert-base-uncased (binary rows, as the original README runs it):
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: race/{train,dev,test}/{high,middle}/*.txt, the release
# as it comes, checked by prepare (set RELEASE to the downloaded RACE.tar.gz or its folder).
# lambda (--alpha): 0.5 for --train_rl, 0.1 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d race ] || python -m trbert prepare race --source "${RELEASE:-RACE.tar.gz}" --output_dir race
C="python run_race_classify.py --data_dir race --max_seq_length 512 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir race_models/bert --do_train
# 2. residual token scores of the training set -> race_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path race_models/bert --output_dir race_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path race_models/bert --output_dir race_models/auto \
   --do_train --train_rl --alpha 0.5 --guide_rate 0.5
# 4. teacher logits -> race_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path race_models/bert --output_dir race_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path race_models/auto --output_dir race_models/auto_both \
   --do_train --train_both --train_teacher --alpha 0.1 --beta 1
# 6. evaluate: accuracy over questions, on test, FLOPs and measured time
$C --model_type autobert --model_name_or_path race_models/auto_both --output_dir race_models/auto_both \
   --do_eval --do_test
