"""Which column of an export plays which role (``src.data.schema``): the column mapping.

Headers are compared by ``header_key``: case, spaces and underscores do not matter, so ``Sum``,
`` sum ``, ``Customer ID``, ``customer_id`` and ``CUSTOMERID`` all match. Each role has aliases:
the header sets 1C:ERP writes (Russian and English) and invoice-line exports (Online Retail:
InvoiceNo/Invoice, InvoiceDate, CustomerID/Customer ID, UnitPrice/Price, Quantity). A role is
taken from, in this order: the user's override (``data.columns.<role>``: that column, which must
exist), the name a trained model remembers (predict), the aliases. Two columns matching one role
and every missing required role are reported in one error naming the override to type.
"""

from __future__ import annotations

from collections.abc import Mapping

from src.data import schema
from src.errors import UserError

PRICE = "price"  # unit price column, used only when the export has no line-sum column
ROLES = (*schema.CANONICAL, PRICE)

ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    schema.CUSTOMER_ID: (
        "CustomerID", "ClientID", "Клиент", "КодКлиента", "Код клиента", "ИДКлиента", "Покупатель", "Контрагент",
    ),
    schema.DATE: (
        "date", "InvoiceDate", "OrderDate", "SaleDate", "Period",
        "Дата", "Период", "ДатаПродажи", "Дата продажи", "ДатаЗаказа", "Дата заказа",
    ),
    schema.AMOUNT: (
        "sum", "amount", "total", "LineTotal", "Revenue",
        "Сумма", "СуммаПродажи", "Сумма продажи", "Выручка", "СуммаСтроки",
    ),
    schema.ORDER_ID: (
        "order_id", "Order", "InvoiceNo", "Invoice", "OrderNo", "OrderNumber",
        "Заказ", "НомерЗаказа", "Номер заказа", "ЗаказКлиента", "Документ", "НомерДокумента",
    ),
    schema.SALE_ID: ("sale_id", "LineID", "НомерСтроки", "Номер строки", "ИДПродажи"),
    schema.QUANTITY: ("quantity", "qty", "Количество", "Кол-во"),
    schema.PRODUCT_ID: (
        "StockCode", "product_id", "Product", "SKU", "ItemCode",
        "Номенклатура", "Артикул", "КодТовара", "Код товара", "Товар",
    ),
    schema.SITE_ID: ("site_id", "Site", "Store", "Сайт", "Магазин"),
    schema.ADDRESS: ("address", "Адрес", "АдресДоставки", "Адрес доставки"),
    PRICE: ("price", "UnitPrice", "Цена", "ЦенаЗаЕдиницу"),
}  # fmt: skip


def header_key(name: object) -> str:
    """A header as compared: case-folded, without whitespace and underscores."""
    return "".join(str(name).split()).replace("_", "").casefold()


def _alias_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for role, aliases in ROLE_ALIASES.items():
        for alias in aliases:
            key = header_key(alias)
            assert keys.setdefault(key, role) == role, f"alias {alias!r} of two roles"
    return keys


_ALIAS_ROLE = _alias_keys()


def _unknown_roles(overrides: Mapping[str, object]) -> None:
    unknown = sorted(set(overrides) - set(ROLES))
    if unknown:
        raise UserError(f"data.columns: unknown role(s) {unknown}; known roles are {list(ROLES)}")


def match_columns(
    have: list[str],
    overrides: Mapping[str, str | None],
    source: str,
    remembered: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Role -> column of `have` for every role the export has (see the module docstring).

    `overrides` are the user's ``data.columns`` (null = recognise by name); `remembered` the
    mapping a model was trained with. Raises one UserError for every unknown role, override
    naming no column, role matched by two columns and required role without a column.
    """
    _unknown_roles(overrides)
    by_key: dict[str, list[str]] = {}
    for column in have:
        by_key.setdefault(header_key(column), []).append(column)

    def exact_or_loose(name: str) -> list[str]:
        return [name] if name in have else by_key.get(header_key(name), [])

    mapping: dict[str, str] = {}
    problems: list[str] = []
    for role in ROLES:
        override = overrides.get(role)
        if override is not None and str(override).strip():
            found = exact_or_loose(str(override))
            if not found:
                problems.append(f"data.columns.{role}={override!r} is not a column of the file")
                continue
        else:
            found = exact_or_loose(remembered[role]) if remembered and role in remembered else []
            if not found:
                found = [c for c in have if _ALIAS_ROLE.get(header_key(c)) == role]
        if len(found) > 1:
            shown = " and ".join(repr(c) for c in found)
            problems.append(
                f"two columns for {role}: {shown}; pick one with data.columns.{role}=<column>"
            )
        elif found:
            mapping[role] = found[0]
    if schema.AMOUNT in mapping:
        mapping.pop(PRICE, None)  # the line sum wins; price only builds a missing one
    missing = [role for role in (schema.CUSTOMER_ID, schema.DATE) if role not in mapping]
    if schema.AMOUNT not in mapping:
        if PRICE not in mapping:
            missing.append(schema.AMOUNT)
        elif schema.QUANTITY not in mapping:
            missing.append(schema.QUANTITY)  # amount = quantity x price needs both
    if missing:
        overrides_hint = " ".join(f"data.columns.{role}=<column>" for role in missing)
        what = ", ".join(
            f"{role} (e.g. {', '.join(ROLE_ALIASES[role][:3])})"
            if role != schema.AMOUNT
            else "amount (a line sum such as sum or Сумма, or quantity and price)"
            for role in missing
        )
        problems.append(f"no column found for {what}; map it with {overrides_hint}")
    if problems:
        raise UserError(f"{source}: {'; '.join(problems)}; the file has columns {list(have)}")
    return mapping


def describe(mapping: Mapping[str, str]) -> str:
    """`customer_id <- 'Customer ID', date <- 'InvoiceDate', ...` for the console."""
    return ", ".join(f"{role} <- {column!r}" for role, column in mapping.items())
