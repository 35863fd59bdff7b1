"""TR-BERT for MRQA datasets (NewsQA, NaturalQuestions): every pipeline stage.

    C="python run_mrqa.py --task_name newsqa --data_dir newsqa --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir newsqa_models/bert --do_train  # 1
    $C --model_type bert --model_name_or_path newsqa_models/bert --output_dir newsqa_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path newsqa_models/bert \
       --output_dir newsqa_models/auto_3 --do_train --train_rl --alpha 3 --guide_rate 0.2    # 3 selector RL
    $C --model_type bert --model_name_or_path newsqa_models/bert --output_dir newsqa_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path newsqa_models/auto_3 \
       --output_dir newsqa_models/auto_3_both --do_train --train_both --train_teacher --alpha 5  # 5 joint
    $C --model_type autobert --model_name_or_path newsqa_models/auto_3_both \
       --output_dir newsqa_models/auto_3_both --do_eval --per_gpu_eval_batch_size 1          # 6

Files: <data_dir>/train.jsonl and dev.jsonl (MRQA format, plain or .gz via --train_file / --predict_file).
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="mrqa", prog="run_mrqa.py"))
