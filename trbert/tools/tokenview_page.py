"""The fixed parts of the token view page: colours per depth, the style sheet and the tooltip script.

What this file is: constants and one colour function used by ``trbert.tokenview.render``. It holds no
data and does no I/O. The page must stay self-contained: nothing here may name a URL, a web font or
any other outside resource.

Colours follow one light-to-dark blue scale (a single hue changes only in lightness, which every
kind of colour blindness still sees): a word dropped at the first selector has no background, grey
text and a strike-through; a word dropped at a later selector a light blue one, darker the further
it went; a word that reached the last layer dark blue with white text. Answer spans use two hues
outside that scale, magenta (gold, a bar below) and amber (predicted, a bar above), so they differ
in position as well as in colour.
"""

from __future__ import annotations

DROPPED_TEXT = "#7d838c"
LAST_BACKGROUND = "#1d5fa6"
# Backgrounds of the intermediate depths 1 .. S-1 run from the first colour to the second.
MIDDLE_RANGE = ("#d3e4f5", "#82b3de")


def _mix(a: str, b: str, t: float) -> str:
    """The colour a fraction ``t`` of the way from hex colour ``a`` to hex colour ``b``."""
    ca = [int(a[i : i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def depth_colours(n_selectors: int) -> list[tuple[str, str]]:
    """``(background, text colour)`` for every depth ``0 .. n_selectors``; ``transparent`` for depth 0."""
    colours = [("transparent", DROPPED_TEXT)]
    middle = n_selectors - 1
    for k in range(1, n_selectors):
        t = (k - 1) / (middle - 1) if middle > 1 else 0.0
        colours.append((_mix(*MIDDLE_RANGE, t), "#10243a"))
    colours.append((LAST_BACKGROUND, "#ffffff"))
    return colours


def depth_css(n_selectors: int) -> str:
    """One rule ``.dK`` per depth K; depth 0 is also struck through and faded."""
    rules = []
    for k, (background, text) in enumerate(depth_colours(n_selectors)):
        extra = "text-decoration:line-through;text-decoration-color:#a9aeb5;" if k == 0 else ""
        rules.append(f".d{k}{{background:{background};color:{text};{extra}}}")
    return "\n".join(rules)


STYLE = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#e3e7ec;--card:#ffffff;--page:#f4f6f9;
--gold:#c2185b;--pred:#f2a900;--ok:#1a7f4b;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;background:var(--page);color:var(--ink);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:0 0 10px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em}
.sub{color:var(--muted);margin:0 0 18px}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin:0 0 16px}
.stats{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 14px}
.stat{flex:1 1 150px;border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.stat b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.stat .lab{color:var(--muted);font-size:13px}
.bar{display:block;height:6px;background:#e8edf3;border-radius:3px;margin-top:6px;overflow:hidden}
.bar i{display:block;height:100%;background:var(--blue,#1d5fa6);border-radius:3px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:720px){.cols{grid-template-columns:1fr}}
.chips{display:flex;flex-wrap:wrap;gap:6px}
.chip{border:1px solid var(--line);border-radius:14px;padding:1px 9px;font-size:13px;white-space:nowrap}
.chip small{color:var(--muted);font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:8px 18px;align-items:center;font-size:13px;color:var(--muted)}
.legend .w{margin-right:4px}
.example{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 18px;margin:0 0 14px}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 16px;margin-bottom:8px}
.head .num{font-weight:700}
.badge{font-size:12px;font-weight:700;border-radius:10px;padding:1px 8px;color:#fff}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.label{color:var(--muted);font-size:13px}
.answer{font-weight:600}
.meta{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13px;color:var(--muted);margin-bottom:10px;
font-variant-numeric:tabular-nums}
.meta .bar{display:inline-block;width:70px;height:6px;margin:0 0 1px 6px;vertical-align:middle}
.question{background:#f6f8fb;border-left:3px solid #9aa5b1;border-radius:4px;padding:6px 10px;margin:0 0 10px}
.text{line-height:2.05;overflow-wrap:anywhere}
.w{padding:1px 3px;border-radius:3px;-webkit-box-decoration-break:clone;box-decoration-break:clone;cursor:default}
.w.sp{font:11px/1 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;outline:1px dashed #7b8794;outline-offset:-1px;
padding:2px 4px;vertical-align:1px}
.w.gold{box-shadow:inset 0 -3px 0 var(--gold)}
.w.pred{box-shadow:inset 0 3px 0 var(--pred)}
.w.gold.pred{box-shadow:inset 0 -3px 0 var(--gold),inset 0 3px 0 var(--pred)}
.w:hover{outline:2px solid #f2a900;outline-offset:0}
.seg{display:block;height:2px}
#tip{position:fixed;z-index:10;pointer-events:none;background:#1f2933;color:#fff;font-size:12px;line-height:1.45;
padding:6px 9px;border-radius:6px;white-space:pre;box-shadow:0 4px 14px rgba(0,0,0,.25)}
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
