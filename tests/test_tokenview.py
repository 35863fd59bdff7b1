"""The token view page: word pieces joined into words, keep rates, the HTML, and a headless-Chromium screenshot."""

import random
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest

from trbert.tools.tokenview import (
    ViewExample,
    ViewSummary,
    WordRate,
    depth_colours,
    join_wordpieces,
    render,
    token_to_word,
    word_keep_rates,
    write_page,
)

SPECIAL = {"[CLS]", "[SEP]", "[PAD]"}


def make_example(tokens, depth, seed=0, **fields) -> ViewExample:
    """An example with probabilities that agree with ``depth`` (scored until dropped, 2 selectors)."""
    rng = random.Random(seed)
    probs = []
    for d in depth:
        row = []
        for s in range(2):
            if s > d:
                row.append(None)
            else:
                row.append(round(rng.uniform(0.55, 1.0) if s < d else rng.uniform(0.0, 0.45), 3))
        probs.append(row)
    kept = [sum(d >= s + 1 for d in depth) / len(depth) for s in range(2)]
    options = dict(gold="positive", predicted="positive", kept_fraction=kept, mflops=12.5, full_mflops=40.0)
    return ViewExample(tokens, list(depth), probs, [t in SPECIAL for t in tokens], **{**options, **fields})


def summary(**fields) -> ViewSummary:
    options = dict(
        title="TR-BERT on Rotten Tomatoes (dev)",
        metric_name="accuracy",
        metric=0.8125,
        kept_fraction=[0.625, 0.375],
        flops_speedup=2.37,
        examples=800,
        selector_layers=[1, 3],
    )
    return ViewSummary(**{**options, **fields})


def test_join_wordpieces_depth_probability_and_spans():
    tokens = ["[CLS]", "un", "##believ", "##able", "film", "[SEP]", "##x", "end", "##s", "[SEP]"]
    depth = [2, 0, 1, 0, 2, 0, 1, 0, 0, 2]
    probs = [
        [0.9, 0.8],
        [0.2, None],
        [0.7, 0.1],
        [0.3, None],
        [0.95, 0.9],
        [0.1, None],
        [0.6, 0.4],
        [None, None],
        [0.05, None],
        [0.99, 0.97],
    ]
    special = [t in SPECIAL for t in tokens]
    words = join_wordpieces(tokens, depth, probs, special)
    assert [w.text for w in words] == ["[CLS]", "unbelievable", "film", "[SEP]", "x", "ends", "[SEP]"]
    unbelievable = words[1]
    assert (unbelievable.depth, unbelievable.start, unbelievable.end) == (1, 1, 3)
    assert unbelievable.probs == [0.7, 0.1]  # max over pieces, None ignored
    assert unbelievable.pieces == ["un", "##believ", "##able"]
    # A continuation never joins a special token; a word of all-None probabilities stays None.
    assert words[4].start == 6 and not words[4].special
    assert words[5].probs == [0.05, None] and words[5].depth == 0
    assert [w.special for w in words] == [True, False, False, True, False, False, True]
    owner = token_to_word(words)
    assert owner == [0, 1, 1, 1, 2, 3, 4, 5, 5, 6]
    assert {owner[t] for t in range(2, 5)} == {1, 2}  # a span starting mid-word covers the whole word


def test_view_example_refuses_inconsistent_data():
    with pytest.raises(ValueError, match="one entry per token"):
        ViewExample(["[CLS]"], [2, 2], [[1, 1]], [True], "", "", [1, 1], 1, 1)
    with pytest.raises(ValueError, match="depth"):
        ViewExample(["a"], [3], [[0.5, 0.5]], [False], "", "", [1.0, 1.0], 1.0, 1.0)
    with pytest.raises(ValueError, match="span"):
        make_example(["[CLS]", "a", "[SEP]"], [2, 2, 2], gold_span=(1, 3))
    with pytest.raises(ValueError, match="selector layers"):
        summary(selector_layers=[1])


def test_word_keep_rates():
    examples = [
        make_example(["[CLS]", "the", "great", "film", "[SEP]"], [2, 0, 2, 1, 2], seed=1),
        make_example(["[CLS]", "The", "great", "fi", "##lm", "[SEP]"], [2, 0, 2, 0, 2, 2], seed=2),
        make_example(["[CLS]", "the", "great", "rare", "[SEP]"], [2, 2, 2, 2, 2], seed=3),
    ]
    most, least = word_keep_rates(examples, min_count=2, top_k=2)
    assert most == [WordRate("great", 1.0, 3), WordRate("film", 0.5, 2)]
    assert least == [WordRate("the", 1 / 3, 3)]  # "rare" is seen once; [CLS]/[SEP] are skipped


STOP = set("a an the of to and or but is was it its in on at by for with as this that be has have".split())
REVIEW = (
    "an intelligent , beautifully shot drama about a fishing family on the edge of ruin . the first hour is "
    "quietly devastating : the performances are restrained , the dialogue is sparse , and the sea itself becomes "
    "a character . sadly the last act loses its nerve , piling coincidence on coincidence until the ending feels "
    "manipulative rather than earned . still , the cinematography is extraordinary and the lead performance "
    "deserves every award it will get . flawed but unforgettable , and well worth seeing on the biggest screen "
    "you can find ."
)


def wordpieces(text: str) -> list[str]:
    """A stand-in for WordPiece: words longer than seven letters split after their fourth letter."""
    out = []
    for word in text.split():
        out += [word[:4], "##" + word[4:]] if len(word) > 7 else [word]
    return out


def plausible_depths(tokens: list[str], seed: int) -> list[int]:
    """Stop words and punctuation mostly go early, longer words mostly reach the end; [CLS] always does."""
    rng = random.Random(seed)
    out = []
    for t in tokens:
        if t == "[CLS]":
            out.append(2)
        elif t in STOP or not t.removeprefix("##").isalnum():
            out.append(rng.choice([0, 0, 0, 1]))
        else:
            out.append(rng.choice([0, 1, 2, 2, 2]))
    return out


def sample_examples() -> list[ViewExample]:
    """Five synthetic examples: short and long classification texts, a QA pair with spans, awkward text."""
    short = ["[CLS]", "a", "moving", ",", "un", "##even", "film", ".", "[SEP]"]
    long = ["[CLS]"] + wordpieces(REVIEW) + ["[SEP]"]
    question = ["[CLS]", "who", "wrote", "the", "novel", "?", "[SEP]"]
    passage = "the novel was written by mary shel ##ley in 1818 and published anonymous ##ly in london .".split()
    qa = question + passage + ["[SEP]"]
    odd = ["[CLS]", "<script>alert(1)</script>", "&", '"quoted"', "[SEP]"]
    start = qa.index("mary")
    return [
        make_example(short, plausible_depths(short, 1), seed=1, correct=True, example_id="rt-dev-17"),
        make_example(long, plausible_depths(long, 2), seed=2, gold="negative", correct=False, example_id="rt-dev-204"),
        make_example(
            qa,
            plausible_depths(qa, 3),
            seed=3,
            question="who wrote the novel?",
            gold="mary shelley",
            predicted="mary shelley in 1818",
            gold_span=(start, start + 2),
            predicted_span=(start, start + 4),
            correct=False,
            example_id="squad-56be4db0",
        ),
        make_example(odd, [2, 0, 1, 2, 2], seed=4, correct=None),
        make_example(["[CLS]", "fine", ".", "[SEP]"], [2, 2, 0, 1], seed=5, correct=True),
    ]


class Words(HTMLParser):
    """Collects example containers and word spans (with the example each word belongs to)."""

    def __init__(self):
        super().__init__()
        self.examples, self.words, self.scripts = [], [], 0
        self._word = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if "data-example" in attrs:
            self.examples.append(int(attrs["data-example"]))
        if tag == "span" and "w" in attrs.get("class", "").split() and self.examples:
            self._word = {"example": self.examples[-1], **attrs, "text": ""}

    def handle_data(self, data):
        if self._word is not None:
            self._word["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._word is not None:
            self.words.append(self._word)
            self._word = None


def test_render_holds_every_example_with_depths_summary_and_escaping():
    examples = sample_examples()
    page = render(examples, summary(most_kept=[WordRate("plot", 0.97, 31)], least_kept=[WordRate(",", 0.02, 88)]))
    parser = Words()
    parser.feed(page)
    assert parser.examples == list(range(len(examples)))
    assert parser.scripts == 1  # ours only: the token "<script>" is text
    expected = [
        (i, w.depth, w.text)
        for i, ex in enumerate(examples)
        for w in join_wordpieces(ex.tokens, ex.depth, ex.probs, ex.special)
    ]
    got = [(w["example"], int(w["data-depth"]), w["text"]) for w in parser.words]
    assert got == expected
    colours = depth_colours(2)
    for w in parser.words:
        depth = int(w["data-depth"])
        assert f"d{depth}" in w["class"].split()
        background, text = colours[depth]
        assert f".d{depth}{{background:{background};color:{text};" in page
    assert len({c for c, _ in colours}) == 3  # three depths, three backgrounds
    for number in ["0.8125", "2.37×", "62.5%", "37.5%", "800", "97.0% of 31", "12.5 of 40.0 MFLOPs"]:
        assert number in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp;" in page and "&quot;quoted&quot;" in page
    assert not re.search(r"https?://", page)
    assert "selector 2 (layer 3)" in page and "reached the last layer" in page


def test_render_marks_answer_spans_and_question():
    examples = sample_examples()
    page = render(examples, summary())
    parser = Words()
    parser.feed(page)
    qa = [w for w in parser.words if w["example"] == 2]
    gold = [w["text"] for w in qa if "gold" in w["class"].split()]
    pred = [w["text"] for w in qa if "pred" in w["class"].split()]
    assert gold == ["mary", "shelley"]  # "shel ##ley" shown as one word
    assert pred == ["mary", "shelley", "in", "1818"]
    assert '<div class="question"><span class="label">question</span> who wrote the novel?</div>' in page
    specials = [w["text"] for w in parser.words if "sp" in w["class"].split()]
    assert set(specials) == {"[CLS]", "[SEP]"}
    title = next(w["title"] for w in qa if w["text"] == "shelley")
    assert "pieces: shel ##ley" in title and "selector 1:" in title


def test_render_refuses_examples_with_another_selector_count():
    ex = ViewExample(["[CLS]"], [1], [[0.9]], [True], "a", "a", [1.0], 1.0, 1.0)
    with pytest.raises(ValueError, match="selectors"):
        render([ex], summary())


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", head[16:24])


def test_headless_chromium_screenshot(tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (runs/test.sh installs Debian's chromium package where it can)")
    page = tmp_path / "show" / "view.html"  # write_page creates the folder
    examples = sample_examples()
    most, least = word_keep_rates(examples, min_count=2)
    write_page(page, render(examples, summary(most_kept=most, least_kept=least)))
    shot = tmp_path / "view.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    command += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    command += [f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600"]
    subprocess.run(command + [page.as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.exists(), "chromium wrote no screenshot"
    assert png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 50_000  # a blank page of this size compresses to about 9 KB
