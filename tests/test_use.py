"""A trained TR-BERT model is used like any transformers model: the Auto classes load it, the
text-classification and question-answering pipelines give the predictions of ``--do_eval``, the
outputs are transformers output classes with the kept tokens; int8 inference."""

import json
import shutil

import pytest
import torch
from conftest import FIXTURES
from test_pipeline import ROOT, stage
from test_span import _span_stage
from transformers import (
    AutoModelForMultipleChoice,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    pipeline,
)

import trbert  # noqa: F401  (registers the Auto classes)
from trbert import TRBertForMultipleChoice, TRBertForQuestionAnswering, TRBertForSequenceClassification
from trbert.store.checkpoint import load_model, save_checkpoint


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("use")
    p = {"data": root / "imdb", "lm": tiny_bert_dir, "bert": root / "bert", "rl": root / "rl"}
    shutil.copytree(ROOT / "tests" / "fixtures" / "imdb", p["data"])
    assert stage("--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 6", **p) == 0
    assert stage("--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad", **p) == 0
    rl = "--model_type autobert --model_name_or_path {bert} --output_dir {rl} --do_train --train_rl --max_steps 4"
    assert stage(rl + " --selector_learning_rate 0.05", **p) == 0
    assert stage("--model_type autobert --model_name_or_path {rl} --output_dir {rl} --do_eval", **p) == 0
    return p


def test_auto_classes_load_trbert_checkpoints_and_stock_ones_as_before(classifier, tiny_bert_dir, tmp_path):
    model = AutoModelForSequenceClassification.from_pretrained(classifier["rl"])
    assert type(model) is TRBertForSequenceClassification and model.config.tr_selection == "threshold"
    assert type(AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)) is BertForSequenceClassification
    for auto, head, cls in (
        (AutoModelForQuestionAnswering, "span", TRBertForQuestionAnswering),
        (AutoModelForMultipleChoice, "choice", TRBertForMultipleChoice),
    ):
        folder = tmp_path / head
        ours = load_model(str(tiny_bert_dir), "autobert", 2 if head == "span" else 1, head)
        save_checkpoint(ours, _tokenizer(tiny_bert_dir), folder, {}, "train_rl", str(tiny_bert_dir))
        loaded = auto.from_pretrained(folder)
        assert type(loaded) is cls
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in ours.state_dict().items())


def _tokenizer(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def test_the_classification_pipeline_predicts_what_do_eval_predicted(classifier):
    texts = [json.loads(line)["text"] for line in (classifier["data"] / "dev.jsonl").read_text().splitlines()]
    classify = pipeline("text-classification", model=str(classifier["rl"]))
    labels = [int(r["label"].split("_")[1]) for r in classify(texts, batch_size=4)]
    assert labels == json.loads((classifier["rl"] / "predictions.json").read_text())
    model = classify.model.eval()
    encoded = classify.tokenizer(texts[:3], padding=True, return_tensors="pt").to(model.device)  # (a GPU's, if any)
    with torch.no_grad():
        out = model(**encoded)  # a plain call: the checkpoint's threshold selection, unpadded
    assert out["logits"].shape == (3, 2) and 1 <= len(out.kept) <= 2 and out.positions.shape[0] == 3
    assert (out.kept[0] <= encoded["attention_mask"].sum(1)).all()


def test_the_question_answering_pipeline_answers_what_do_eval_answered(tmp_path, tiny_bert_dir):
    p = {"data": FIXTURES / "squad", "lm": tiny_bert_dir, "cache": tmp_path / "cache"}
    p.update(bert=tmp_path / "bert", rl=tmp_path / "rl")
    long = "--max_seq_length 256 --doc_stride 128 --version_2_with_negative"  # one window per question
    for command in (
        "--model_type bert --model_name_or_path {lm} --output_dir {bert} --do_train --max_steps 4",
        "--model_type bert --model_name_or_path {bert} --output_dir {bert} --do_eval_grad",
        "--model_type autobert --model_name_or_path {bert} --output_dir {rl} --do_train --train_rl --max_steps 2",
        "--model_type autobert --model_name_or_path {rl} --output_dir {rl} --do_eval",
    ):
        assert _span_stage("run_squad.py", f"{command} {long}", **p) == 0
    answers = json.loads((p["rl"] / "predictions.json").read_text())
    squad = json.loads((p["data"] / "dev-v2.0.json").read_text())
    qa = pipeline("question-answering", model=str(p["rl"]))
    for paragraph in (para for article in squad["data"] for para in article["paragraphs"]):
        for q in paragraph["qas"]:
            got = qa(question=q["question"], context=paragraph["context"], max_answer_len=30,
                     handle_impossible_answer=True, max_seq_len=256, max_question_len=12)  # fmt: skip
            assert got["answer"] == answers[q["id"]], q["id"]
    options = dict(max_answer_len=30, handle_impossible_answer=True, max_seq_len=256, max_question_len=12)
    first = [(q, para["context"]) for article in squad["data"] for para in article["paragraphs"] for q in para["qas"]]
    pairs = [{"question": q["question"], "context": c} for q, c in first[:2]]
    assert qa(pairs[0], **options)["answer"] == answers[first[0][0]["id"]]  # a dict, as the stock pipeline takes
    assert [a["answer"] for a in qa(pairs, **options)] == [answers[q["id"]] for q, _ in first[:2]]  # a list
    assert qa(pairs[0]["question"], pairs[0]["context"], **options)["answer"] == answers[first[0][0]["id"]]
    with pytest.raises(ValueError, match="needs question= and context="):
        qa(question="who?")
    with pytest.raises(ValueError, match="needs a non-empty context"):
        qa(question="who?", context="   ")
    with pytest.raises(ValueError, match="max_seq_len 4096: the model reads at most"):
        qa(pairs[0], max_seq_len=4096)
    with pytest.raises(ValueError, match="max_seq_len 4096: the model reads at most"):  # set when made, too
        pipeline("question-answering", model=str(p["rl"]), max_seq_len=4096)(pairs[0])


def test_int8_inference_reports_and_serves_what_do_eval_predicted(classifier, tmp_path):
    int8 = tmp_path / "int8"
    shutil.copytree(classifier["rl"], int8)
    command = "--model_type autobert --model_name_or_path {int8} --output_dir {int8} --do_eval --quantize int8"
    assert stage(command + " --no_cuda --per_gpu_eval_batch_size 1", **classifier, int8=int8) == 0  # int8: CPU
    report = json.loads((int8 / "eval_results_int8.json").read_text())  # beside the float model's results
    assert json.loads((int8 / "eval_results.json").read_text()) == json.loads(
        (classifier["rl"] / "eval_results.json").read_text()
    )
    assert 0 <= report["acc"] <= 1 and report["inference_path"] == "unpadded" and len(report["kept_fraction"]) == 2
    model = trbert.quantized(AutoModelForSequenceClassification.from_pretrained(int8).eval(), "int8")
    assert model.selectors[0].hidden.weight.dtype == torch.float32  # the selectors stay float
    texts = [json.loads(line)["text"] for line in (classifier["data"] / "dev.jsonl").read_text().splitlines()]
    classify = pipeline("text-classification", model=model, tokenizer=_tokenizer(int8), device="cpu")  # int8: CPU
    labels = [int(r["label"].split("_")[1]) for r in classify(texts, batch_size=1)]
    assert labels == json.loads((int8 / "predictions_int8.json").read_text())
