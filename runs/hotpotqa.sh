#!/usr/bin/env bash
# HotpotQA (fullwiki dev) with BERT at 1024 tokens:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: hotpotqa/hotpot_train_graph.json, rerank_dev_tok.json built by
# prepare (set RELEASE to a folder holding hotpot_train_v1.1.json and hotpot_dev_fullwiki_v1.json).
# lambda (--alpha): 0.1 for --train_rl, 4 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d hotpotqa ] || python -m trbert prepare hotpotqa --source "${RELEASE:-hotpotqa_release}" --output_dir hotpotqa
C="python run_hotpotqa.py --data_dir hotpotqa --max_seq_length 1024 --do_lower_case"

# 1. fine-tune the baseline
# (the paper used the authors' BERT-1024 checkpoint: pass its folder instead of bert-base-uncased;
# otherwise the 512 learned positions are repeated to 1024, see docs/tasks.md)
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir hotpot_models/bert --do_train
# 2. residual token scores of the training set -> hotpot_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path hotpot_models/bert --output_dir hotpot_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path hotpot_models/bert --output_dir hotpot_models/auto \
   --do_train --train_rl --alpha 0.1 --guide_rate 0.5
# 4. teacher logits -> hotpot_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path hotpot_models/bert --output_dir hotpot_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path hotpot_models/auto --output_dir hotpot_models/auto_both \
   --do_train --train_both --train_teacher --alpha 4
# 6. evaluate: answer, supporting-fact and joint EM/F1, FLOPs and measured time
$C --model_type autobert --model_name_or_path hotpot_models/auto_both --output_dir hotpot_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
