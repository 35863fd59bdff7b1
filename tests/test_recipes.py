"""The original README's commands (runs/imdb.sh) keep parsing with our flags."""

import shlex
from pathlib import Path

from trbert.cli import parse_args

RECIPE = Path(__file__).resolve().parents[1] / "runs" / "imdb.sh"


def _commands() -> list[list[str]]:
    """Every ``$C ...`` line of the recipe (continuations joined), ``$C`` expanded."""
    text = RECIPE.read_text().replace("\\\n", " ")
    common = next(line for line in text.splitlines() if line.startswith("C="))[2:].strip('"')
    return [shlex.split(common)[2:] + shlex.split(line[2:]) for line in text.splitlines() if line.startswith("$C ")]


def test_every_recipe_command_parses():
    commands = _commands()
    assert len(commands) == 7  # fine-tune, scores, warm start, RL, logits, joint, eval
    for argv in commands:
        job = parse_args(argv)
        assert job.run.task_name == "imdb" and job.run.max_seq_length == 512
    rl = parse_args(commands[3])
    assert rl.run.train_rl and rl.reduction.alpha == 1 and rl.reduction.guide_rate == 0.5
    assert rl.run.model_type == "autobert" and rl.stage == "train_rl"


FAMILY_OF = {
    "run_classification.py": "classification",
    "run_squad.py": "squad",
    "run_mrqa.py": "mrqa",
    "run_triviaqa.py": "trivia",
    "run_hotpotqa.py": "hotpot",
    "run_race_classify.py": "race",
    "run_wikihop.py": "wikihop",
}


def test_every_readme_command_parses_with_its_script():
    """The README's per-script command blocks (``C="python run_x.py ..."`` then ``$C ...``)."""
    readme = (RECIPE.parents[1] / "README.md").read_text().replace("\\\n", " ")
    seen = {}
    for block in readme.split("```bash")[1:]:
        lines = block.split("```")[0].splitlines()
        common = next((line for line in lines if line.startswith('C="python run_')), None)
        if common is None:
            continue
        script, *base = shlex.split(common[2:].strip('"'))[1:]
        for line in (line for line in lines if line.startswith("$C ")):
            job = parse_args(base + shlex.split(line[2:]), FAMILY_OF[script], script)
            seen[script] = seen.get(script, 0) + 1
            assert job.family == FAMILY_OF[script]
    assert set(seen) == set(FAMILY_OF) and min(seen.values()) >= 6  # every stage of every script


def test_stage_dependent_defaults_of_race_and_wikihop_are_the_originals():
    """RACE: no warm-up in fine-tuning, 10% (-1) in the RL stages; guide rate 0.5, or 0.2 with the
    shared selection. WikiHop: 10% warm-up in every stage. An explicit flag always wins."""
    base = ["--data_dir", "d", "--model_name_or_path", "m", "--output_dir", "o", "--do_train"]

    def job(script, *flags):
        return parse_args(base + list(flags), FAMILY_OF[script], script)

    race = "run_race_classify.py"
    assert job(race, "--model_type", "bert").train.warmup_steps == 0
    rl = job(race, "--model_type", "autobert", "--train_rl")
    assert rl.train.warmup_steps == -1 and rl.reduction.guide_rate == 0.5
    assert job(race, "--model_type", "autobert", "--train_both").train.warmup_steps == -1
    assert job(race, "--model_type", "autobert", "--train_rl", "--shared_selection").reduction.guide_rate == 0.2
    assert job(race, "--model_type", "autobert", "--train_rl", "--warmup_steps", "7").train.warmup_steps == 7
    for flags in (["--model_type", "bert"], ["--model_type", "autobert", "--train_rl"]):
        assert job("run_wikihop.py", *flags).train.warmup_steps == -1
