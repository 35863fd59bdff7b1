"""The repository stands on its own: every difference id the code cites is defined in
docs/differences.md, and nothing points to documents outside the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*ROOT.glob("trbert/**/*.py"), *ROOT.glob("*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py")]


def _defined() -> set[str]:
    return set(re.findall(r"^\| ([KFN]\d+) \|", (ROOT / "docs" / "differences.md").read_text(), re.M))


def test_every_cited_difference_is_defined():
    defined = _defined()
    assert len(defined) >= 40
    cited = {(path.name, i) for path in SOURCES for i in re.findall(r"differences\.md,? ([KFN]\d+)", path.read_text())}
    assert cited, "the code cites differences by id"
    missing = sorted((name, i) for name, i in cited if i not in defined)
    assert not missing, missing


def test_no_reference_to_documents_outside_the_repository():
    pattern = re.compile(r"spec §|SPEC-trbert|§\d|\(D\d{1,2}\b|\bD\d{1,2} fixed")
    texts = [*SOURCES, ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("runs/*.sh")]
    offending = [str(p.relative_to(ROOT)) for p in texts if p.name != "test_docs.py" and pattern.search(p.read_text())]
    assert not offending, offending
