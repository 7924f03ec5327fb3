"""Money is integer fen with a named type; never floats (CONVENTIONS: Time and money).

Yuan appear only at the edges, as display strings. WeChat Pay API v3 itself speaks fen
(`amount.total`, `amount.refund` are integers), so nothing on the wire needs conversion.
"""

from __future__ import annotations

from typing import Final, NewType

Fen = NewType("Fen", int)

#: SPEC §2: the deposit is 30 yuan.
DEPOSIT: Final = Fen(3000)

FEN_PER_YUAN: Final = 100


def fen(value: object) -> Fen:
    """`value` as Fen, refusing anything that is not a plain int (a float, a Decimal, a bool,
    a numeric string): a silent rounding is exactly the bug this type exists to prevent."""
    if type(value) is not int:  # bool is an int subclass; exclude it and every other subclass
        raise TypeError(f"money must be an integer number of fen, got {value!r}")
    return Fen(value)


def yuan_str(amount: Fen) -> str:
    """Display form, e.g. 3000 -> "30.00", -5 -> "-0.05". For people, never for arithmetic."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), FEN_PER_YUAN)
    return f"{sign}{whole}.{cents:02d}"


def format_yuan(amount: Fen) -> str:
    """Display form with the currency sign, e.g. 3000 -> "¥30.00", -5 -> "-¥0.05"."""
    text = yuan_str(amount)
    return f"-¥{text[1:]}" if text.startswith("-") else f"¥{text}"
