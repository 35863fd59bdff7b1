"""TR-BERT for text classification (IMDB, Yelp, 20News, Hyperpartisan): every pipeline stage.

    C="python run_classification.py --task_name imdb --data_dir imdb --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir imdb_models/bert --do_train   # 1
    $C --model_type bert --model_name_or_path imdb_models/bert --output_dir imdb_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path imdb_models/bert \
       --output_dir imdb_models/auto_1 --do_train --train_rl --alpha 1 --guide_rate 0.5                  # 3
    $C --model_type bert --model_name_or_path imdb_models/bert --output_dir imdb_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path imdb_models/auto_1 \
       --output_dir imdb_models/auto_1_both --do_train --train_both --train_teacher --alpha 1            # 5
    $C --model_type autobert --model_name_or_path imdb_models/auto_1_both \
       --output_dir imdb_models/auto_1_both --do_eval --per_gpu_eval_batch_size 1                        # 6

See docs/tasks.md and the recipes in ``runs/``.
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="classification", prog="run_classification.py"))
