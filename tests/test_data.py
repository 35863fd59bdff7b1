"""Readers, their bad inputs, the feature cache (key, format, streaming, same features as before the
streaming rewrite), batching, and the Hyperpartisan split."""

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, fixture_tokenizer

import trbert.train.data
from trbert.errors import InputError
from trbert.tasks import family, get_task, make_task
from trbert.tasks.mrqa import MARKERS
from trbert.tools.prepare import read_flat_hyperpartisan, read_xml_hyperpartisan, split_hyperpartisan
from trbert.train.data import FORMAT, batches, load_features


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


# ---- the streaming cache against the features of the code before it ----------------------------

# Digests (sha256 of the bytes, shape, dtype) of every array that commit c3ab43f (the last code that
# tokenised a whole split in one call and cached one .npz) made from the fixtures, per case: family,
# flags, split, --max_seq_length. They were made once by running that commit's ``load_features`` with
# the same fixture tokenizer; the cases are data, so the test rebuilds each with today's flags.
REFERENCE = FIXTURES / "features_c3ab43f.json"
# Features changed on purpose since then, left out of the comparison:
# - HotpotQA training rows pack their paragraphs in a new order (the chosen set shuffled, the
#   overflowing paragraph last), which moves every token-position array; since a title that fits
#   only in part is cut rather than dropped (as the original), training rows are fuller too (lengths,
#   segment ids); the yes/no switch is still compared.
# - ``sent_ids`` (HotpotQA, every split) is new: the (paragraph, sentence) of each sentence slot.
# - Not excluded, but only because the fixtures cannot show them: MRQA maps the context markers
#   [PAR], [TLE], [DOC] to [unused1..3] (the MRQA fixtures hold no marker, checked below, so their
#   features must not move), and WikiHop reads dev.json where dev_sort.json is missing (the fixture
#   has dev_sort.json).
# - WikiHop's --doc_stride is the original's overlap, its default -1 one window per question, and
#   its windows carry the original's token types (the chunk and [SEP] are type 1): every case's
#   windows moved (docs/differences.md F13).
CHANGED = {
    ("hotpot", "train"): {"input_ids", "origin", "starts", "ends", "sent_starts", "sent_ends", "sent_labels"}
    | {"lengths", "token_type_ids"},
    ("wikihop", "train"): {"input_ids", "lengths"},
    ("wikihop", "dev"): {"input_ids", "lengths"},
}
NEW = {"hotpot": {"sent_ids"}, "wikihop": {"token_type_ids"}}


def _digest(array) -> dict:
    array = np.ascontiguousarray(array)
    return {"sha256": hashlib.sha256(array.tobytes()).hexdigest(), "shape": list(array.shape), "dtype": array.dtype.str}


def _case_id(case) -> str:
    options = ",".join(f"{k}={v}" for k, v in case["options"].items())
    return f"{case['task_name']}-{case['split']}-{case['max_seq_length']}" + (f"-{options}" if options else "")


CASES = json.loads(REFERENCE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_streamed_features_equal_the_one_call_features(case, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(trbert.train.data, "CHUNK", 5)  # chunk boundaries inside every split (row numbers carry over)
    task = make_task(case["family"], family(case["family"]).config(**case["options"]), case["task_name"])
    data_dir = FIXTURES / case["fixture"]
    arrays, _ = load_features(task, data_dir, case["split"], tokenizer, case["max_seq_length"], tmp_path)
    changed = CHANGED.get((case["family"], case["split"]), set())
    new = NEW.get(case["family"], set())
    assert set(arrays) == set(case["arrays"]) | new
    assert len(arrays["lengths"]) == case["rows"]
    compared = {name: _digest(arrays[name]) for name in case["arrays"] if name not in changed}
    assert compared == {name: d for name, d in case["arrays"].items() if name not in changed}
    for name in changed:  # moved, not reshaped
        assert _digest(arrays[name])["shape"] == case["arrays"][name]["shape"]


def test_reference_cases_cover_every_family_and_the_mrqa_fixtures_hold_no_marker():
    assert {c["family"] for c in CASES} == {"classification", "squad", "mrqa", "trivia", "hotpot", "race", "wikihop"}
    for split in ("train", "dev"):
        text = (FIXTURES / "mrqa" / f"{split}.jsonl").read_text()
        assert not any(marker in text for marker in MARKERS)  # else their features moved on purpose


def test_cache_format_is_part_of_the_key(imdb_dir, tokenizer, monkeypatch):
    task, cache = get_task("imdb"), imdb_dir / "cached_features"
    cache.mkdir()
    stale = cache / "imdb_train_16_0123456789abcdef0123.npz"  # a cache of the one-file format: never read
    np.savez(stale, input_ids=np.zeros((1, 16), np.int32), lengths=np.ones(1, np.int32), labels=np.zeros(1))
    arrays, fingerprint = load_features(task, imdb_dir, "train", tokenizer, 16)
    assert fingerprint["format"] == FORMAT and len(arrays["lengths"]) == 48
    (built,) = [p for p in cache.iterdir() if p.is_dir()]
    assert json.loads((built / "meta.json").read_text())["fingerprint"] == fingerprint
    monkeypatch.setattr(trbert.train.data, "FORMAT", FORMAT + 1)  # a new layout: a new folder, the old one left alone
    again, newer = load_features(task, imdb_dir, "train", tokenizer, 16)
    assert newer["format"] == FORMAT + 1 and len([p for p in cache.iterdir() if p.is_dir()]) == 2
    assert np.array_equal(again["input_ids"], arrays["input_ids"])


def test_an_unfinished_cache_folder_is_built_again(imdb_dir, tokenizer):
    task = get_task("imdb")
    arrays, _ = load_features(task, imdb_dir, "dev", tokenizer, 16)
    expected = np.array(arrays["input_ids"])
    (folder,) = (imdb_dir / "cached_features").iterdir()
    (folder / "meta.json").unlink()  # what a copy cut short leaves: arrays without their meta.json
    np.save(folder / "input_ids.npy", np.zeros((3, 16), np.int32))
    rebuilt, _ = load_features(task, imdb_dir, "dev", tokenizer, 16)
    assert np.array_equal(rebuilt["input_ids"], expected)
    with open(folder / "lengths.npy", "r+b") as f:  # a truncated array: unreadable, built again
        f.truncate(40)
    assert np.array_equal(load_features(task, imdb_dir, "dev", tokenizer, 16)[0]["input_ids"], expected)


def test_examples_are_read_a_chunk_ahead_at_most(imdb_dir, tokenizer, monkeypatch):
    """The split is never held whole: featurisation pulls at most one chunk of examples ahead."""
    monkeypatch.setattr(trbert.train.data, "CHUNK", 7)
    task, pulled, sizes = get_task("imdb"), [0], []
    reader, featurize = task.read, task.featurize

    class Counting:
        name, settings, path = task.name, task.settings, task.path

        def read(self, data_dir, split):
            for example in reader(data_dir, split):
                pulled[0] += 1
                yield example

        def featurize(self, examples, *args):
            sizes.append(len(examples))
            assert pulled[0] == sum(sizes)  # nothing read beyond this chunk
            return featurize(examples, *args)

    arrays, _ = load_features(Counting(), imdb_dir, "train", tokenizer, 16)
    assert sizes == [7] * 6 + [6] and len(arrays["lengths"]) == 48


def test_array_writer_streams_rows_into_npy_files(tmp_path):
    writer = trbert.train.data.ArrayWriter(tmp_path)
    rng = np.random.default_rng(0)
    chunks = [
        {
            "input_ids": rng.integers(0, 99, (n, 3, 5)).astype(np.int32),
            "max_context": rng.random((n, 5)) > 0.5,
            "lengths": np.arange(n, dtype=np.int64),
        }
        for n in (4, 0, 3)  # a chunk whose examples were all skipped adds nothing
    ]
    for chunk in chunks:
        writer.append(chunk)
    described = writer.finish()
    for name in chunks[0]:
        whole = np.concatenate([c[name] for c in chunks])
        read = np.load(tmp_path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        assert np.array_equal(read, whole) and read.dtype == whole.dtype and read.offset == trbert.train.data.HEADER
        assert described[name] == {"shape": list(whole.shape), "dtype": whole.dtype.str}
    with pytest.raises(ValueError, match="chunks disagree"):
        writer.append({"input_ids": chunks[0]["input_ids"], "lengths": chunks[0]["lengths"]})
    with pytest.raises(ValueError, match="feature lengths: chunks disagree"):
        writer.append({**chunks[0], "lengths": chunks[0]["lengths"].astype(np.int32)})


def test_a_dataset_module_is_found_without_a_list(tmp_path):
    """trbert/tasks/dbpedia.py registers itself: the release's train.csv/test.csv as they unpack,
    dev every 20th training row (docs/design.md)."""
    from trbert.tasks import DATASETS, make_task

    rows = [f'{1 + k % 14},"title {k}","an abstract, number {k}"' for k in range(41)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "test.csv").write_text("\n".join(rows[:3]) + "\n")
    task = make_task("classification", task_name="dbpedia")
    assert "dbpedia" in DATASETS and task.num_labels == 14
    dev, train = list(task.read(str(tmp_path), "dev")), list(task.read(str(tmp_path), "train"))
    assert [label for _, label in dev] == [0, 20 % 14, 40 % 14] and len(train) == 38
    assert train[0] == ("title 1 an abstract, number 1", 1) and len(list(task.read(str(tmp_path), "test"))) == 3
