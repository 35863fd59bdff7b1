"""TR-BERT for TriviaQA (documents as --max_segment windows, shared normalisation): every stage.

The original used BERT with 1024 positions ("BERT-1024"); with a 512-position checkpoint the
position embeddings are extended automatically (see docs/tasks.md).

    C="python run_triviaqa.py --data_dir triviaqa --max_seq_len 1024 --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir trivia_models/bert --do_train     # 1
    $C --model_type bert --model_name_or_path trivia_models/bert --output_dir trivia_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path trivia_models/bert \
       --output_dir trivia_models/auto --do_train --train_rl --alpha 0.5 --guide_rate 0.2                     # 3
    $C --model_type bert --model_name_or_path trivia_models/bert --output_dir trivia_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path trivia_models/auto \
       --output_dir trivia_models/auto_both --do_train --train_both --train_teacher --alpha 1                 # 5
    $C --model_type autobert --model_name_or_path trivia_models/auto_both \
       --output_dir trivia_models/auto_both --do_eval --per_gpu_eval_batch_size 1                             # 6

Files: <data_dir>/train.json and dev.json (a JSON list; see trbert/tasks/trivia.py).
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="trivia", prog="run_triviaqa.py"))
