"""Every relative link in README.md and docs/*.md resolves: the file exists and, for `#anchor`, a heading of
the target makes that anchor (GitHub's slugs). Links inside code are not links and are skipped."""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str):
    """The lines outside fenced code blocks, with inline code spans removed."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        yield _CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def links(path: Path):
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            yield target


def test_slugs_are_githubs():
    assert slug("Quickstart") == "quickstart"
    assert slug("8. Extensions of this server **(ext)**") == "8-extensions-of-this-server-ext"
    assert slug("`/v1/realtime`: the OpenAI Realtime protocol") == "v1realtime-the-openai-realtime-protocol"
    assert slug("Sessions: hosts and capacity") == "sessions-hosts-and-capacity"
    assert slug("XTTS-v2 voices (coqui-tts)") == "xtts-v2-voices-coqui-tts"


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading of {dest.name} makes #{anchor}")
    return broken


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "b.md").write_text("# B page\n\n## Some `code`: here\n```\n## not a heading\n```\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#some-code-here) [ok](#top) ![ok](b.md) [web](https://x.org/none.md)\n"
        "# Top\n[gone](c.md) [bad anchor](b.md#not-a-heading) `[in code](d.md)`\n"
        "```\n[in a block](e.md)\n```\n"
    )
    assert broken_links(page) == [
        "c.md: no such file", "b.md#not-a-heading: no heading of b.md makes #not-a-heading"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
