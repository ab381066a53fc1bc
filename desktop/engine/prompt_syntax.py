"""AUTOMATIC1111's prompt syntax, parsed as A1111 parses it (modules/prompt_parser.py), without torch.

- Attention: `(text)` ×1.1, `[text]` ÷1.1, `(text:1.5)`, nesting, escapes `\\( \\) \\[ \\]`;
  unbalanced brackets apply to the end of the prompt, as in A1111.
- `BREAK` ends a chunk of the text encoder's window early.
- Prompt editing `[from:to:when]`, `[to:when]`, `[from::when]` (when: a step, or a fraction of the
  steps below 1) and alternation `[a|b]`, resolved per step into a schedule of plain prompts.
- Extra-network tags (`<lora:name:1>`, `<hypernet:…>`) are taken out before anything is encoded.

compel was considered: it has its own syntax (`word++`, `.and()`, `.blend()`), not A1111's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = "BREAK"

_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Text pieces and their weights; a BREAK is ("BREAK", -1). Runs of one weight are merged."""
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in res[start:]:
            piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), ROUND)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i > 0:
                    res.append([BREAK, -1])
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, ROUND)
    for start in square_open:
        multiply(start, SQUARE)
    if not res:
        res = [["", 1.0]]
    merged: list[list] = [res[0]]
    for piece in res[1:]:
        if piece[1] == merged[-1][1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [(text_, weight_) for text_, weight_ in merged]


def strip_extra_networks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The prompt without `<kind:args>` tags, and the tags as (kind, args)."""
    tags = [(m.group(1), m.group(2)) for m in _EXTRA_NETWORK.finditer(text)]
    return _EXTRA_NETWORK.sub("", text), tags


def unbalanced_brackets(text: str) -> list[int]:
    """Positions of brackets with no partner (escaped ones do not count), for the editor to mark."""
    stack: list[tuple[str, int]] = []
    lonely: list[int] = []
    pairs = {")": "(", "]": "["}
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char in "([":
            stack.append((char, index))
        elif char in ")]":
            if stack and stack[-1][0] == pairs[char]:
                stack.pop()
            else:
                lonely.append(index)
        index += 1
    return sorted(lonely + [i for _, i in stack])


# --- prompt editing and alternation -------------------------------------------------------------


@dataclass(frozen=True)
class _Scheduled:
    before: list
    after: list
    when: float


@dataclass(frozen=True)
class _Alternate:
    options: list


class _Unparsable(ValueError):
    pass


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """[(last step, prompt), …] covering steps 1..steps: the plain prompt to use up to each step.

    A prompt without editing gives [(steps, prompt)]. As in A1111, a prompt the editing grammar
    cannot read is used as it is for every step.
    """
    try:
        tree = _Parser(prompt).parse()
    except _Unparsable:
        return [(steps, prompt)]
    schedule: list[tuple[int, str]] = []
    for step in range(1, steps + 1):
        text = _resolve(tree, step, steps)
        if schedule and schedule[-1][1] == text:
            schedule[-1] = (step, text)
        else:
            schedule.append((step, text))
    return schedule or [(steps, prompt)]


def _resolve(nodes: list, step: int, steps: int) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            when = node.when * steps if node.when < 1 else node.when
            out.append(_resolve(node.before if step <= min(steps, int(when)) else node.after, step, steps))
        else:
            out.append(_resolve(node.options[(step - 1) % len(node.options)], step, steps))
    return "".join(out)


class _Parser:
    """A recursive-descent reading of A1111's editing grammar. Emphasis brackets stay text (the
    attention parser reads them later); `[a:b:when]` and `[a|b]` become nodes."""

    _NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\]")

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def parse(self) -> list:
        nodes = self._sequence(stop="")
        if self.pos != len(self.text):
            raise _Unparsable(self.pos)
        return nodes

    def _sequence(self, stop: str) -> list:
        """Text and nodes until one of the `stop` characters (not consumed) at this nesting level."""
        nodes: list = []
        plain: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                plain.append(self.text[self.pos : self.pos + 2])
                self.pos += 2
            elif char in stop:
                break
            elif char == "[":
                node = self._bracket()
                if isinstance(node, str):
                    plain.append(node)
                else:
                    nodes.append("".join(plain))
                    plain = []
                    nodes.append(node)
            elif char == "(":
                plain.append(self._round())
            elif char in ")]":
                raise _Unparsable(self.pos)
            else:
                plain.append(char)
                self.pos += 1
        nodes.append("".join(plain))
        return [n for n in nodes if n != ""]

    def _round(self) -> str:
        """`( … )` and `( … : weight)`: kept as text, with any editing inside resolved later."""
        start = self.pos
        self.pos += 1
        inner = self._sequence(stop=")")
        if self.pos >= len(self.text):
            raise _Unparsable(start)
        self.pos += 1
        if any(not isinstance(n, str) for n in inner):
            raise _Unparsable(start)  # editing inside emphasis: A1111 handles it; we keep it literal
        return "(" + "".join(inner) + ")"

    def _bracket(self):
        """`[a]` (emphasis, kept as text), `[a:b:when]`, `[to:when]`, `[from::when]` or `[a|b|…]`."""
        start = self.pos
        self.pos += 1
        parts = [self._sequence(stop=":|]")]
        separators = []
        while self.pos < len(self.text) and self.text[self.pos] in ":|":
            separators.append(self.text[self.pos])
            self.pos += 1
            number = self._NUMBER.match(self.text, self.pos) if separators[-1] == ":" else None
            if number and len(parts) <= 2 and "|" not in separators:
                self.pos = number.end()
                before, after = ([], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
                return _Scheduled(before, after, float(number.group(1)))
            parts.append(self._sequence(stop=":|]"))
        if self.pos >= len(self.text) or self.text[self.pos] != "]":
            raise _Unparsable(start)
        self.pos += 1
        if not separators and all(isinstance(n, str) for n in parts[0]):
            return "[" + "".join(parts[0]) + "]"
        if separators and set(separators) == {"|"}:
            return _Alternate(parts)
        raise _Unparsable(start)  # `[a:b]` without a number: A1111 uses the prompt as written


# --- editing weights, as A1111's Ctrl+Up / Ctrl+Down do -------------------------------------------

_WEIGHT_AFTER = re.compile(r":(-?\d+(?:\.\d+)?)\)")
_WORD = re.compile(r"[^\s,()\[\]:|<>]+")


def adjust_weight(text: str, start: int, end: int, delta: float) -> tuple[str, int, int]:
    """Raise or lower the weight of text[start:end] (or of the word at `start` when nothing is
    selected) by `delta`: `word` -> `(word:1.1)` -> `(word:1.2)`; back at 1 the brackets go.
    Returns the new text and the new selection."""
    if start == end:
        start, end = _word_at(text, start)
        if start == end:
            return text, start, end
    weighted = start > 0 and text[start - 1] == "(" and _WEIGHT_AFTER.match(text, end)
    if weighted:
        weight = round(float(weighted.group(1)) + delta, 2)
        inner = text[start:end]
        if weight == 1:
            new = text[: start - 1] + inner + text[weighted.end():]
            return new, start - 1, start - 1 + len(inner)
        new = text[:end] + f":{weight:g})" + text[weighted.end():]
        return new, start, end
    weight = round(1 + delta, 2)
    new = text[:start] + f"({text[start:end]}:{weight:g})" + text[end:]
    return new, start + 1, end + 1


def _word_at(text: str, position: int) -> tuple[int, int]:
    for match in _WORD.finditer(text):
        if match.start() <= position <= match.end():
            return match.start(), match.end()
    return position, position
