#!/usr/bin/env bash
# Hyperpartisan (SemEval-2019 by-article) with bert-base-uncased: the original README's classification
# sequence and hyper-parameters (GPU recommended).
# Run from the repository root. Data: hyperpartisan/{train,dev,test}.jsonl, split 80/10/10 per
# class (seed 42) from the public by-article release, unzipped (set ARTICLES and GROUND_TRUTH to its two XML
# files). With the authors' flattened hyperpartisan/original_data.txt: python split_hyperpartisan.py instead.
# lambda (--alpha): 0.01 for --train_rl, 0.01 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -f hyperpartisan/train.jsonl ] || python -m trbert split-hyperpartisan \
  --articles "${ARTICLES:-articles-training-byarticle-20181122.xml}" \
  --ground_truth "${GROUND_TRUTH:-ground-truth-training-byarticle-20181122.xml}" --output_dir hyperpartisan
C="python run_classification.py --task_name hyperpartisan --data_dir hyperpartisan --max_seq_length 512 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir hp_models/bert \
   --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --gradient_accumulation_steps 4 \
   --learning_rate 3e-5 --num_train_epochs 5 --save_steps 2000
# 2. residual token scores of the training set -> hp_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path hp_models/bert --output_dir hp_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path hp_models/bert --output_dir hp_models/auto \
   --do_train --train_rl --alpha 0.01 --guide_rate 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 4. teacher logits -> hp_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path hp_models/bert --output_dir hp_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path hp_models/auto --output_dir hp_models/auto_both \
   --do_train --train_both --train_teacher --alpha 0.01 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 3
# 6. evaluate: accuracy, FLOPs and measured time (batch 1 as in the paper)
$C --model_type autobert --model_name_or_path hp_models/auto_both --output_dir hp_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
