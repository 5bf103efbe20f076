"""The conditions of a task's `when`: CEL expressions (the language of Kubernetes' validation rules),
evaluated by the `cel` package (common-expression-language: the Rust cel-interpreter, which the
tests also use to evaluate the CRDs' own rules). Pure.

A `$(...)` reference in a condition stands for a CEL string holding its value: each one is
replaced by a variable before the expression is compiled, and the variable is bound to the value
when it is evaluated. No value is ever pasted into the expression's text, so whatever a result
holds (quotes, `||`, a newline) it can only be compared, never change what the condition says.
The users' contract: docs/semantics.md, "Conditions: when".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import cel

from flowrun.references import Context, Reference, ReferenceSyntaxError, UnresolvedReference, scan

# CEL identifiers no author writes: one per distinct reference of a condition.
_VARIABLE = "__flowrun_ref{}__"
_POSITION = re.compile(r"^.*?ERROR: <input>:\d+:\d+: ", re.DOTALL)
# The variables CEL's macros bind (`list.exists(x, x > 1)`): the only names a condition may use.
_BOUND = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
ERROR_LIMIT = 300  # characters of the library's message quoted


class ConditionError(ValueError):
    """A condition that is not valid CEL (at validation), or that cannot be evaluated to true or
    false (when the task is ready)."""


@dataclass(frozen=True)
class Condition:
    text: str  # as written
    expression: str  # each reference replaced by its variable
    references: tuple[Reference, ...]  # references[i] is variable i

    def variable(self, i: int) -> str:
        return _VARIABLE.format(i)


def _message(error: Exception, condition: Condition) -> str:
    """The library's message, without its position in the rewritten text, each variable named as
    the reference it stands for, on one line, cut."""
    text = _POSITION.sub("", str(error)).split("\n")[0].strip()
    for i, ref in enumerate(condition.references):
        text = text.replace(condition.variable(i), ref.text)
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 3] + "..."


def parse(text: str) -> Condition:
    """`text` with its references replaced by variables; raises ReferenceSyntaxError on a malformed
    reference (checked, with the CEL, by `check`)."""
    pieces: list[str] = []
    refs: list[Reference] = []
    pos = 0
    for start, end, ref in scan(text):
        if ref not in refs:
            refs.append(ref)
        pieces += [text[pos:start], _VARIABLE.format(refs.index(ref))]
        pos = end
    pieces.append(text[pos:])
    return Condition(text, "".join(pieces), tuple(refs))


@functools.lru_cache(maxsize=4096)
def problem(text: str) -> str | None:
    """Why `text` is not a condition (its references are checked by the model): not valid CEL, or a
    reference inside a string literal (it would be compared as the literal text `$(...)`); None if
    it is one. Cached: the spec is parsed on every pass."""
    try:
        condition = parse(text)
    except ReferenceSyntaxError as err:
        return str(err)
    try:
        program = cel.compile(condition.expression)
    except Exception as err:  # the library raises ValueError, and may raise others for odd input
        return f"not a valid CEL expression: {_message(err, condition)}"
    used = set(program.variables())
    ours = {condition.variable(i) for i in range(len(condition.references))}
    for i, ref in enumerate(condition.references):
        if condition.variable(i) not in used:
            return f"{ref.text} is inside a string literal: write it without quotes (it stands for a CEL string)"
    unknown = sorted(used - ours - set(_BOUND.findall(condition.expression)))
    if unknown:
        return f"unknown name {unknown[0]!r}: a condition reads values through $(...) references only"
    return None


def evaluate(text: str, values: Context) -> bool:
    """Whether the condition `text` (one `problem` accepts) holds with the references' `values`;
    raises ConditionError if it cannot be evaluated or is not true or false."""
    condition = parse(text)
    try:
        bound = {condition.variable(i): values.resolve(ref) for i, ref in enumerate(condition.references)}
    except UnresolvedReference as err:
        raise ConditionError(f"{err.args[0]} has no value") from None
    try:
        result = cel.evaluate(condition.expression, bound)
    except Exception as err:  # RuntimeError, TypeError, ValueError: the expression's own error
        raise ConditionError(_message(err, condition)) from None
    if not isinstance(result, bool):
        raise ConditionError(f"must be true or false, not {type(result).__name__} {result!r}"[:ERROR_LIMIT])
    return result
