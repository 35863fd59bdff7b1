#!/usr/bin/env bash
# AG News (4 topics; not in the paper) with bert-base-uncased: the original README's classification
# sequence and hyper-parameters (GPU recommended).
# Run from the repository root. Data: the hub copy of AG News, read with --dataset_name
# (pip install 'trbert[hub]'; downloaded on first use): train is 108,000 of its 120,000 training
# rows, dev the other 12,000 (--dev_fraction 0.1, fixed seed), test its 7,600. Its texts are short
# (title and description), hence length 128: the length penalty divides by the padded length.
# lambda (--alpha): the paper gives none for AG News; 1 / 1 is a starting point, not a tuned value
# (python -m trbert tradeoff sweeps several, see README.md). See docs/tasks.md.
set -euo pipefail
C="python run_classification.py --task_name agnews --dataset_name fancyzhx/ag_news --max_seq_length 128 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir agnews_models/bert \
   --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --gradient_accumulation_steps 4 \
   --learning_rate 3e-5 --num_train_epochs 5 --save_steps 2000
# 2. residual token scores of the training set -> agnews_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path agnews_models/bert --output_dir agnews_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path agnews_models/bert --output_dir agnews_models/auto \
   --do_train --train_rl --alpha 1 --guide_rate 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 4. teacher logits -> agnews_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path agnews_models/bert --output_dir agnews_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path agnews_models/auto --output_dir agnews_models/auto_both \
   --do_train --train_both --train_teacher --alpha 1 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 6. evaluate: accuracy, FLOPs and measured time (batch 1 as in the paper)
$C --model_type autobert --model_name_or_path agnews_models/auto_both --output_dir agnews_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
