"""TR-BERT for RACE as the original README runs it: each (passage, question + option) sequence is a
binary example for the classification model; a question's answer is its best-scoring option.

    C="python run_race_classify.py --data_dir RACE --max_seq_length 512 --do_lower_case"
    $C --model_type bert --model_name_or_path bert-base-uncased --output_dir race_models/bert --do_train    # 1
    $C --model_type bert --model_name_or_path race_models/bert --output_dir race_models/bert --do_eval_grad  # 2
    $C --model_type autobert --model_name_or_path race_models/bert \
       --output_dir race_models/auto --do_train --train_rl --alpha 0.5 --guide_rate 0.5                  # 3
    $C --model_type bert --model_name_or_path race_models/bert --output_dir race_models/bert --do_eval_logits  # 4
    $C --model_type autobert --model_name_or_path race_models/auto \
       --output_dir race_models/auto_both --do_train --train_both --train_teacher --alpha 0.1 --beta 1   # 5
    $C --model_type autobert --model_name_or_path race_models/auto_both \
       --output_dir race_models/auto_both --do_eval --do_test                                            # 6

Files: <data_dir>/{train,dev,test}/{middle,high}/*.txt (the RACE release).
"""

import sys

from trbert.train.pipeline import main

if __name__ == "__main__":
    sys.exit(main(family="race", prog="run_race_classify.py"))
