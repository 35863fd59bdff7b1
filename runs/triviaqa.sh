#!/usr/bin/env bash
# TriviaQA (reading comprehension, Wikipedia) with BERT at 1024 tokens:
# the original README's stage sequence with the script's defaults (GPU recommended).
# Run from the repository root. Data: triviaqa/train.json, dev.json built by prepare from
# triviaqa-rc.tar.gz (paragraphs ranked by TF-IDF; set RELEASE to the download or its folder).
# lambda (--alpha): 0.5 for --train_rl, 1 for --train_both (README of the original). See docs/tasks.md.
set -euo pipefail
[ -d triviaqa ] || python -m trbert prepare triviaqa --source "${RELEASE:-triviaqa-rc.tar.gz}" --output_dir triviaqa
C="python run_triviaqa.py --data_dir triviaqa --max_seq_len 1024 --do_lower_case"

# 1. fine-tune the baseline
# (the paper used the authors' BERT-1024 checkpoint: pass its folder instead of bert-base-uncased;
# otherwise the 512 learned positions are repeated to 1024, see docs/tasks.md)
$C --model_type bert --model_name_or_path bert-base-uncased --output_dir trivia_models/bert --do_train
# 2. residual token scores of the training set -> trivia_models/bert/token_scores.npy
$C --model_type bert --model_name_or_path trivia_models/bert --output_dir trivia_models/bert --do_eval_grad
# 3. selector RL with imitation
$C --model_type autobert --model_name_or_path trivia_models/bert --output_dir trivia_models/auto \
   --do_train --train_rl --alpha 0.5 --guide_rate 0.2
# 4. teacher logits -> trivia_models/bert/teacher_logits.npy
$C --model_type bert --model_name_or_path trivia_models/bert --output_dir trivia_models/bert --do_eval_logits
# 5. joint training with distillation
$C --model_type autobert --model_name_or_path trivia_models/auto --output_dir trivia_models/auto_both \
   --do_train --train_both --train_teacher --alpha 1
# 6. evaluate: EM/F1 over the aliases, FLOPs and measured time
$C --model_type autobert --model_name_or_path trivia_models/auto_both --output_dir trivia_models/auto_both \
   --do_eval --per_gpu_eval_batch_size 1
