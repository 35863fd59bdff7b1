"""Readers, their bad inputs, the feature cache key, batching, and the Hyperpartisan split."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_tokenizer

from trbert.data import batches, load_features
from trbert.errors import InputError
from trbert.prepare import read_flat_hyperpartisan, read_xml_hyperpartisan, split_hyperpartisan
from trbert.tasks import get_task


@pytest.fixture(scope="module")
def tokenizer():
    return fixture_tokenizer()


def test_tasks_and_label_counts():
    assert [get_task(n).num_labels for n in ("IMDB", "yelp_f", "20news", "hyperpartisan", "yelp_p")] == [2, 5, 20, 2, 2]
    with pytest.raises(InputError, match="unknown --task_name 'sst2'"):
        get_task("sst2")


def test_jsonl_and_yelp_readers():
    imdb = list(get_task("imdb").read(FIXTURES / "imdb", "train"))
    assert len(imdb) == 48 and {y for _, y in imdb} == {0, 1}
    yelp = list(get_task("yelp_f").read(FIXTURES / "yelp", "train"))
    assert len(yelp) == 24 and {y for _, y in yelp} == {0, 1, 2, 3, 4}  # 1-based in the file


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"text": "fine", "label": 1}\n{"text": "broken", "label": \n', r"train.jsonl:2: not valid JSON"),
        ('{"text": "fine", "label": 2}\n', r"train.jsonl:1: label 2 is not one of 0..1"),
        ('{"text": 5, "label": 1}\n', r"train.jsonl:1: expected an object"),
        ("\n\n", r"train.jsonl: the file holds no examples"),
    ],
)
def test_bad_jsonl_lines_name_file_and_line(tmp_path, content, message):
    (tmp_path / "train.jsonl").write_text(content)
    with pytest.raises(InputError, match=message):
        list(get_task("imdb").read(tmp_path, "train"))


def test_bad_yelp_rows_and_missing_files(tmp_path):
    (tmp_path / "train.csv").write_text('3,"good"\n6,"too many stars"\n')
    with pytest.raises(InputError, match=r"train.csv:2: label 6 is not one of 1..5"):
        list(get_task("yelp_f").read(tmp_path, "train"))
    (tmp_path / "train.csv").write_text("3\n")
    with pytest.raises(InputError, match="expected 2 columns"):
        list(get_task("yelp_f").read(tmp_path, "train"))
    with pytest.raises(InputError, match="dev.csv: data file not found"):
        list(get_task("yelp_f").read(tmp_path, "dev"))


def test_features_and_cache_key(imdb_dir, tokenizer):
    task = get_task("imdb")
    arrays, fingerprint = load_features(task, imdb_dir, "train", tokenizer, 16)
    assert arrays["input_ids"].shape == (48, 16) and arrays["lengths"].max() == 16
    assert (arrays["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    cached = list((imdb_dir / "cached_features").glob("*/meta.json"))
    assert len(cached) == 1 and isinstance(arrays["input_ids"], np.memmap)  # read back memory-mapped
    load_features(task, imdb_dir, "train", tokenizer, 24)  # another length: another cache folder
    assert len(list((imdb_dir / "cached_features").glob("*/meta.json"))) == 2
    with open(imdb_dir / "train.jsonl", "a") as f:  # new content: the old cache is not reused
        f.write(json.dumps({"text": "good good", "label": 1}) + "\n")
    changed, new_fingerprint = load_features(task, imdb_dir, "train", tokenizer, 16)
    assert len(changed["lengths"]) == 49 and new_fingerprint["source_sha256"] != fingerprint["source_sha256"]
    cased = fixture_tokenizer(lower=False)
    assert load_features(task, imdb_dir, "train", cased, 16)[1]["tokenizer_sha256"] != fingerprint["tokenizer_sha256"]


def test_batches_are_trimmed_and_carry_their_rows(imdb_dir, tokenizer):
    arrays, _ = load_features(get_task("imdb"), imdb_dir, "train", tokenizer, 40)
    seen = []
    for batch in batches(arrays, 8, by_length=True):
        width = batch["input_ids"].shape[1]
        assert width == int(batch["lengths"].max())
        assert batch["attention_mask"].sum(1).tolist() == batch["lengths"].tolist()
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(48))
    state = torch.get_rng_state()
    list(batches(arrays, 8))
    assert torch.equal(state, torch.get_rng_state())  # loaders leave the dropout generator alone


def test_hyperpartisan_split_is_seeded_and_per_class():
    articles = read_flat_hyperpartisan(FIXTURES / "hyperpartisan_original_data.txt")
    splits = split_hyperpartisan(articles)
    assert splits == split_hyperpartisan(articles)
    counts = {s: [sum(r["label"] == c for r in rows) for c in (0, 1)] for s, rows in splits.items()}
    assert counts == {"train": [20, 12], "dev": [3, 1], "test": [3, 1]}  # 26 class-0, 14 class-1 articles
    original = split_hyperpartisan(articles, original_sizes=True)  # the original: class 1 sized from class 0
    assert [sum(r["label"] == 1 for r in original[s]) for s in ("dev", "test")] == [3, 3]
    texts = [r["text"] for rows in splits.values() for r in rows]
    assert sorted(texts) == sorted(t for t, _ in articles)


def test_hyperpartisan_readers_reject_bad_input(tmp_path):
    (tmp_path / "data.txt").write_text("1 0 fine text\n2 maybe not a label\n")
    with pytest.raises(InputError, match=r"data.txt:2: expected"):
        read_flat_hyperpartisan(tmp_path / "data.txt")
    (tmp_path / "a.xml").write_text('<articles><article id="7" title="T"><p>Some <a>text</a>.</p></article></articles>')
    (tmp_path / "t.xml").write_text('<articles><article id="7" hyperpartisan="true"/></articles>')
    assert read_xml_hyperpartisan(tmp_path / "a.xml", tmp_path / "t.xml") == [("T Some text .", 1)]
    (tmp_path / "t.xml").write_text("<articles></articles>")
    with pytest.raises(InputError, match="no hyperpartisan true/false for article 7"):
        read_xml_hyperpartisan(tmp_path / "a.xml", tmp_path / "t.xml")


def test_feature_arrays_have_safe_dtypes(imdb_dir, tokenizer):
    arrays, _ = load_features(get_task("imdb"), imdb_dir, "dev", tokenizer, 16)
    assert all(a.dtype != np.dtype("O") for a in arrays.values())
