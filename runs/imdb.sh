#!/usr/bin/env bash
# IMDB with bert-base-uncased: the original README's full-scale pipeline (GPU recommended).
# Run from the repository root. Data: imdb/{train,dev,test}.jsonl ({"text": ..., "label": 0|1} per
# line), prepared from the public release (set RELEASE to the downloaded aclImdb_v1.tar.gz or its folder).
# lambda (--alpha): 1 for --train_rl, 1 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d imdb ] || python -m trbert prepare imdb --source "${RELEASE:-aclImdb_v1.tar.gz}" --output_dir imdb
C="python run_classification.py --task_name imdb --data_dir imdb --max_seq_length 512 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir imdb_models/bert \
   --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --gradient_accumulation_steps 4 \
   --learning_rate 3e-5 --num_train_epochs 5 --save_steps 2000
# 2. residual token scores of the training set -> imdb_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path imdb_models/bert --output_dir imdb_models/bert --do_eval_grad
# 2b. (optional) selector warm start -> imdb_models/bert/token_ranks.npy, imdb_models/bert_init
python trans_imdb_rank.py --model_dir imdb_models/bert
$C --model_type initbert --model_name_or_path imdb_models/bert --output_dir imdb_models/bert_init \
   --do_train --train_init --per_gpu_train_batch_size 8 --learning_rate 3e-5 --num_train_epochs 1
# 3. selector RL with imitation (start from imdb_models/bert_init to use the warm start)
$C --model_type autobert --model_name_or_path imdb_models/bert --output_dir imdb_models/auto_1 \
   --do_train --train_rl --alpha 1 --guide_rate 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 4. teacher logits -> imdb_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path imdb_models/bert --output_dir imdb_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path imdb_models/auto_1 --output_dir imdb_models/auto_1_both \
   --do_train --train_both --train_teacher --alpha 1 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 6. evaluate: accuracy, FLOPs and measured time (batch 1 as in the paper)
$C --model_type autobert --model_name_or_path imdb_models/auto_1_both --output_dir imdb_models/auto_1_both \
   --do_eval --per_gpu_eval_batch_size 1
