"""Regenerate the README's option table from the Config fields (the only source of options).

    .venv/bin/python scripts/readme_options.py          # rewrite README.md in place
    .venv/bin/python scripts/readme_options.py --check  # exit 1 if README.md is out of date
"""

import sys
from pathlib import Path

from ringserve.cli import options_table

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- options-table -->", "<!-- /options-table -->"


def render(text: str) -> str:
    head, sep, rest = text.partition(BEGIN)
    if not sep:
        raise SystemExit(f"README.md has no {BEGIN} marker")
    _, sep2, tail = rest.partition(END)
    if not sep2:
        tail = rest.split("\n## ", 1)
        tail = "\n## " + tail[1] if len(tail) == 2 else ""
    return f"{head}{BEGIN}\n{options_table()}\n{END}\n{tail.lstrip(chr(10)) and chr(10) + tail.lstrip(chr(10))}"


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        return 0 if new == text else 1
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
