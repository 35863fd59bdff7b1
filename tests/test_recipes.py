"""The recipes and the documents stay true to the code: every command in runs/*.sh and in the
```bash blocks of README.md and docs/*.md parses with its script's flags, the recipes use the
paper's lambda values and prepare their data with commands the trbert parser accepts, and every
relative link in the documents points to a file that exists."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from trbert.__main__ import _parser
from trbert.train.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "runs" / "imdb.sh"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
RECIPES = sorted(p for p in (ROOT / "runs").glob("*.sh") if p.stem not in ("demo", "test", "gpu"))

FAMILY_OF = {
    "run_classification.py": "classification",
    "run_squad.py": "squad",
    "run_mrqa.py": "mrqa",
    "run_triviaqa.py": "trivia",
    "run_hotpotqa.py": "hotpot",
    "run_race_classify.py": "race",
    "run_wikihop.py": "wikihop",
}
STAGES = {"finetune", "eval_grad", "train_rl", "eval_logits", "train_both", "eval"}
# recipe -> its row in the lambda table of docs/tasks.md (AG News and WikiHop have none)
LAMBDA_ROW = {
    "imdb": "IMDB",
    "yelp_f": "YELP.F",
    "20news": "20News",
    "hyperpartisan": "Hyperpartisan",
    "squad": "SQuAD 2.0",
    "newsqa": "NewsQA",
    "naturalqa": "NaturalQA",
    "triviaqa": "TriviaQA",
    "hotpotqa": "HotpotQA",
    "race": "RACE",
}


def _joined(text: str) -> list[str]:
    """The lines of a shell text with ``\\`` continuations joined."""
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)


def _sources() -> list[tuple[str, str]]:
    """``(name, shell text)`` of every recipe and every ```bash block of the documents."""
    found = [(str(p.relative_to(ROOT)), p.read_text()) for p in RECIPES]
    for doc in DOCS:
        found += [(f"{doc.relative_to(ROOT)} block {k}", b) for k, b in enumerate(_bash_blocks(doc))]
    return found


def _common(text: str) -> tuple[str, list[str]] | None:
    """``(script, its flags)`` of the line ``C="python run_x.py ..."`` of a text, or None."""
    common = next((line for line in _joined(text) if line.startswith('C="python run_')), None)
    if common is None:
        return None
    script, *base = shlex.split(common[2:].strip('"'))[1:]
    return script, base


def _script_commands(text: str) -> tuple[str, list[list[str]]] | None:
    """``(script, [argv of every $C line])`` of a text with a ``C=`` line, or None."""
    found = _common(text)
    if found is None:
        return None
    script, base = found
    return script, [base + shlex.split(line[2:]) for line in _joined(text) if line.startswith("$C ")]


def _stage(job) -> str:
    run = job.run
    if run.do_train:
        return job.stage
    return next(s for s in ("eval_grad", "eval_logits", "eval") if getattr(run, f"do_{s}"))


def _trbert_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(guard, argv after "python -m trbert")`` of every trbert command; ``guard`` is the path a
    ``[ -d PATH ] ||`` (or ``[ -f PATH ] ||``) in front of it tests, else ''."""
    found = []
    for line in _joined(text):
        if "python -m trbert " not in line or line.lstrip().startswith("#"):
            continue
        guard = re.match(r"\s*\[ -[df] (\S+) \] \|\|", line)
        words = shlex.split(line.split("python -m trbert ", 1)[1])
        found.append((guard.group(1) if guard else "", words))
    return found


def test_the_imdb_recipe_parses_with_its_warm_start():
    """runs/imdb.sh: the original README's IMDB sequence, warm start included."""
    _, commands = _script_commands(RECIPE.read_text())
    assert len(commands) == 7  # fine-tune, scores, warm start, RL, logits, joint, eval
    for argv in commands:
        job = parse_args(argv)
        assert job.run.task_name == "imdb" and job.run.max_seq_length == 512
    rl = parse_args(commands[3])
    assert rl.run.train_rl and rl.reduction.alpha == 1 and rl.reduction.guide_rate == 0.5
    assert rl.run.model_type == "autobert" and rl.stage == "train_rl"


@pytest.mark.parametrize("script", FAMILY_OF)
def test_each_entry_scripts_own_example_parses_and_runs_every_stage_in_order(script):
    """The commands in an entry script's docstring (what ``--help`` readers copy) are whole commands."""
    doc = ast.get_docstring(ast.parse((ROOT / script).read_text()))
    name, commands = _script_commands("\n".join(line.split(" #")[0].strip() for line in doc.splitlines()))
    stages = [_stage(parse_args(argv, FAMILY_OF[script], script)) for argv in commands]
    assert name == script and stages == ["finetune", "eval_grad", "train_rl", "eval_logits", "train_both", "eval"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_each_recipe_runs_every_stage_in_order_with_the_papers_lambda(recipe):
    script, commands = _script_commands(recipe.read_text())
    jobs = [parse_args(argv, FAMILY_OF[script], script) for argv in commands]
    stages = [_stage(job) for job in jobs]
    assert STAGES <= set(stages), stages
    order = [s for s in stages if s in STAGES]
    assert order == ["finetune", "eval_grad", "train_rl", "eval_logits", "train_both", "eval"]
    rl, both = (next(j for j in jobs if j.stage == s and j.run.do_train) for s in ("train_rl", "train_both"))
    assert both.reduction.train_teacher  # joint training distils from the teacher logits of stage 4
    assert all(j.train.selector_learning_rate is None for j in jobs)  # the paper's recipes: one rate
    table = _lambda_table()
    if recipe.stem in LAMBDA_ROW:
        assert (rl.reduction.alpha, both.reduction.alpha) == table[LAMBDA_ROW[recipe.stem]]
    assert set(table) >= set(LAMBDA_ROW.values())


def _lambda_table() -> dict[str, tuple[float, float]]:
    """The harmonic coefficient table of docs/tasks.md: dataset -> (train_rl, train_both)."""
    text = (ROOT / "docs" / "tasks.md").read_text()
    part = text.split("## The harmonic coefficient")[1].split("\n## ")[0]
    rows = re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| ([\d.]+) \|$", part, re.M)
    return {name: (float(rl), float(both)) for name, rl, both in rows}


def test_every_readme_command_parses_with_its_script():
    """Every ``$C`` line of the recipes and of the documents' bash blocks parses with the flags of
    the script its ``C=`` line names; together they run every stage of every script."""
    seen = {}
    for name, text in _sources():
        found = _script_commands(text)
        if found is None:
            continue
        script, commands = found
        assert script in FAMILY_OF, f"{name}: unknown script {script}"
        for argv in commands:
            job = parse_args(argv, FAMILY_OF[script], script)
            assert job.family == FAMILY_OF[script]
            seen[script] = seen.get(script, 0) + 1
    assert set(seen) == set(FAMILY_OF) and min(seen.values()) >= 6  # every stage of every script


def test_every_trbert_command_parses_and_prepares_what_its_recipe_reads():
    """``python -m trbert ...`` lines parse with the trbert command's parser; a recipe's data step
    writes the folder its guard tests and its entry script reads."""
    prepared = 0
    for name, text in _sources():
        _, base = _common(text) or ("", [])
        for guard, argv in _trbert_commands(text):
            args, rest = _parser().parse_known_args(argv)
            assert not rest or args.command in ("tradeoff", "show"), f"{name}: {rest}"
            if args.command not in ("prepare", "split-hyperpartisan"):
                continue
            prepared += 1
            assert guard.split("/")[0] == args.output_dir, f"{name}: the guard tests {guard}"
            assert base[base.index("--data_dir") + 1] == args.output_dir, name
    # every recipe but AG News (a hub dataset) and DBpedia (read as the release unpacks) prepares its data
    assert prepared == len(RECIPES) - 2


def test_every_relative_link_points_to_a_file():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (doc.parent / target.split("#")[0]).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readme_is_short_and_starts_with_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    quick = _bash_blocks(ROOT / "README.md")[0]
    assert [line.split("#")[0].strip() for line in quick.strip().splitlines()] == [
        "bash runs/demo.sh",
        "bash runs/test.sh",
    ]


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


def test_the_originals_hotpot_script_name_is_the_same_script():
    def usage(script):
        done = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.replace(script, "SCRIPT").split()  # word-wrapping follows the name's length

    assert usage("run_hotpot.py") == usage("run_hotpotqa.py")
