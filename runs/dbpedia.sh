#!/usr/bin/env bash
# DBpedia-14 (14 ontology classes; not in the paper) with bert-base-uncased: the original README's
# classification sequence and hyper-parameters (GPU recommended). The dataset is one module,
# trbert/tasks/dbpedia.py (docs/design.md shows how it was added).
# Run from the repository root. Data: dbpedia_csv/{train,test}.csv as dbpedia_csv.tar.gz unpacks
# (Zhang et al. 2015, the char-CNN releases that also hold Yelp.F and AG News); dev is every 20th
# training row. Its abstracts are short, hence length 128 (the length penalty divides by it).
# lambda (--alpha): the paper gives none for DBpedia; 1 / 1 is a starting point, not a tuned value
# (python -m trbert tradeoff sweeps several, see README.md).
set -euo pipefail
[ -d dbpedia_csv ] || tar -xzf "${RELEASE:-dbpedia_csv.tar.gz}"
C="python run_classification.py --task_name dbpedia --data_dir dbpedia_csv --max_seq_length 128 --do_lower_case"

# 1. fine-tune the baseline
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir dbpedia_models/bert \
   --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --gradient_accumulation_steps 4 \
   --learning_rate 3e-5 --num_train_epochs 2 --save_steps 2000
# 2. residual token scores of the training set -> dbpedia_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path dbpedia_models/bert --output_dir dbpedia_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path dbpedia_models/bert --output_dir dbpedia_models/auto \
   --do_train --train_rl --alpha 1 --guide_rate 0.5 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 1
# 4. teacher logits -> dbpedia_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path dbpedia_models/bert --output_dir dbpedia_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path dbpedia_models/auto --output_dir dbpedia_models/auto_both \
   --do_train --train_both --train_teacher --alpha 1 --per_gpu_train_batch_size 8 \
   --gradient_accumulation_steps 4 --learning_rate 3e-5 --num_train_epochs 1
# 6. evaluate: accuracy, FLOPs and measured time (batch 1 as in the paper)
$C --model_type autobert --model_name_or_path dbpedia_models/auto_both --output_dir dbpedia_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
