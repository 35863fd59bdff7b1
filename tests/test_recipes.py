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
        args = parse_args(argv)
        assert args.task_name == "imdb" and args.max_seq_length == 512
    rl = parse_args(commands[3])
    assert rl.train_rl and rl.alpha == 1 and rl.guide_rate == 0.5 and rl.model_type == "autobert"
