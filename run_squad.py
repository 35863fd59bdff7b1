"""TR-BERT for SQuAD 2.0 (extractive QA with unanswerable questions): every pipeline stage.

    C="python run_squad.py --data_dir squad --version_2_with_negative --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir squad_models/bert --do_train   # 1
    $C --model_type bert --model_name_or_path squad_models/bert --output_dir squad_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path squad_models/bert \
       --output_dir squad_models/auto_5 --do_train --train_rl --alpha 5 --guide_rate 0.2                  # 3
    $C --model_type bert --model_name_or_path squad_models/bert --output_dir squad_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path squad_models/auto_5 \
       --output_dir squad_models/auto_5_both --do_train --train_both --train_teacher --alpha 5            # 5
    $C --model_type autobert --model_name_or_path squad_models/auto_5_both \
       --output_dir squad_models/auto_5_both --do_eval --per_gpu_eval_batch_size 1                        # 6

Files: <data_dir>/train-v2.0.json and dev-v2.0.json (--train_file, --predict_file). See docs/tasks.md.
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="squad", prog="run_squad.py"))
