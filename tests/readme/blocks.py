"""The README's examples as data: its fenced ``sh`` and ``python`` blocks, each cut into the steps that run
one after another, with the output each step documents.

Conventions the README follows (and ``test_readme.py`` holds it to):

- A block that cannot run in a test says so on the line before its fence: ``<!-- not run: REASON -->``.
- A step documents its output in its trailing comment: ``prints "TEXT"`` or ``-> "TEXT"``. Some line of the
  step's output must contain TEXT, where ``...`` stands for any text and a run of spaces for any run of
  spaces (tables align their columns to the data).
- A step that prints "no ... match" matched nothing: an example that shows nothing is a broken example, unless
  its comment documents that very output.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")
EXPECTED = re.compile(r"""(?:\bprints\b|->)[^"]*"(?P<text>[^"]+)\"""")
NOTHING_MATCHED = re.compile(r"^no .* match(es)?$", re.MULTILINE)
LANGUAGES = ("sh", "python")


@dataclass(frozen=True)
class Step:
    """One command of a shell block, or one statement of a Python block (statements sharing a line together)."""

    code: str
    line: int  # its first line in the README
    expected: tuple[str, ...] = ()

    def check(self, output: str) -> list[str]:
        """What is wrong with ``output`` for this step: each documented text it lacks, or that it matched nothing."""
        problems = [f"its output lacks the documented {text!r}" for text in self.expected if not matches(text, output)]
        if not self.expected and NOTHING_MATCHED.search(output):
            problems.append("it matched nothing (an example should show something)")
        return problems


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # the line of its opening fence
    not_run: str | None = None
    steps: tuple[Step, ...] = field(default=())


def matches(expected: str, output: str) -> bool:
    """Whether some line of ``output`` contains ``expected`` (``...``: any text; spaces: any run of spaces)."""
    parts = []
    for piece in re.split(r"(\.\.\.|\s+)", expected.strip()):
        if piece == "...":
            parts.append(".*?")
        elif piece.isspace():
            parts.append(r"\s+")
        elif piece:
            parts.append(re.escape(piece))
    pattern = re.compile("".join(parts))
    return any(pattern.search(line) for line in output.splitlines())


def shell_comment(line: str) -> str:
    """The comment that ends a shell line (a ``#`` outside quotes, at the start or after a space), or ''."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[i + 1 :]
    return ""


def shell_steps(code: str, first_line: int) -> tuple[Step, ...]:
    """Each command of a shell block (lines ending in ``\\`` joined), skipping blank and comment lines."""
    steps: list[Step] = []
    pending: list[str] = []
    start = first_line
    for offset, raw in enumerate(code.splitlines()):
        if not pending:
            start = first_line + offset
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
        pending.append(raw)
        if raw.rstrip().endswith("\\"):
            continue
        command = "\n".join(pending)
        expected = tuple(m["text"] for line in pending for m in EXPECTED.finditer(shell_comment(line)))
        steps.append(Step(command, start, expected))
        pending = []
    if pending:
        raise ValueError(f"README.md line {start}: a shell command ends in a line continuation")
    return tuple(steps)


def python_steps(code: str, first_line: int) -> tuple[Step, ...]:
    """Each top-level statement of a Python block with the comments before it; statements that share a line
    (``a(); b()``) are one step, as they are one line of the example."""
    tree = ast.parse(code)
    lines = code.splitlines()
    comments: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            comments.setdefault(token.start[0], []).append(token.string)
    spans: list[list[int]] = []
    for node in tree.body:
        begin = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        end = node.end_lineno or node.lineno
        if spans and begin <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([begin, end])
    steps: list[Step] = []
    previous_end = 0
    for begin, end in spans:
        text = "\n".join(lines[previous_end:end])
        expected = tuple(
            m["text"] for n in range(begin, end + 1) for c in comments.get(n, []) for m in EXPECTED.finditer(c)
        )
        steps.append(Step(text, first_line + begin - 1, expected))
        previous_end = end
    return tuple(steps)


def blocks(path: Path) -> list[Block]:
    """The fenced ``sh`` and ``python`` blocks of a Markdown file, in order, with their steps (none for a block
    marked not run)."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        language, start = opening.group(1), i
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        if language in LANGUAGES:
            code = "\n".join(lines[start + 1 : i])
            before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marker = NOT_RUN.match(before.strip())
            reason = marker["reason"] if marker else None
            steps: tuple[Step, ...] = ()
            if reason is None:
                steps = shell_steps(code, start + 2) if language == "sh" else python_steps(code, start + 2)
            found.append(Block(language, code, start + 1, reason, steps))
        i += 1
    return found
