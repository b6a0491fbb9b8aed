"""Model cards: a version's README.md as safe HTML.

markdown-it-py (CommonMark) with raw HTML switched off, so every ``<tag>`` in the text is
shown escaped, never interpreted; HTML comments (the Hugging Face card template is full of
them) are dropped before parsing; headings move down two levels to sit under the page's
own. Links may only be http(s), mailto or relative; images are
not loaded at all (an adapter's card must not make a reader's browser fetch from elsewhere:
they show as links). The YAML front matter of a Hub card is returned apart, as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup, escape

#: A card larger than this is not rendered (the page links the file instead).
MAX_CARD_BYTES = 256 * 1024
CARD_NAMES = ("README.md", "readme.md", "README.MD", "Readme.md")
#: The card sits under the page's own h1 and a "Model card" h2: its "# Title" becomes h3.
HEADING_SHIFT = 2

_COMMENT = re.compile(r"<!--.*?(-->|\Z)", re.DOTALL)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)
_SAFE_SCHEMES = {"http", "https", "mailto"}


def safe_link(url: str) -> bool:
    """http(s), mailto, or relative (``#x``, ``/x``, ``x``): never script or data URLs."""
    text = url.strip()
    if any(ord(c) < 32 for c in text):
        return False
    scheme = urlsplit(text).scheme.lower()
    return scheme in _SAFE_SCHEMES or (scheme == "" and not text.lower().startswith("//"))


def _image_as_link(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = "".join(c.content for c in token.children or []) or "image"
    if not safe_link(src):
        return f"[{escape(alt)}]"
    return f'<a href="{escape(src)}" rel="nofollow noopener noreferrer">[image: {escape(alt)}]</a>'


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = safe_link  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
        return str(renderer.renderToken(tokens, idx, options, env))

    def heading(renderer: Any, tokens: list[Token], idx: int, options: Any, env: Any) -> str:
        level = min(6, int(tokens[idx].tag[1]) + HEADING_SHIFT)
        tokens[idx].tag = f"h{level}"
        return str(renderer.renderToken(tokens, idx, options, env))

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("heading_open", heading)
    md.add_render_rule("heading_close", heading)
    md.add_render_rule("image", _image_as_link)
    return md


_MD = _parser()


@dataclass(frozen=True)
class Card:
    html: Markup
    metadata: str  # the YAML front matter as it was written ("" when none)


def render_card(text: str) -> Card:
    """Markdown -> sanitised HTML (see the module docstring for what is allowed)."""
    metadata = ""
    match = _FRONT_MATTER.match(text)
    if match:
        metadata = match.group(1).strip()
        text = text[match.end() :]
    text = _COMMENT.sub("", text)
    return Card(Markup(_MD.render(text)), metadata)


def card_file(paths: list[str]) -> str | None:
    """The model card among a version's file paths: a README.md at the top level."""
    for name in CARD_NAMES:
        if name in paths:
            return name
    return None
