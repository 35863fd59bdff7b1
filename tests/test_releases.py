"""`trbert prepare <dataset>`: public releases in their real layout (folders and archives) converted
into the files the entry scripts read, counted, run through fine-tuning and evaluation; bad releases
refused with one message naming the file, leaving no output folder."""

import gzip
import json
import shutil
import tarfile
import zipfile

import pytest
from conftest import FIXTURES, fixture_tokenizer
from test_pipeline import script
from test_span import _span_stage

from trbert.__main__ import main
from trbert.errors import InputError
from trbert.releases import prepare_release
from trbert.releases.common import iter_json_list, rank_paragraphs
from trbert.releases.newsgroups import GROUPS, strip_post
from trbert.releases.triviaqa import answer_spans
from trbert.tasks import get_task
from trbert.tasks.hotpot import read_hotpot
from trbert.tasks.race import read_race
from trbert.tasks.trivia import read_trivia

WORDS = (
    "a actor and awful bad boring brilliant dull film fun good great is it lovely messy movie moving of plot".split()
)


def _text(seed: int, n: int = 12) -> str:
    return " ".join(WORDS[(seed * 7 + k * 3) % len(WORDS)] for k in range(n))


def _tar(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def _run_classifier(tmp_path, lm, task, data, dev):
    """Fine-tune two steps on the converted folder, then evaluate on its dev split."""
    out = tmp_path / f"{task}_model"
    flags = f"--task_name {task} --data_dir {data} --model_type bert --model_name_or_path {lm} --output_dir {out}"
    flags += " --do_train --do_eval --max_steps 2 --max_seq_length 32 --per_gpu_train_batch_size 4"
    flags += f" --features_cache_dir {tmp_path / 'cache'}"
    assert script("run_classification.py", *flags.split()) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["examples"] == dev and 0 <= results["acc"] <= 1


# ---- IMDB ---------------------------------------------------------------------------------------


def _imdb(root):
    release = root / "aclImdb"
    for split, n in (("train", 12), ("test", 4)):
        for polarity in ("pos", "neg"):
            folder = release / split / polarity
            folder.mkdir(parents=True)
            for i in range(n):
                (folder / f"{i}_{7 if polarity == 'pos' else 2}.txt").write_text(f"{_text(i)}<br /><br />{polarity}")
    (release / "train" / "unsup").mkdir()
    (release / "train" / "unsup" / "0_0.txt").write_text("unlabelled")
    (release / "imdb.vocab").write_text("the\n")
    return release


def test_imdb_folder_and_archive(tmp_path, tiny_bert_dir):
    release = _imdb(tmp_path / "download")
    counts = prepare_release("imdb", release, tmp_path / "imdb", dev_size=6, seed=42)
    assert counts["test.jsonl"] == {"examples": 8, "label 0": 4, "label 1": 4}
    train, dev = counts["train.jsonl"], counts["dev.jsonl"]
    assert (train["examples"], dev["examples"]) == (18, 6)
    assert all(train[f"label {y}"] + dev.get(f"label {y}", 0) == 12 for y in (0, 1))
    rows = [json.loads(line) for line in (tmp_path / "imdb" / "train.jsonl").read_text().splitlines()]
    assert all("<br" not in r["text"] and r["text"].endswith(("pos", "neg")) for r in rows)
    assert all(r["label"] == int(r["text"].endswith("pos")) for r in rows)  # neg = 0, pos = 1
    assert len(list(get_task("imdb").read(tmp_path / "imdb", "test"))) == 8
    recorded = json.loads((tmp_path / "imdb" / "prepared.json").read_text())
    assert recorded["counts"] == counts and recorded["options"] == {"dev_size": 6, "seed": 42}
    # the release's own archive gives the same files; the same seed gives the same dev split
    archive = _tar(release, tmp_path / "aclImdb_v1.tar.gz")
    assert (
        main(["prepare", "imdb", "--source", str(archive), "--output_dir", str(tmp_path / "b"), "--dev_size", "6"]) == 0
    )
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (tmp_path / "b" / name).read_text() == (tmp_path / "imdb" / name).read_text()
    texts = {name: (tmp_path / "imdb" / name).read_text().splitlines() for name in ("train.jsonl", "dev.jsonl")}
    assert not set(texts["train.jsonl"]) & set(texts["dev.jsonl"])
    prepare_release("imdb", archive, tmp_path / "c", dev_size=6, seed=7)
    assert (tmp_path / "c" / "dev.jsonl").read_text().splitlines() != texts["dev.jsonl"]  # the seed picks the draw
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "dev.jsonl",
        "prepared.json",
        "test.jsonl",
        "train.jsonl",
    ]
    _run_classifier(tmp_path, tiny_bert_dir, "imdb", tmp_path / "imdb", 6)


def test_bad_releases_are_refused_without_output(tmp_path, capsys):
    release = _imdb(tmp_path / "download")
    archive = _tar(release, tmp_path / "aclImdb_v1.tar.gz")
    size = archive.stat().st_size
    cuts = []
    for k, end in enumerate((size // 10, size // 2, size - 30, size - 1)):  # in a header, in data, in the trailer
        cuts.append(tmp_path / f"cut{k}.tar.gz")
        cuts[-1].write_bytes(archive.read_bytes()[:end])
    shutil.rmtree(release / "test" / "neg")
    cases = [(release, "no test/neg/*.txt reviews"), (tmp_path / "nowhere", "nowhere: not found")]
    cases += [(cut, f"{cut.name}: the archive is truncated or damaged") for cut in cuts]
    for source, message in cases:
        out = tmp_path / "out"
        assert main(["prepare", "imdb", "--source", str(source), "--output_dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not out.exists()
        assert not list(tmp_path.glob(".out.tmp-*"))  # the temporary folder is gone too
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InputError, match="already exists and is not empty"):
        prepare_release("imdb", archive, tmp_path / "full")
    with pytest.raises(InputError, match="--dev_size 30 must be between 1 and 23"):
        prepare_release("imdb", archive, tmp_path / "out", dev_size=30)  # (test/neg exists in the archive)


# ---- Yelp ---------------------------------------------------------------------------------------


def _yelp(root):
    release = root / "yelp_review_full_csv"
    release.mkdir(parents=True)
    for split, n in (("train", 20), ("test", 10)):
        rows = [f'"{i % 5 + 1}","{_text(i)}\\n\\nit was ""{WORDS[i]}"" !"' for i in range(n)]
        (release / f"{split}.csv").write_text("\n".join(rows) + "\n")
    (release / "readme.txt").write_text("Yelp reviews")
    return release


def test_yelp(tmp_path, tiny_bert_dir):
    archive = _tar(_yelp(tmp_path / "download"), tmp_path / "yelp_review_full_csv.tar.gz")
    counts = prepare_release("yelp_f", archive, tmp_path / "yelp", dev_size=5)
    assert counts["train.csv"]["examples"] == 15 and counts["dev.csv"]["examples"] == 5
    assert counts["test.csv"] == {"examples": 10, **{f"label {y}": 2 for y in range(1, 6)}}
    lines = (tmp_path / "yelp" / "test.csv").read_text().splitlines()
    assert len(lines) == 10 and lines[0] == f'1,"{_text(0)}  it was ""a"" !"'  # \n -> space, one row a line
    examples = list(get_task("yelp_f").read(tmp_path / "yelp", "test"))
    assert [y for _, y in examples] == [i % 5 for i in range(10)]  # 1-based in the file
    bad = _yelp(tmp_path / "bad")
    (bad / "train.csv").write_text('"3","fine"\n"6","too many stars"\n')
    with pytest.raises(InputError, match=r"bad.tar.gz:yelp_review_full_csv/train.csv:2: expected a row"):
        prepare_release("yelp_f", _tar(bad, tmp_path / "bad.tar.gz"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (bad / "train.csv").write_text('"3","fine"\n"4","a quote left open\n')  # the file ends inside a field
    with pytest.raises(InputError, match=r"train.csv: not valid CSV after row 1 \(unexpected end of data\)"):
        prepare_release("yelp_f", _tar(bad, tmp_path / "bad2.tar.gz"), tmp_path / "out")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "dev.csv").write_text('3,fine\n4,"a quote left open\n')
    with pytest.raises(InputError, match=r"dev.csv:2: not valid CSV \(unexpected end of data\)"):
        list(get_task("yelp_f").read(tmp_path / "cut", "dev"))
    _run_classifier(tmp_path, tiny_bert_dir, "yelp_f", tmp_path / "yelp", 5)


# ---- 20 Newsgroups -------------------------------------------------------------------------------

POST = (
    "From: someone@example.com\nSubject: the plot\n\nIn article <1@x> someone writes:\n> a quoted line\n"
    "{body}\n--\nsignature line\n"
)


def _newsgroups(root):
    release = root / "20news-bydate"
    for split, n in (("train", 2), ("test", 1)):
        for g, group in enumerate(GROUPS):
            folder = release / f"20news-bydate-{split}" / group
            folder.mkdir(parents=True)
            for i in range(n):
                body = f"{_text(g + i)} caf\xe9"
                (folder / str(50000 + 10 * g + i)).write_bytes(POST.format(body=body).encode("latin-1"))
    return release


def test_20news(tmp_path, tiny_bert_dir):
    release = _newsgroups(tmp_path / "download")
    counts = prepare_release("20news", release, tmp_path / "news", dev_size=8, remove="headers,footers,quotes")
    assert counts["train.jsonl"]["examples"] == 32 and counts["dev.jsonl"]["examples"] == 8
    assert counts["test.jsonl"] == {"examples": 20, **{f"label {y}": 1 for y in range(20)}}
    test = [json.loads(line) for line in (tmp_path / "news" / "test.jsonl").read_text().splitlines()]
    assert [r["label"] for r in test] == list(range(20))  # sorted group names
    assert test[0]["text"] == f"{_text(0)} caf\xe9"  # latin-1 read; headers, quote, signature gone
    kept = prepare_release("20news", release, tmp_path / "whole", dev_size=8)  # default: keep everything
    assert kept == counts and "From: someone" in (tmp_path / "whole" / "test.jsonl").read_text()
    assert strip_post("a\n> q\n| q\nb wrote:\nc", ("quotes",)) == "a\nc"
    assert strip_post("no blank line", ("headers",)) == "no blank line"
    with pytest.raises(InputError, match="unknown part"):
        prepare_release("20news", release, tmp_path / "out", remove="signatures")
    shutil.rmtree(release / "20news-bydate-test" / "sci.med")
    with pytest.raises(InputError, match="20news-bydate-test/sci.med/ is missing"):
        prepare_release("20news", release, tmp_path / "out")
    _run_classifier(tmp_path, tiny_bert_dir, "20news", tmp_path / "news", 8)


# ---- TriviaQA -----------------------------------------------------------------------------------

RIGHT = "Carla was a superb actor in this moving scene ."


def _trivia(root):
    """qa/ files for both domains and evidence/ documents; question 1 of each split has no answer."""
    for split, n in (("train", 4), ("dev", 2)):
        data = []
        for i in range(n):
            page, result = f"Page_{split}_{i}.txt", f"12/12_{split}{i}.txt"
            paragraphs = [_text(i + k, 20) for k in range(4)] + [RIGHT if i != 1 else "nobody acted ."]
            for path in (root / "evidence" / "wikipedia" / page, root / "evidence" / "web" / result):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n\n".join(paragraphs) + "\nCarlas and CARLA .\n")
            aliases = ["Carla", "Carla Bruni"] if i != 1 else ["Zorro"]
            data.append(
                {
                    "Answer": {
                        "Aliases": aliases,
                        "NormalizedAliases": [a.lower() for a in aliases],
                        "Value": aliases[0],
                    },
                    "EntityPages": [{"DocSource": "TagMe", "Filename": page, "Title": "Page"}],
                    "SearchResults": [{"Filename": result, "Rank": 0, "Title": "R", "Url": "http://x"}],
                    "Question": "Which superb actor was in the moving scene?",
                    "QuestionId": f"tc_{split}_{i}",
                    "QuestionSource": "http://www.example.com",
                }
            )
        for domain in ("wikipedia", "web"):
            (root / "qa").mkdir(exist_ok=True)
            content = {"Data": data, "Domain": domain, "Split": split, "VerifiedEval": False, "Version": 1.0}
            (root / "qa" / f"{domain}-{split}.json").write_text(json.dumps(content))
    return root


def test_triviaqa_wikipedia_and_web(tmp_path, tiny_bert_dir):
    release = _trivia(tmp_path / "triviaqa-rc")
    archive = _tar(release, tmp_path / "triviaqa-rc.tar.gz")
    counts = prepare_release("triviaqa", archive, tmp_path / "trivia", max_context_words=30)
    assert counts["train.json"] == {"questions": 4, "entries": 4, "with_answer_span": 3, "empty_context": 0}
    assert counts["dev.json"]["entries"] == 2
    entries = json.loads((tmp_path / "trivia" / "train.json").read_text())
    first = entries[0]
    assert first["context"].startswith(RIGHT)  # the paragraph closest to the question comes first
    assert len(first["context"].split()) == 30
    spans = first["qas"][0]["detected_answers"]
    assert [first["context"][s : e + 1] for d in spans for s, e in d["char_spans"]] == ["Carla"]
    examples = read_trivia(tmp_path / "trivia" / "train.json")
    assert [e.qid for e in examples] == [f"tc_train_{i}" for i in range(4)] and not examples[1].spans
    web = prepare_release("triviaqa", release, tmp_path / "web", setting="web")
    assert web["train.json"]["entries"] == 8  # one per (question, document) pair
    qids = [e.qid for e in read_trivia(tmp_path / "web" / "dev.json")]
    assert qids[:2] == ["tc_dev_0--Page_dev_0.txt", "tc_dev_0--12/12_dev0.txt"]
    (release / "evidence" / "wikipedia" / "Page_dev_1.txt").unlink()
    out = tmp_path / "out"
    assert main(["prepare", "triviaqa", "--source", str(release), "--output_dir", str(out)]) == 2
    assert not out.exists()
    with pytest.raises(
        InputError, match=r"evidence/wikipedia/Page_dev_1.txt is absent \(evidence of question tc_dev_1"
    ):
        prepare_release("triviaqa", release, out)
    flags = "--max_segment 2 --model_type bert --model_name_or_path {lm} --output_dir {out} --do_train --do_eval --max_steps 2"
    paths = {"data": tmp_path / "trivia", "cache": tmp_path / "cache", "lm": tiny_bert_dir, "out": tmp_path / "m"}
    assert _span_stage("run_triviaqa.py", flags, **paths) == 0
    assert json.loads((tmp_path / "m" / "eval_results.json").read_text())["total"] == 2


def test_alias_matching_is_case_insensitive_on_word_boundaries():
    context = "Carla met CARLA  Bruni; Carlas and mcCarla did not."
    found = answer_spans(context, ["carla bruni", "Carla", ""])
    assert [(d["text"], d["char_spans"]) for d in found] == [("Carla", [[0, 4]]), ("CARLA  Bruni", [[10, 21]])]
    assert rank_paragraphs("superb actor", ["the plot", "a superb actor", "actor"]) == [1, 2, 0]


# ---- HotpotQA -----------------------------------------------------------------------------------


def _hotpot_item(i, answer="superb actor"):
    titles = [f"Movie {i}", f"Plot {i}", f"Scene {i}", f"Story {i}"]
    context = [[t, [f" {_text(i + k)} .", f" {_text(i + k + 1, 6)} ."]] for k, t in enumerate(titles)]
    context[2][1].append(" the superb actor was in the moving scene .")  # the answer, in a gold paragraph
    context[3][1][0] += " superb actor ."  # also in a distractor: not a span
    facts = [[titles[2], 2], [titles[0], 1]]
    return {"_id": f"h{i}", "question": "which superb actor was in the moving scene ?", "answer": answer, "type": "bridge",
            "level": "easy", "supporting_facts": facts, "context": context}  # fmt: skip


def _hotpot(root, bad=False):
    root.mkdir(parents=True)
    train = [_hotpot_item(i) for i in range(6)] + [_hotpot_item(6, answer="yes")]
    if bad:
        train[3]["supporting_facts"].append(["Plot 3", 5])
    (root / "hotpot_train_v1.1.json").write_text(json.dumps(train))
    dev = [_hotpot_item(10 + i) for i in range(3)]
    (root / "hotpot_dev_distractor_v1.json").write_text(json.dumps(dev, indent=1))
    (root / "hotpot_dev_fullwiki_v1.json").write_text(json.dumps(dev[:2]))
    return root


def test_hotpotqa(tmp_path, tiny_bert_dir):
    release = _hotpot(tmp_path / "hotpot")
    counts = prepare_release("hotpotqa", release, tmp_path / "hp", setting="distractor", tokenizer=str(tiny_bert_dir))
    train = counts["hotpot_train_graph.json"]
    assert train["questions"] == 7 and train["yes_no"] == 1 and train["with_answer_span"] == 6
    assert train["without_two_gold"] == 0 and counts["rerank_dev_tok.json"]["questions"] == 3
    tokenizer = fixture_tokenizer()
    examples = list(read_hotpot(tmp_path / "hp" / "hotpot_train_graph.json"))
    gold = examples[0].paragraphs
    assert [p["name"] for p in gold] == ["Scene 0", "Movie 0", "Plot 0", "Story 0"]  # gold paragraphs first
    assert gold[0]["supp_label"] == [0, 0, 1] and gold[1]["supp_label"] == [0, 1] and gold[0]["has_supp"]
    assert [gold[0]["context"][s : e + 1] for s, e in gold[0]["spans"]] == [["superb", "actor"]]
    assert gold[3]["spans"] == [] and not examples[6].paragraphs[0]["spans"]  # distractor; yes/no answer
    for node in gold:  # sentences tile the pieces, which are the tokenizer's pieces of the words
        assert node["sent_pos"][0][0] == 0 and node["sent_pos"][-1][1] == len(node["context"])
        assert all(a[1] == b[0] for a, b in zip(node["sent_pos"], node["sent_pos"][1:], strict=False))
    dev = list(read_hotpot(tmp_path / "hp" / "rerank_dev_tok.json"))
    node = dev[0].paragraphs[0]
    assert dev[0].qid == "h10" and node["name"] == "Scene 10"  # TF-IDF: the paragraph sharing the question's words
    assert [tokenizer.tokenize(node["doc_tokens"][w]) for w in node["tok_to_orig_index"][:1]] == [[node["context"][0]]]
    assert len(node["tok_to_orig_index"]) == len(node["context"]) and node["supp_label"] == [0, 0, 1]
    (release / "hotpot_dev_fullwiki_v1.json").write_text(json.dumps([_hotpot_item(20)]))
    fullwiki = prepare_release("hotpotqa", release, tmp_path / "fw", tokenizer=str(tiny_bert_dir))
    assert fullwiki["rerank_dev_tok.json"]["questions"] == 1
    flags = "--max_seq_length 96 --warmup_steps 0 --model_type bert --model_name_or_path {lm} --output_dir {out}"
    paths = {"data": tmp_path / "hp", "cache": tmp_path / "cache", "lm": tiny_bert_dir, "out": tmp_path / "m"}
    assert _span_stage("run_hotpotqa.py", flags + " --do_train --do_eval --max_steps 2", **paths) == 0
    assert json.loads((tmp_path / "m" / "eval_results.json").read_text())["total"] == 3


def test_hotpotqa_fact_past_the_sentences_is_refused(tmp_path, tiny_bert_dir, capsys):
    release = _hotpot(tmp_path / "hotpot", bad=True)
    out = tmp_path / "out"
    argv = [
        "prepare",
        "hotpotqa",
        "--source",
        str(release),
        "--output_dir",
        str(out),
        "--tokenizer",
        str(tiny_bert_dir),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "hotpot_train_v1.1.json: question h3: supporting fact ['Plot 3', 5] points past the paragraph's 2" in err
    assert "Traceback" not in err and not out.exists()
    assert main([*argv, "--drop_bad_facts"]) == 0
    assert json.loads((out / "prepared.json").read_text())["counts"]["hotpot_train_graph.json"]["dropped_facts"] == 1


def test_streamed_json_lists(tmp_path):
    items = [{"i": i, "text": "x" * (i * 37 % 100)} for i in range(50)]
    (tmp_path / "list.json").write_text(json.dumps(items, indent=2))
    assert list(iter_json_list(tmp_path / "list.json", "list.json", chunk=64)) == items
    (tmp_path / "cut.json").write_text(json.dumps(items)[:500])
    with pytest.raises(InputError, match="cut.json: "):
        list(iter_json_list(tmp_path / "cut.json", "cut.json", chunk=64))


# ---- read as released: WikiHop, RACE, SQuAD, MRQA ------------------------------------------------


def test_wikihop_race_squad_mrqa(tmp_path):
    with zipfile.ZipFile(tmp_path / "qangaroo_v1.1.zip", "w") as z:
        for name, fixture in (("train.json", "train.json"), ("dev.json", "dev_sort.json")):
            for dataset in ("wikihop", "medhop"):
                z.write(FIXTURES / "wikihop" / fixture, f"qangaroo_v1.1/{dataset}/{name}")
    counts = prepare_release("wikihop", tmp_path / "qangaroo_v1.1.zip", tmp_path / "wh")
    assert counts == {"dev.json": {"questions": 5}, "train.json": {"questions": 10}}
    assert (tmp_path / "wh" / "train.json").read_bytes() == (FIXTURES / "wikihop" / "train.json").read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes((tmp_path / "qangaroo_v1.1.zip").read_bytes()[:-200])
    with pytest.raises(InputError, match="cut.zip: the archive is truncated or damaged"):
        prepare_release("wikihop", cut, tmp_path / "out")

    shutil.copytree(FIXTURES / "race", tmp_path / "RACE")
    counts = prepare_release("race", _tar(tmp_path / "RACE", tmp_path / "RACE.tar.gz"), tmp_path / "race")
    assert counts["train"] == {"questions": len(read_race(FIXTURES / "race" / "train")), "passages": 4}
    assert sorted(p.name for p in (tmp_path / "race" / "dev").iterdir()) == ["high", "middle"]

    counts = prepare_release("squad", FIXTURES / "squad", tmp_path / "squad")
    assert counts["train-v2.0.json"] == {"questions": 24, "unanswerable": 6}
    shutil.copytree(FIXTURES / "squad", tmp_path / "twice")
    data = json.loads((tmp_path / "twice" / "dev-v2.0.json").read_text())
    questions = data["data"][0]["paragraphs"][0]["qas"]
    questions.append(dict(questions[0]))  # the same id twice
    (tmp_path / "twice" / "dev-v2.0.json").write_text(json.dumps(data))
    (tmp_path / f".squad2.tmp-{'k1ll3d'}").mkdir()  # what kill -9 during an earlier prepare left
    with pytest.raises(InputError, match=f"question id {questions[0]['id']!r} appears more than once"):
        prepare_release("squad", tmp_path / "twice", tmp_path / "squad2")
    assert not (tmp_path / "squad2").exists() and not list(tmp_path.glob(".squad2.tmp-*"))

    for split in ("train", "dev"):
        (tmp_path / "mrqa" / split).mkdir(parents=True)
        (tmp_path / "mrqa" / split / "NewsQA.jsonl.gz").write_bytes(
            gzip.compress((FIXTURES / "mrqa" / f"{split}.jsonl").read_bytes())
        )
    counts = prepare_release("mrqa", tmp_path / "mrqa", tmp_path / "newsqa", name="NewsQA")
    assert counts["train.jsonl"]["questions"] == 18
    assert (tmp_path / "newsqa" / "dev.jsonl").read_text() == (FIXTURES / "mrqa" / "dev.jsonl").read_text()
