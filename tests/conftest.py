"""Shared fixtures: a tiny WordPiece vocabulary, tiny random BERT / DistilBERT checkpoints, data."""

from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_bert_config(**overrides):
    vocab = len((FIXTURES / "vocab.txt").read_text().split())
    options = dict(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return BertConfig(**{**options, **overrides})


def tiny_distilbert_config(**overrides):
    vocab = len((FIXTURES / "vocab.txt").read_text().split())
    options = dict(vocab_size=vocab, dim=32, n_layers=4, n_heads=4, hidden_dim=64, max_position_embeddings=64)
    return DistilBertConfig(**{**options, **overrides})


def fixture_tokenizer(lower: bool = True) -> BertTokenizerFast:
    """The tiny WordPiece tokenizer (transformers 5 takes the vocabulary file as ``vocab``)."""
    tokenizer = BertTokenizerFast(vocab=str(FIXTURES / "vocab.txt"), do_lower_case=lower)
    assert len(tokenizer) == len((FIXTURES / "vocab.txt").read_text().split())
    return tokenizer


def _save_pretrained_lm(path: Path, model) -> Path:
    torch.manual_seed(0)
    model.save_pretrained(path)
    fixture_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 'pre-trained' 4-layer BERT (random weights, no head) with its tokenizer, as on the hub."""
    torch.manual_seed(0)
    return _save_pretrained_lm(tmp_path_factory.mktemp("tiny_bert"), BertModel(tiny_bert_config()))


@pytest.fixture(scope="session")
def tiny_distilbert_dir(tmp_path_factory):
    torch.manual_seed(0)
    return _save_pretrained_lm(tmp_path_factory.mktemp("tiny_distilbert"), DistilBertModel(tiny_distilbert_config()))


@pytest.fixture
def imdb_dir(tmp_path):
    """A copy of the IMDB-format fixture (tests may write caches next to it)."""
    target = tmp_path / "imdb"
    target.mkdir()
    for split in ("train", "dev", "test"):
        (target / f"{split}.jsonl").write_text((FIXTURES / "imdb" / f"{split}.jsonl").read_text())
    return target


def featurize(task, examples, tokenizer, max_length: int, split: str = "train"):
    """``task.featurize`` on all of ``examples`` at once: ``(arrays, counts)``."""
    counts = Counter()
    return task.featurize(list(examples), tokenizer, max_length, split, 0, counts), counts
