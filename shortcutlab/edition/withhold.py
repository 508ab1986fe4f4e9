"""A library module's text with some of its definitions withheld: each becomes a stand-in of the same name
(``shortcutlab.edition.withheld``) and the rest of the text stays as it was, byte for byte."""
from __future__ import annotations

import ast
from collections.abc import Mapping

from shortcutlab.edition.answer_code import AnswerDefinition, ParsedModule, first_line

_IMPORT = "from shortcutlab.edition.withheld import WithheldClass as _WithheldClass, withheld as _withheld\n"


def _stand_in(node: ast.AST, answer: AnswerDefinition, indent: str) -> list[str]:
    identity = f"{answer.name!r}, {answer.lesson!r}, {answer.function!r}"
    if isinstance(node, ast.ClassDef):
        return [f"{indent}class {node.name}(_WithheldClass):\n",
                f"{indent}    _withheld = ({identity})\n"]
    return [f"{indent}{node.name} = _withheld({identity})\n"]


def _insertion_line(tree: ast.Module, end: int) -> int:
    """0-based line before the module's first statement that is neither its docstring nor a __future__ import."""
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        return first_line(node) - 1
    return end


def withhold(parsed: ParsedModule, answers: Mapping[str, AnswerDefinition]) -> str:
    """``parsed``'s text with each definition named in ``answers`` (qualname -> its answer) replaced by a
    stand-in; the text unchanged when ``answers`` is empty."""
    if not answers:
        return parsed.text
    lines = parsed.text.splitlines(keepends=True)
    spans = []
    for qualname, answer in answers.items():
        if any(qualname.startswith(outer + ".") for outer in answers):
            continue  # inside a definition withheld whole
        node = parsed.definition(qualname)
        if node is None:
            raise ValueError(f"{parsed.name} has no definition {qualname!r} to withhold")
        first = first_line(node)
        indent = " " * node.col_offset
        spans.append((first - 1, node.end_lineno, _stand_in(node, answer, indent)))
    for start, end, replacement in sorted(spans, reverse=True):
        lines[start:end] = replacement
    tree = ast.parse(parsed.text)
    at = _insertion_line(tree, len(lines))
    lines.insert(at, _IMPORT)
    return "".join(lines)
