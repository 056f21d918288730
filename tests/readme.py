"""Code blocks of README.md that tests run, so the copy-paste examples stay true."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_block(marker: str) -> str:
    """The fenced code block right after `<!-- marker -->` in README.md."""
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    assert found, f"README.md has no code block after <!-- {marker} -->"
    return found.group(1)


TESTED = re.compile(r"<!-- tested: prints (.+?) -->\s*```(\w+)\n(.*?)```", re.S)


def runnable_examples() -> list[tuple[str, str, str]]:
    """(language, code, text its output must contain) of each fenced block after `<!-- tested: prints TEXT -->`;
    tests/test_openai_sdk.py runs them against a real server."""
    return [(language, code, expected) for expected, language, code in TESTED.findall(README.read_text())]
