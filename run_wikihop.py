"""TR-BERT for WikiHop (QAngaroo): the query, candidate markers and supporting text in up to
--max_segment windows; the answer is the candidate whose marker scores highest.

The original used BERT with 1024 positions ("BERT-1024"); a 512-position checkpoint has its
position embeddings extended automatically (see docs/tasks.md).

    C="python run_wikihop.py --data_dir wikihop --max_seq_len 1024 --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir wikihop_models/bert --do_train   # 1
    $C --model_type bert --model_name_or_path wikihop_models/bert --output_dir wikihop_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path wikihop_models/bert \
       --output_dir wikihop_models/auto --do_train --train_rl --alpha 1 --guide_rate 0.5                   # 3
    $C --model_type bert --model_name_or_path wikihop_models/bert --output_dir wikihop_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path wikihop_models/auto \
       --output_dir wikihop_models/auto_both --do_train --train_both --train_teacher --alpha 1             # 5
    $C --model_type autobert --model_name_or_path wikihop_models/auto_both \
       --output_dir wikihop_models/auto_both --do_eval                                                      # 6

Files: <data_dir>/train.json and dev_sort.json (QAngaroo JSON lists).
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="wikihop", prog="run_wikihop.py"))
