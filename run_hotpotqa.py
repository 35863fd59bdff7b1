"""TR-BERT for HotpotQA (paragraphs packed into one long input; span / yes / no; supporting facts).

The original used BERT with 1024 positions ("BERT-1024"); a 512-position checkpoint has its
position embeddings extended automatically (see docs/tasks.md). The original file was run_hotpot.py.

    C="python run_hotpotqa.py --data_dir hotpotqa --max_seq_length 1024 --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir hotpot_models/bert --do_train      # 1
    $C --model_type bert --model_name_or_path hotpot_models/bert --output_dir hotpot_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path hotpot_models/bert \
       --output_dir hotpot_models/auto --do_train --train_rl --alpha 0.1 --guide_rate 0.5                     # 3
    $C --model_type bert --model_name_or_path hotpot_models/bert --output_dir hotpot_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path hotpot_models/auto \
       --output_dir hotpot_models/auto_both --do_train --train_both --train_teacher --alpha 4                 # 5
    $C --model_type autobert --model_name_or_path hotpot_models/auto_both \
       --output_dir hotpot_models/auto_both --do_eval --per_gpu_eval_batch_size 1                             # 6

Files: <data_dir>/hotpot_train_graph.json and rerank_dev_tok.json (see trbert/tasks/hotpot.py).
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="hotpot", prog="run_hotpotqa.py"))
