#!/usr/bin/env bash
# Yelp.F (5-star Yelp reviews) with bert-base-uncased: the original README's classification
# sequence and hyper-parameters (GPU recommended).
# Run from the repository root. Data: yelp_f/{train,dev,test}.csv, prepared from the
# public release (set RELEASE to the downloaded yelp_review_full_csv.tar.gz or its folder).
# lambda (--alpha): 2 for --train_rl, 0.5 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d yelp_f ] || python -m trbert prepare yelp_f --source "${RELEASE:-yelp_review_full_csv.tar.gz}" --output_dir yelp_f
C="python run_classification.py --task_name yelp_f --data_dir yelp_f --max_seq_length 512 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir yelp_f_models/bert \
   --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --gradient_accumulation_steps 4 \
   --learning_rate 3e-5 --num_train_epochs 5 --save_steps 2000
# 2. residual token scores of the training set -> yelp_f_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path yelp_f_models/bert --output_dir yelp_f_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path yelp_f_models/bert --output_dir yelp_f_models/auto \
   --do_train --train_rl --alpha 2 --guide_rate 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 4. teacher logits -> yelp_f_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path yelp_f_models/bert --output_dir yelp_f_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path yelp_f_models/auto --output_dir yelp_f_models/auto_both \
   --do_train --train_both --train_teacher --alpha 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 6. evaluate: accuracy, FLOPs and measured time (batch 1 as in the paper)
$C --model_type autobert --model_name_or_path yelp_f_models/auto_both --output_dir yelp_f_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
