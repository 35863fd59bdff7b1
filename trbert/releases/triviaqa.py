"""TriviaQA reading comprehension (``triviaqa-rc.tar.gz`` or its folder) -> the TriviaQA script's JSON.

Reads ``qa/<setting>-train.json`` and ``qa/<setting>-dev.json`` and the evidence documents they
name (``evidence/wikipedia/<Filename>`` for ``EntityPages``, ``evidence/web/<Filename>`` for
``SearchResults``), and writes ``train.json`` and ``dev.json``: a JSON list of ``{"context",
"qas": [{"question", "qid", "answers": {"Aliases", "NormalizedAliases", "Value"},
"detected_answers": [{"text", "char_spans": [[start, end]]}]}]}`` (end inclusive) for
``run_triviaqa.py``. A question whose evidence file is absent is refused, naming the file.

- Entries. ``--setting wikipedia``: one entry per question, its Wikipedia pages pooled (qid =
  ``QuestionId``, as the release's evaluation keys the Wikipedia domain). ``--setting web``: one
  entry per (question, document) pair over the question's Wikipedia pages and web results, qid =
  ``QuestionId--Filename``, as the release's evaluation keys the web domain; every pair is kept,
  answered in its document or not.
- Context. Documents are split into paragraphs at line breaks (a line longer than
  :data:`PARAGRAPH_WORDS` words is cut into pieces of that size), ranked by TF-IDF cosine
  similarity to the question (fitted on the entry's own paragraphs, English stop words removed),
  and concatenated best first, one per line, up to ``--max_context_words`` whitespace words (the
  last paragraph cut to fit). Words, not characters: the model reads word pieces, and the default
  800 words fill about one 1024-piece window (``--max_segment 1``, the original's default).
- Answers. Every alias in ``Aliases`` and ``NormalizedAliases`` is searched in the context,
  case-insensitively, on word boundaries (no letter or digit on either side), its words separated
  by any whitespace; every match is a character span, longer aliases first where matches overlap.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from ..errors import InputError
from .common import Release, rank_paragraphs, read_json, read_text, write_json_list

QA = re.compile(r"(?:^|/)(qa/(?:wikipedia|web)-(?:train|dev)\.json)$")
EVIDENCE = re.compile(r"(?:^|/)(evidence/(?:wikipedia|web)/.+)$")
PARAGRAPH_WORDS = 300
MAX_WORDS = 800


def add_arguments(parser) -> None:
    parser.add_argument("--setting", choices=("wikipedia", "web"), default="wikipedia", help="evidence domain")
    parser.add_argument(
        "--max_context_words", type=int, default=MAX_WORDS, help="whitespace words of ranked paragraphs per context"
    )


def _questions(data, where: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
        raise InputError(f'{where}: expected {{"Data": [questions]}} (a TriviaQA qa file)')
    for k, datum in enumerate(data["Data"]):
        ok = isinstance(datum, dict) and isinstance(datum.get("Question"), str) and "QuestionId" in datum
        if not ok or not isinstance((datum.get("Answer") or {}).get("Aliases"), list):
            raise InputError(f'{where}: question {k} lacks "QuestionId", "Question" or "Answer": {{"Aliases"}}')
    return data["Data"]


def _documents(datum: dict, setting: str, where: str) -> list[str]:
    """Evidence keys of a question's documents (Wikipedia pages, then web results in the web setting)."""
    sources = [("wikipedia", "EntityPages")] + ([("web", "SearchResults")] if setting == "web" else [])
    keys = []
    for domain, field in sources:
        for page in datum.get(field) or []:
            if not isinstance(page, dict) or not isinstance(page.get("Filename"), str):
                raise InputError(f"{where}: question {datum['QuestionId']}: a {field} entry without a Filename")
            keys.append(f"evidence/{domain}/{page['Filename']}")
    return list(dict.fromkeys(keys))  # a page listed twice is read once


def split_paragraphs(text: str) -> list[str]:
    """Non-empty lines, each cut into pieces of at most :data:`PARAGRAPH_WORDS` words."""
    paragraphs = []
    for line in text.splitlines():
        words = line.split()
        paragraphs += [" ".join(words[i : i + PARAGRAPH_WORDS]) for i in range(0, len(words), PARAGRAPH_WORDS)]
    return paragraphs


def build_context(question: str, paragraphs: list[str], max_words: int) -> str:
    """The best-ranked paragraphs, one per line, up to ``max_words`` words."""
    chosen, room = [], max_words
    for i in rank_paragraphs(question, paragraphs):
        if room <= 0:
            break
        words = paragraphs[i].split()[:room]
        chosen.append(" ".join(words))
        room -= len(words)
    return "\n".join(chosen)


def answer_spans(context: str, aliases: list[str]) -> list[dict]:
    """``detected_answers``: the character spans ``[start, end]`` (end inclusive) of every alias
    match, grouped by the matched text (lower-cased)."""
    terms = sorted({" ".join(a.split()) for a in aliases if isinstance(a, str) and a.strip()}, key=len, reverse=True)
    if not terms or not context:
        return []
    alternatives = "|".join(r"\s+".join(map(re.escape, t.split())) for t in terms)
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    found: dict[str, dict] = {}
    for match in pattern.finditer(context):
        entry = found.setdefault(match.group(0).lower(), {"text": match.group(0), "char_spans": []})
        entry["char_spans"].append([match.start(), match.end() - 1])
    return list(found.values())


def _entries(datum: dict, keys: list[str], setting: str, max_words: int, paragraphs_of):
    """The output entries of one question: one (Wikipedia setting) or one per document (web)."""
    answer = datum["Answer"]
    aliases = list(answer.get("Aliases", [])) + list(answer.get("NormalizedAliases") or [])
    for documents in [[key] for key in keys] if setting == "web" else [keys]:
        paragraphs = [p for key in documents for p in paragraphs_of(key)]
        context = build_context(datum["Question"], paragraphs, max_words)
        qid = str(datum["QuestionId"])
        if setting == "web":  # the release's evaluation key of a (question, document) pair
            qid = f"{qid}--{documents[0].split('/', 2)[2]}"
        question = {
            "question": datum["Question"],
            "qid": qid,
            "answers": {k: answer[k] for k in ("Aliases", "NormalizedAliases", "Value") if k in answer},
            "detected_answers": answer_spans(context, aliases),
        }
        yield {"context": context, "qas": [question]}


def convert(release: Release, out: Path, setting: str = "wikipedia", max_context_words: int = MAX_WORDS) -> dict:
    if max_context_words < 1:
        raise InputError(f"--max_context_words {max_context_words} must be positive")
    names = {split: f"qa/{setting}-{split}.json" for split in ("train", "dev")}
    qa = release.find(QA, names=set(names.values()))
    questions = {}
    for split, name in names.items():
        if name not in qa:
            raise InputError(f"{release.source}: {name} not found (is this the triviaqa-rc release?)")
        questions[split] = _questions(read_json(qa[name], release.where(qa[name])), release.where(qa[name]))
    documents = {
        split: [_documents(d, setting, release.where(qa[names[split]])) for d in data]
        for split, data in questions.items()
    }
    needed = {key for per_split in documents.values() for keys in per_split for key in keys}
    evidence = release.find(EVIDENCE, names=needed)
    for split, per_split in documents.items():
        for datum, keys in zip(questions[split], per_split, strict=True):
            for key in keys:
                if key not in evidence:
                    where = release.where(qa[names[split]])
                    raise InputError(
                        f"{release.source}: {key} is absent (evidence of question {datum['QuestionId']} in {where})"
                    )

    @functools.lru_cache(maxsize=4096)
    def paragraphs_of(key: str) -> list[str]:
        return split_paragraphs(read_text(evidence[key], release.where(evidence[key])))

    counts = {}
    for split, data in questions.items():
        entries = (
            entry
            for datum, keys in zip(data, documents[split], strict=True)
            for entry in _entries(datum, keys, setting, max_context_words, paragraphs_of)
        )
        counts[f"{split}.json"] = _write_counted(out / f"{split}.json", entries, len(data))
    return counts


def _write_counted(path: Path, entries, questions: int) -> dict:
    tally = {"questions": questions, "entries": 0, "with_answer_span": 0, "empty_context": 0}
    seen = set()

    def counted():
        for entry in entries:
            qid = entry["qas"][0]["qid"]
            if qid in seen:
                raise InputError(f"{path.name}: question id {qid} occurs twice in the release's split")
            seen.add(qid)
            tally["entries"] += 1
            tally["with_answer_span"] += bool(entry["qas"][0]["detected_answers"])
            tally["empty_context"] += not entry["context"]
            yield entry

    write_json_list(path, counted())
    return tally
