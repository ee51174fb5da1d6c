"""HTML to readable markdown or plain text for ``web_fetch``.

markdownify (MIT, on BeautifulSoup) turns the page's main content into
markdown; plain text comes from BeautifulSoup's text extraction. The "main
content" heuristic is deliberately simple: ``<article>`` or ``<main>`` when
the page has one, else ``<body>``, with scripts, styles, navigation, forms and
embedded frames removed. html2text was not chosen because it is GPL-licensed.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from markdownify import MarkdownConverter

_NOISE = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "iframe",
    "object",
    "embed",
    "form",
    "nav",
    "header",
    "footer",
    "aside",
    "button",
    "input",
    "select",
)
_BLANKS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t]+\n")


def extract(html: str, mode: str) -> tuple[str, str | None]:
    """(content, title) of ``html`` as ``markdown`` or ``text``."""
    soup = BeautifulSoup(html, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else None
    for tag in soup.find_all(_NOISE):
        tag.decompose()
    root = soup.find("article") or soup.find("main") or soup.find("body") or soup
    if mode == "text":
        text = root.get_text("\n", strip=True)
    else:
        text = MarkdownConverter(heading_style="ATX", strip=["img"]).convert_soup(root)
    text = _SPACES.sub("\n", text)
    return _BLANKS.sub("\n\n", text).strip(), (title or None)
