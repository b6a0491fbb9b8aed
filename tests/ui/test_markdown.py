"""Model cards as sanitised HTML: Markdown renders, nothing executable or remote passes."""

from __future__ import annotations

import pytest

from loreg.ui.markdown import card_file, render_card, safe_link


def test_markdown_renders() -> None:
    card = render_card(
        "# Title\n\nSome **bold** and `code`.\n\n- a\n- b\n\n"
        "| k | v |\n|---|---|\n| r | 16 |\n\n```\nx = 1\n```\n"
    )
    html = str(card.html)
    assert "<h3>Title</h3>" in html  # under the page's h1 and the card's h2
    assert "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<li>a</li>" in html and "<td>16</td>" in html and "<pre><code>x = 1" in html
    assert card.metadata == ""


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        '<a href="javascript:alert(1)">x</a>',
        "<iframe src=https://evil.example></iframe>",
        "<svg onload=alert(1)>",
        '<div style="background:url(javascript:alert(1))">x</div>',
    ],
)
def test_raw_html_is_text(payload: str) -> None:
    html = str(render_card(f"before {payload} after\n\n{payload}\n").html)
    assert "<" + payload[1:] not in html
    assert "&lt;" in html
    for tag in ("<script", "<img", "<iframe", "<svg", "<div", "<a "):
        assert tag not in html


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "vbscript:x",
        "data:text/html,x",
        "file:///etc/passwd",
        "//evil.example/x",
        "java\tscript:x",
    ],
)
def test_dangerous_links_are_not_links(url: str) -> None:
    assert not safe_link(url)
    html = str(render_card(f"[click]({url}) and ![img]({url})").html)
    assert "<a " not in html and "<img" not in html


def test_links_images_and_comments() -> None:
    for url in (
        "https://example.com/x",
        "http://example.com",
        "mailto:a@b.c",
        "#section",
        "docs/usage.md",
        "/ui/bases",
    ):
        assert safe_link(url), url
    html = str(
        render_card(
            "[run](https://ci.example.com/1) ![chart](https://x.example/c.png)"
            "\n\n<!-- hidden\nnote -->\nvisible"
        ).html
    )
    assert '<a href="https://ci.example.com/1" rel="nofollow noopener noreferrer">run</a>' in html
    # images are never loaded by the reader's browser: a link to them instead
    assert "<img" not in html and "[image: chart]" in html
    assert "hidden" not in html and "visible" in html


def test_front_matter_is_apart() -> None:
    card = render_card("---\nlicense: mit\ntags:\n- lora\n---\n# Card\n")
    assert card.metadata == "license: mit\ntags:\n- lora"
    assert "license" not in str(card.html) and "<h3>Card</h3>" in str(card.html)
    # an unterminated comment hides the rest rather than leaking markup
    assert "secret" not in str(render_card("text <!-- secret").html)


def test_card_file() -> None:
    assert card_file(["adapter_config.json", "README.md"]) == "README.md"
    assert card_file(["docs/README.md", "adapter_model.safetensors"]) is None
