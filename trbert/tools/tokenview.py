"""The token view: one self-contained HTML page showing which tokens a TR-BERT model kept.

The pure part of ``python -m trbert show``: the data each example brings (``ViewExample``,
``ViewSummary``), word pieces joined into words, the most and least often kept words, and the page
(``render``, written atomically by ``write_page``). The caller runs the model and collects, per
token, its depth and its keep probability at every selector. Depth: ``0`` = dropped at selector 1,
..., ``S`` = reached the last layer (``S = len(kept_fraction)`` selectors).

The page's fixed parts close the file; nothing may name a URL, web font or other outside resource.
Depths follow one light-to-dark blue scale (lightness only, which every colour blindness sees):
dropped at the first selector: no background, grey struck-through text; dropped later: light blue,
darker the further it went; the last layer: dark blue, white text. Answer spans use two hues outside
that scale and differ in position too: magenta gold (a bar below), amber predicted (a bar above).
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..store.outputs import atomic_write

CONTINUATION = "##"


@dataclass
class ViewExample:
    """One row of a split as the model saw it. ``tokens`` are word pieces, [CLS] first, padding
    removed; ``depth``, ``probs`` and ``special`` have one entry per token; ``probs[t][s]`` is the keep
    probability of token ``t`` at selector ``s`` (None where it was not scored). Spans are inclusive
    token index ranges."""

    tokens: list[str]
    depth: list[int]
    probs: list[list[float | None]]
    special: list[bool]
    gold: str
    predicted: str
    kept_fraction: list[float]
    mflops: float
    full_mflops: float
    correct: bool | None = None
    question: str | None = None
    gold_span: tuple[int, int] | None = None
    predicted_span: tuple[int, int] | None = None
    example_id: str | None = None

    def __post_init__(self):
        n, s = len(self.tokens), len(self.kept_fraction)
        name = f"example {self.example_id!r}" if self.example_id is not None else "example"
        if not (len(self.depth) == len(self.probs) == len(self.special) == n):
            raise ValueError(f"{name}: tokens, depth, probs and special must have one entry per token")
        if any(not 0 <= d <= s for d in self.depth):
            raise ValueError(f"{name}: every depth must lie in 0..{s} (the number of selectors)")
        if any(len(p) != s for p in self.probs):
            raise ValueError(f"{name}: every token needs one probability (or None) per selector ({s})")
        for span in (self.gold_span, self.predicted_span):
            if span is not None and not 0 <= span[0] <= span[1] < n:
                raise ValueError(f"{name}: span {span} is not an inclusive range inside its {n} tokens")


@dataclass
class WordRate:
    """How often a word reached the last layer: ``kept / count`` over its occurrences."""

    word: str
    rate: float
    count: int


@dataclass
class ViewSummary:
    """The numbers over the whole split shown at the top of the page. ``examples`` counts the split
    (the page may show fewer); ``kept_fraction`` is the mean per selector; ``selector_layers``, when
    given, names the layer each selector sits before in the legend."""

    title: str
    metric_name: str
    metric: float
    kept_fraction: list[float]
    flops_speedup: float
    examples: int
    most_kept: list[WordRate] = field(default_factory=list)
    least_kept: list[WordRate] = field(default_factory=list)
    selector_layers: list[int] | None = None

    def __post_init__(self):
        if self.selector_layers is not None and len(self.selector_layers) != len(self.kept_fraction):
            raise ValueError(f"{len(self.selector_layers)} selector layers for {len(self.kept_fraction)} selectors")


@dataclass
class Word:
    """Word pieces joined for display: tokens ``start .. end`` (inclusive). ``depth`` is the deepest of
    its pieces, ``probs[s]`` the largest probability its pieces got at selector ``s``."""

    text: str
    depth: int
    probs: list[float | None]
    special: bool
    start: int
    end: int
    pieces: list[str] = field(default_factory=list)


def join_wordpieces(
    tokens: list[str], depth: list[int], probs: list[list[float | None]], special: list[bool]
) -> list[Word]:
    """Join ``##`` continuations onto the piece before them (never onto a special token); a special
    token is always a word of its own. A word counts as dropped only if every piece was."""
    words: list[Word] = []
    for t, piece in enumerate(tokens):
        if piece.startswith(CONTINUATION) and not special[t] and words and not words[-1].special:
            word = words[-1]
            word.text += piece[len(CONTINUATION) :]
            word.depth = max(word.depth, depth[t])
            word.probs = [_max_known(a, b) for a, b in zip(word.probs, probs[t], strict=True)]
            word.end = t
            word.pieces.append(piece)
            continue
        text = piece if special[t] else piece.removeprefix(CONTINUATION) or piece
        words.append(Word(text, depth[t], list(probs[t]), special[t], t, t, [piece]))
    return words


def _max_known(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def token_to_word(words: list[Word]) -> list[int]:
    """For every token index, the index of the word that holds it."""
    return [w for w, word in enumerate(words) for _ in range(word.start, word.end + 1)]


def word_keep_rates(
    examples: list[ViewExample], min_count: int = 3, top_k: int = 12
) -> tuple[list[WordRate], list[WordRate]]:
    """The ``top_k`` most and least often kept words (case folded, special tokens skipped) among
    those seen at least ``min_count`` times; a word is kept when it reached the last layer. Ties go
    to the more frequent word. The two lists never share a word: with fewer than ``2 * top_k``
    words, the most kept half goes to the first list and the rest to the second."""
    seen: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    for ex in examples:
        for word in join_wordpieces(ex.tokens, ex.depth, ex.probs, ex.special):
            if not word.special:
                seen[word.text.casefold()] += 1
                kept[word.text.casefold()] += word.depth == len(ex.kept_fraction)
    rates = [WordRate(w, kept[w] / n, n) for w, n in seen.items() if n >= min_count]
    most = sorted(rates, key=lambda r: (-r.rate, -r.count, r.word))[: min(top_k, (len(rates) + 1) // 2)]
    listed = {r.word for r in most}
    least = sorted((r for r in rates if r.word not in listed), key=lambda r: (r.rate, -r.count, r.word))[:top_k]
    return most, least


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def selector_names(summary: ViewSummary) -> list[str]:
    layers = summary.selector_layers or [None] * len(summary.kept_fraction)
    return [f"selector {s + 1}" + (f" (layer {layer})" if layer is not None else "") for s, layer in enumerate(layers)]


def depth_names(summary: ViewSummary) -> list[str]:
    """What each depth means, for the legend and the tooltips."""
    return [f"dropped at {name}" for name in selector_names(summary)] + ["reached the last layer"]


def _tooltip(word: Word, summary: ViewSummary) -> str:
    lines = [depth_names(summary)[word.depth]]
    for s, p in enumerate(word.probs):
        lines.append(f"selector {s + 1}: " + ("not scored" if p is None else f"keep p = {p:.3f}"))
    if len(word.pieces) > 1:
        lines.append("pieces: " + " ".join(word.pieces))
    return "\n".join(lines)


def _span_words(span: tuple[int, int] | None, owner: list[int]) -> set[int]:
    return set() if span is None else {owner[t] for t in range(span[0], span[1] + 1)}


def _text_html(ex: ViewExample, summary: ViewSummary) -> str:
    """The example's words, wrapped as running text; a separator token ends a line."""
    words = join_wordpieces(ex.tokens, ex.depth, ex.probs, ex.special)
    owner = token_to_word(words)
    gold, pred = _span_words(ex.gold_span, owner), _span_words(ex.predicted_span, owner)
    parts = []
    for i, word in enumerate(words):
        classes = ["w", f"d{word.depth}"] + ["sp"] * word.special + ["gold"] * (i in gold) + ["pred"] * (i in pred)
        title, text = _e(_tooltip(word, summary)), _e(word.text)
        parts.append(f'<span class="{" ".join(classes)}" data-depth="{word.depth}" title="{title}">{text}</span>')
        if word.special and word.text == "[SEP]" and i < len(words) - 1:
            parts.append('<span class="seg"></span>')
    return '<div class="text">' + " ".join(parts) + "</div>"


def _bar(x: float) -> str:
    return f'<span class="bar"><i style="width:{100 * min(max(x, 0.0), 1.0):.1f}%"></i></span>'


def _example_html(i: int, ex: ViewExample, summary: ViewSummary) -> str:
    badge = ""
    if ex.correct is not None:
        badge = '<span class="badge ok">correct</span>' if ex.correct else '<span class="badge bad">wrong</span>'
    ident = f' <span class="label">{_e(ex.example_id)}</span>' if ex.example_id is not None else ""
    head = (
        f'<div class="head"><span class="num">#{i + 1}</span>{ident}{badge}'
        f'<span><span class="label">gold</span> <span class="answer">{_e(ex.gold)}</span></span>'
        f'<span><span class="label">predicted</span> <span class="answer">{_e(ex.predicted)}</span></span></div>'
    )
    named = zip(selector_names(summary), ex.kept_fraction, strict=True)
    kept = "".join(f"<span>{_e(name)}: {_pct(k)} kept{_bar(k)}</span>" for name, k in named)
    share = ex.mflops / ex.full_mflops if ex.full_mflops else 0.0
    flops = f"<span>{ex.mflops:.1f} of {ex.full_mflops:.1f} MFLOPs ({_pct(share)} of the full model)</span>"
    label = '<span class="label">question</span>'
    question = f'<div class="question">{label} {_e(ex.question)}</div>' if ex.question is not None else ""
    return (
        f'<article class="example" data-example="{i}" id="example-{i}">{head}'
        f'<div class="meta">{kept}{flops}</div>{question}{_text_html(ex, summary)}</article>'
    )


def _chips(rates: list[WordRate]) -> str:
    if not rates:
        return '<span class="label">too few words to tell</span>'
    return "".join(f'<span class="chip">{_e(r.word)} <small>{_pct(r.rate)} of {r.count}</small></span>' for r in rates)


def _summary_html(summary: ViewSummary, shown: int) -> str:
    kept = zip(selector_names(summary), summary.kept_fraction, strict=True)
    stats = [
        (f"{summary.metric:.4g}", _e(summary.metric_name), ""),
        (f"{summary.flops_speedup:.2f}×", "FLOPs speed-up", ""),
    ]
    stats += [(_pct(k), f"mean kept at {_e(name)}", _bar(k)) for name, k in kept]
    cards = "".join(
        f'<div class="stat"><b>{value}</b><span class="lab">{label}</span>{bar}</div>' for value, label, bar in stats
    )
    return (
        f"<header><h1>{_e(summary.title)}</h1>"
        f'<p class="sub">{shown} of {summary.examples} examples shown; hover a word for its keep probabilities.</p>'
        f'</header><section class="panel summary"><div class="stats">{cards}</div><div class="cols">'
        f'<div><h2>Most often kept words</h2><div class="chips most">{_chips(summary.most_kept)}</div></div>'
        f'<div><h2>Least often kept words</h2><div class="chips least">{_chips(summary.least_kept)}</div></div>'
        "</div></section>"
    )


def _legend_html(summary: ViewSummary, spans: bool) -> str:
    depths = enumerate(depth_names(summary))
    items = [f'<span><span class="w d{k}" data-depth="{k}">word</span>{_e(name)}</span>' for k, name in depths]
    last = len(summary.kept_fraction)
    items.append(f'<span><span class="w d{last} sp">[CLS]</span>special token</span>')
    if spans:  # question answering: the answers are marked in the text
        items.append(f'<span><span class="w d{last} gold">answer</span>gold answer (bar below)</span>')
        items.append(f'<span><span class="w d{last} pred">answer</span>predicted answer (bar above)</span>')
    return f'<section class="panel"><h2>Legend</h2><div class="legend">{"".join(items)}</div></section>'


def render(examples: list[ViewExample], summary: ViewSummary) -> str:
    """The whole page as one HTML string (inline style and script, no outside resources)."""
    n = len(summary.kept_fraction)
    for ex in examples:
        if len(ex.kept_fraction) != n:
            raise ValueError(f"an example has {len(ex.kept_fraction)} selectors, the summary {n}")
    body = "\n".join(_example_html(i, ex, summary) for i, ex in enumerate(examples))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(summary.title)}</title><style>{STYLE}{depth_css(n)}</style></head><body><main>"
        f'{_summary_html(summary, len(examples))}{_legend_html(summary, any(ex.gold_span or ex.predicted_span for ex in examples))}<section class="examples">{body}</section>'
        f'</main><div id="tip" hidden></div><script>{SCRIPT}</script></body></html>\n'
    )


def write_page(path, page: str) -> None:
    """Write ``page`` to ``path`` atomically (UTF-8), creating its folder if needed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))


# ---- the page's fixed parts -------------------------------------------------------------------

DROPPED_TEXT = "#7d838c"
LAST_BACKGROUND = "#1d5fa6"
# Backgrounds of the intermediate depths 1 .. S-1 run from the first colour to the second.
MIDDLE_RANGE = ("#d3e4f5", "#82b3de")


def _mix(a: str, b: str, t: float) -> str:
    """The colour a fraction ``t`` of the way from hex colour ``a`` to hex colour ``b``."""
    ca, cb = ([int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in (a, b))
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def depth_colours(n_selectors: int) -> list[tuple[str, str]]:
    """``(background, text colour)`` for every depth ``0 .. n_selectors``; ``transparent`` for depth 0."""
    steps = max(n_selectors - 2, 1)  # the intermediate depths 1 .. S-1 spread over MIDDLE_RANGE
    middle = [(_mix(*MIDDLE_RANGE, (k - 1) / steps), "#10243a") for k in range(1, n_selectors)]
    return [("transparent", DROPPED_TEXT), *middle, (LAST_BACKGROUND, "#ffffff")]


def depth_css(n_selectors: int) -> str:
    """One rule ``.dK`` per depth K; depth 0 is also struck through and faded."""
    strike = "text-decoration:line-through;text-decoration-color:#a9aeb5;"
    return "\n".join(
        f".d{k}{{background:{background};color:{text};{strike if k == 0 else ''}}}"
        for k, (background, text) in enumerate(depth_colours(n_selectors))
    )


STYLE = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e7ec;--card:#ffffff;--page:#f4f6f9;--gold:#c2185b;--pred:#f2a900;
--ok:#1a7f4b;--bad:#b3261e}*{box-sizing:border-box}body{margin:0;background:var(--page);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}main{max-width:1120px;
margin:0 auto;padding:24px 20px 48px}h1{font-size:22px;margin:0 0 4px}h2{font-size:15px;margin:0 0 10px;
color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em}.sub{color:var(--muted);
margin:0 0 18px}.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;
margin:0 0 16px}.stats{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 14px}.stat{flex:1 1 150px;
border:1px solid var(--line);border-radius:8px;padding:10px 12px}.stat b{display:block;font-size:22px;
font-variant-numeric:tabular-nums}.stat .lab{color:var(--muted);font-size:13px}.bar{display:block;height:6px;
background:#e8edf3;border-radius:3px;margin-top:6px;overflow:hidden}.bar i{display:block;height:100%;
background:var(--blue,#1d5fa6);border-radius:3px}.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:720px){.cols{grid-template-columns:1fr}}.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{border:1px solid var(--line);border-radius:14px;padding:1px 9px;font-size:13px;white-space:nowrap}
.chip small{color:var(--muted);font-variant-numeric:tabular-nums}.legend{display:flex;flex-wrap:wrap;gap:8px 18px;
align-items:center;font-size:13px;color:var(--muted)}.legend .w{margin-right:4px}.example{background:var(--card);
border:1px solid var(--line);border-radius:10px;padding:14px 18px;margin:0 0 14px}.head{display:flex;flex-wrap:wrap;
align-items:baseline;gap:6px 16px;margin-bottom:8px}.head .num{font-weight:700}.badge{font-size:12px;font-weight:700;
border-radius:10px;padding:1px 8px;color:#fff}.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.label{color:var(--muted);font-size:13px}.answer{font-weight:600}.meta{display:flex;flex-wrap:wrap;gap:4px 18px;
font-size:13px;color:var(--muted);margin-bottom:10px;font-variant-numeric:tabular-nums}
.meta .bar{display:inline-block;width:70px;height:6px;margin:0 0 1px 6px;vertical-align:middle}
.question{background:#f6f8fb;border-left:3px solid #9aa5b1;border-radius:4px;padding:6px 10px;margin:0 0 10px}
.text{line-height:2.05;overflow-wrap:anywhere}.w{padding:1px 3px;border-radius:3px;-webkit-box-decoration-break:clone;
box-decoration-break:clone;cursor:default}.w.sp{font:11px/1 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
outline:1px dashed #7b8794;outline-offset:-1px;padding:2px 4px;vertical-align:1px}
.w.gold{box-shadow:inset 0 -3px 0 var(--gold)}.w.pred{box-shadow:inset 0 3px 0 var(--pred)}
.w.gold.pred{box-shadow:inset 0 -3px 0 var(--gold),inset 0 3px 0 var(--pred)}.w:hover{outline:2px solid #f2a900;
outline-offset:0}.seg{display:block;height:2px}#tip{position:fixed;z-index:10;pointer-events:none;background:#1f2933;
color:#fff;font-size:12px;line-height:1.45;padding:6px 9px;border-radius:6px;white-space:pre;
box-shadow:0 4px 14px rgba(0,0,0,.25)}
"""

# Event delegation: the first hover over a word moves its ``title`` into ``data-tip`` (so the
# browser's slow native tooltip does not double ours); without JavaScript the title still works.
SCRIPT = """
(function(){var tip=document.getElementById('tip');
document.addEventListener('mouseover',function(e){var w=e.target.closest&&e.target.closest('.w');
if(!w){tip.hidden=true;return;}if(w.title){w.dataset.tip=w.title;w.removeAttribute('title');}
tip.textContent=w.dataset.tip||'';tip.hidden=!tip.textContent;});
document.addEventListener('mousemove',function(e){if(tip.hidden)return;
var x=Math.min(e.clientX+14,window.innerWidth-tip.offsetWidth-8);
var y=e.clientY+18;if(y+tip.offsetHeight>window.innerHeight)y=e.clientY-tip.offsetHeight-10;
tip.style.left=x+'px';tip.style.top=y+'px';});})();
"""
