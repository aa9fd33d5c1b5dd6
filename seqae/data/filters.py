"""Row filters such as ``label == 1``: which rows a job uses. Filtered rows are counted, never rejected."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqae.errors import ConfigError, ContractError

_OPS = {
    ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
    ast.Gt: pc.greater, ast.GtE: pc.greater_equal,
}
_SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: object


class RowFilter:
    """A conjunction of ``column OP literal`` conditions (``==, !=, <, <=, >, >=, in, not in``).

    Example: ``RowFilter.parse("label == 1 and split != 'test'")``. Rows where a compared value is
    null do not pass.
    """

    def __init__(self, text: str, conditions: list[Condition]):
        self.text = text
        self.conditions = conditions

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.column for c in self.conditions))

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        try:
            tree = ast.parse(text, mode="eval").body
        except SyntaxError as exc:
            raise ConfigError(f"filter {text!r}: not a valid expression ({exc.msg})") from exc
        parts = tree.values if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And) else [tree]
        conditions = [cls._condition(text, part) for part in parts]
        return cls(text, conditions)

    @staticmethod
    def _condition(text: str, node: ast.AST) -> Condition:
        expected = "expected conditions like \"label == 1\" or \"label in (1, 2)\" joined by 'and'"
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Name)):
            raise ConfigError(f"filter {text!r}: {expected}")
        op = node.ops[0]
        try:
            value = ast.literal_eval(node.comparators[0])
        except ValueError as exc:
            raise ConfigError(f"filter {text!r}: {expected}; the right side must be a literal") from exc
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(value, (tuple, list, set)):
                raise ConfigError(f"filter {text!r}: 'in' needs a tuple or list of values")
            return Condition(node.left.id, "in" if isinstance(op, ast.In) else "not in", list(value))
        if type(op) not in _OPS:
            raise ConfigError(f"filter {text!r}: {expected}")
        return Condition(node.left.id, _SYMBOLS[type(op)], value)

    def check(self, schema: pa.Schema, path: str) -> None:
        for name in self.columns:
            if name not in schema.names:
                raise ContractError(path, "column is missing", column=name, expected=f"a column used by the filter {self.text!r}",
                                    found=f"columns {', '.join(schema.names)}")

    def mask(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        """``(rows,)`` bool: True where every condition holds."""
        result = None
        by_symbol = {v: _OPS[k] for k, v in _SYMBOLS.items()}
        for c in self.conditions:
            column = table.column(c.column)
            if c.op in ("in", "not in"):
                m = pc.is_in(column, value_set=pa.array(c.value))
                if c.op == "not in":
                    m = pc.invert(m)
                m = pc.and_(m, pc.is_valid(column))
            else:
                m = by_symbol[c.op](column, pa.scalar(c.value))
            result = m if result is None else pc.and_kleene(result, m)
        return pc.fill_null(result, False).to_numpy(zero_copy_only=False).astype(bool)

    def __repr__(self) -> str:
        return f"RowFilter({self.text!r})"


