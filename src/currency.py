"""The store's currency (`data.currency`, an ISO 4217 code): how its amounts are written in every
table, plot, console report and the cleaning report.

Known codes write the symbol where their readers expect it ("1 234 ₽", "£1,234", "$1,234"); any
other three-letter code is written after the number ("1,234 KZT").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from src.errors import UserError

DEFAULT = "RUB"
MINUS = "−"  # the typographic minus, as matplotlib draws it on axes


@dataclass(frozen=True)
class Currency:
    code: str
    symbol: str
    symbol_first: bool  # £1,234 rather than 1,234 £
    group: str  # thousands separator

    def amount(self, value: float, decimals: int = 0, signed: bool = False) -> str:
        """`value` with thousands grouped and the symbol: "1 234 ₽", "£1,234", "+£50", "−£50"."""
        return self._with_sign(value, self._place(self._grouped(value, decimals)), signed)

    def number(self, value: float, decimals: int = 0, signed: bool = False) -> str:
        """`value` grouped as this currency's readers group it, without the symbol (for table
        columns whose header names the currency): "1 234", "1,234", "+50"."""
        return self._with_sign(value, self._grouped(value, decimals), signed)

    def _grouped(self, value: float, decimals: int) -> str:
        return f"{abs(value):,.{decimals}f}".replace(",", self.group)

    def compact(self, value: float, signed: bool = False) -> str:
        """Short money for annotations: "1 234 ₽", "£12.3M", "1.23bn ₽" (millions from 10M)."""
        v = abs(value)
        if v >= 1e9:
            number = f"{v / 1e9:,.2f}bn"
        elif v >= 1e7:
            number = f"{v / 1e6:,.1f}M"
        else:
            number = self._grouped(v, 0)
        return self._with_sign(value, self._place(number), signed)

    def unit(self, max_value: float) -> tuple[float, str]:
        """Divisor and axis unit that keep tick labels short: (1e6, "£ million")."""
        if max_value >= 1e6:
            return 1e6, f"{self.symbol} million"
        if max_value >= 1e4:
            return 1e3, f"{self.symbol} thousand"
        return 1.0, self.symbol

    def _place(self, number: str) -> str:
        if self.symbol_first:
            return f"{self.symbol}{number}"
        return f"{number} {self.symbol}"

    @staticmethod
    def _with_sign(value: float, text: str, signed: bool) -> str:
        """A sign only when the written number is not zero ("−0 ₽" would be noise)."""
        if not re.search(r"[1-9]", text):
            return text
        if value < 0:
            return MINUS + text
        return ("+" if signed else "") + text


NBSP = "\u00a0"  # groups of Russian numbers stay on one line

_KNOWN = {
    "RUB": Currency("RUB", "₽", symbol_first=False, group=NBSP),
    "GBP": Currency("GBP", "£", symbol_first=True, group=","),
    "USD": Currency("USD", "$", symbol_first=True, group=","),
    "EUR": Currency("EUR", "€", symbol_first=True, group=","),
}


def currency(code: str | None) -> Currency:
    """The Currency of an ISO 4217 code (any case); null means the default, RUB."""
    text = DEFAULT if code is None else str(code).strip().upper()
    if text in _KNOWN:
        return _KNOWN[text]
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise UserError(
            f"data.currency={code!r}: expected a three-letter ISO 4217 code such as RUB, GBP, "
            "USD or EUR"
        )
    return Currency(text, text, symbol_first=False, group=",")
