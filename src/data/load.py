"""Read a store's sales export into the canonical transaction table (see ``src.data.schema``).

Two steps, both public: ``read_export`` turns a file (JSON array, JSON Lines, CSV, Parquet; each
optionally gzipped) into a raw frame with the file's own column names and unparsed values;
``to_canonical`` maps, renames and parses those columns. ``load_transactions`` chains them.

1C:ERP quirks are absorbed rather than rejected: UTF-8 BOM or Windows-1251 (decided per file),
headers in any case and under their usual aliases (``src.data.columns``), ISO (with a zone offset
or not) and Russian ``dd.mm.yyyy`` dates (mixed in one file), numbers as JSON numbers or Russian
strings (``"1 234,50"``), ids as numbers or strings, placeholder ids such as ``(blank)``. Every parser is vectorised (pandas/pyarrow string ops, ``pd.to_datetime`` with explicit
formats only, applied once per distinct value), so a 1M-line export is dominated by JSON parsing.

The loader never drops rows. Unparseable dates (1C's placeholder years 0001 and 9999, anything
before 1900) and amounts (also +-Infinity and NaN) become NaT/NaN for the cleaning step to count
and drop, unless their share exceeds ``data.max_bad_share``: then a ``UserError`` names the file,
the column and the first bad records. What the loader decided (format, encoding, column mapping,
time zone, placeholder ids, how lines without an order id are grouped) is its ``LoadReport``.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import logging
import re
import zlib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from src.data import schema
from src.data.columns import PRICE, describe, match_columns
from src.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("json", "jsonl", "csv", "parquet", "excel")
_EXTENSIONS = {
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_ID_ROLES = (schema.ORDER_ID, schema.SALE_ID, schema.PRODUCT_ID, schema.SITE_ID)
_N_EXAMPLES = 5
_DATE_FORMS = (
    "2024-03-05T14:02:11, 2024-03-05T14:02:11+03:00, 2024-03-05 14:02:11Z, 2024-03-05, "
    "05.03.2024 14:02:11, 05.03.2024; years before 1900 (1C's empty 01.01.0001) and 9999 are "
    "unreadable"
)
# Readable dates: 1C writes an empty date as 01.01.0001 and "no end" as 31.12.9999.
_FIRST_DATE = np.datetime64("1900-01-01")
_LAST_DATE = np.datetime64("2262-01-01")  # datetime64[ns] ends in April 2262
_ZONE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
MISSING_IDS = ("(blank)", "N/A", "-", "")
# Two Russian letters (U+0410-U+044F, Ё, ё) in UTF-8; as Windows-1251 they read "Р" or "С" followed
# by a rare symbol, twice in a row.
_UTF8_CYRILLIC_WORD = re.compile(rb"(?:\xd0[\x81\x90-\xbf]|\xd1[\x80-\x8f\x91]){2}")
# Characters people and 1C put inside numbers as thousands separators.
_NUMERIC_KINDS = ("integer", "floating", "mixed-integer-float", "decimal", "empty")
_NUMBER_SPACES = (" ", "\t", "\u00a0", "\u202f", "\u2009", "\u2007")


@dataclass(frozen=True)
class LoadSettings:
    """How to read an export: the ``data.*`` keys that the loader uses (``conf/data/default.yaml``).

    `columns` are the user's overrides, role -> column (null = recognise by name); `timezone` is
    the zone every date is converted to (an IANA name or an offset like ``+03:00``; None = the
    export's most common offset); `missing_ids` are placeholder customer and order ids that mean
    "none"; `ids_ignore_leading_zeros` makes customer ``000123`` the same as ``123``.
    """

    columns: Mapping[str, str | None] = field(default_factory=dict)
    dayfirst: bool = True
    max_bad_share: float = 0.05
    timezone: str | None = None
    missing_ids: tuple[str, ...] = MISSING_IDS
    ids_ignore_leading_zeros: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.max_bad_share <= 1:
            raise UserError(f"data.max_bad_share={self.max_bad_share}: must be between 0 and 1")
        if self.timezone is not None:
            try:
                pd.Timestamp("2000-01-01", tz=_tzinfo(self.timezone))
            except (ValueError, TypeError, KeyError) as err:
                raise UserError(
                    f"data.timezone={self.timezone!r}: not a time zone; use a name such as "
                    f"Europe/Moscow, an offset such as +03:00, or null for the export's own"
                ) from err

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> LoadSettings:
        """From the ``data`` config block (a DictConfig or a dict); absent keys take defaults."""
        columns = data.get("columns") or {}
        missing = data.get("missing_ids")
        return cls(
            columns={str(k): (None if v is None else str(v)) for k, v in columns.items()},
            dayfirst=bool(data.get("dayfirst", True)),
            max_bad_share=float(data.get("max_bad_share", 0.05)),
            timezone=None if data.get("timezone") is None else str(data.get("timezone")),
            missing_ids=MISSING_IDS if missing is None else tuple(str(v) for v in missing),
            ids_ignore_leading_zeros=bool(data.get("ids_ignore_leading_zeros", False)),
        )


@dataclass
class LoadReport:
    """What the loader decided about one export; the ``load`` section of cleaning_report.json."""

    source: str
    format: str | None
    encoding: str | None
    columns: dict[str, str]
    timezone: dict[str, Any]
    unreadable: dict[str, int]
    missing_ids: dict[str, Any]
    order_ids: dict[str, Any]
    sheet: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "format": self.format,
            "encoding": self.encoding,
            "columns": dict(self.columns),
            "timezone": dict(self.timezone),
            "unreadable": dict(self.unreadable),
            "missing_ids": dict(self.missing_ids),
            "order_ids": dict(self.order_ids),
        }
        return out | ({"sheet": self.sheet} if self.sheet is not None else {})


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_transactions(
    path: str | Path, settings: LoadSettings | None = None, fmt: str = "auto", sheet: Any = None
) -> tuple[pd.DataFrame, LoadReport]:
    """Read an export file: the canonical transaction table and the loader's report.

    Roles are matched to columns by ``src.data.columns.match_columns``. If the export has no
    order column (or an order id is empty), order_id falls back to one order per customer per
    day: ``"{customer_id}|{YYYY-MM-DD}"``. Without a line-sum column, amount = quantity x price.
    Rows are never dropped here.
    """
    path = Path(path)
    raw = read_export(path, fmt, sheet=sheet)
    return to_canonical(raw, settings or LoadSettings(), source=str(path))


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def detect_format(path: str | Path, fmt: str = "auto") -> str:
    """The reader for `path`: `fmt` if given, else from the extension (a trailing .gz ignored)."""
    if fmt not in ("auto", *FORMATS):
        raise UserError(f"data.format={fmt}: unknown format; use one of auto, {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in _EXTENSIONS:
        raise UserError(
            f"{path}: cannot tell the format from the extension '{ext}'; name the file "
            f".json, .jsonl, .csv or .parquet (optionally + .gz) or set data.format to one of "
            f"{', '.join(FORMATS)}"
        )
    return _EXTENSIONS[ext]


def read_export(path: str | Path, fmt: str = "auto", sheet: Any = None) -> pd.DataFrame:
    """The export's records with the file's own column names; values not yet parsed.

    JSON keeps numbers as numbers and strings as strings (object columns); CSV is read as text;
    Excel (.xlsx) reads `sheet` (a name or a 0-based position; None = the first sheet).
    Gzip is detected from the content, so ``export.json.gz`` and a gzipped ``export.json`` both work.
    ``frame.attrs`` records the ``format``, the text ``encoding`` and the Excel ``sheet``.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found (data.path)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected an export file (data.path)")
    kind = detect_format(path, fmt)
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path}: empty file (0 bytes)")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(f"{path}: damaged gzip file ({err})") from err
        if not data:
            raise UserError(f"{path}: empty file (0 bytes after gunzip)")
    if sheet is not None and kind != "excel":
        raise UserError(f"data.sheet={sheet}: {path} is {kind}, not an Excel workbook")
    readers: dict[str, Callable[[bytes, Path], pd.DataFrame]] = {
        "json": _read_json,
        "jsonl": _read_jsonl,
        "csv": _read_csv,
        "parquet": _read_parquet,
        "excel": lambda data, path: read_excel(data, path, sheet),
    }
    frame = readers[kind](data, path)
    if len(frame) == 0:
        raise UserError(f"{path}: no records in the file")
    frame.attrs["format"] = kind
    return frame


def decode_export(data: bytes, path: Path) -> tuple[str, str]:
    """The file's text and its encoding, decided for the whole file, never mixed.

    UTF-16 with a BOM; UTF-8 (``utf-8-sig`` with a BOM) when every byte decodes; else Windows-1251
    (Russian Excel), unless the file also holds UTF-8 text (a BOM, UTF-8 letters before the first
    non-UTF-8 byte, or two UTF-8 Cyrillic letters in a row anywhere, which Windows-1251 text
    practically never forms): that file mixes encodings, and the error names the byte to fix.
    """
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16"), "utf-16"
    bom = data.startswith(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8-sig"), "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError as err:
        offset = err.start + (3 if bom else 0)
        utf8_word = _UTF8_CYRILLIC_WORD.search(data)
        if bom or not data[: err.start].isascii() or utf8_word:
            line = data.count(b"\n", 0, offset) + 1
            where = f" (UTF-8 Cyrillic at byte {utf8_word.start()})" if utf8_word else ""
            raise UserError(
                f"{path}: mixed encodings: UTF-8 text{where}, but byte 0x{data[offset]:02x} at "
                f"byte {offset} (line {line}) is not UTF-8 (Windows-1251?); save the whole file "
                f"in one encoding, preferably UTF-8"
            ) from None
    try:
        text = data.decode("cp1251")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: neither UTF-8 nor Windows-1251 text: byte 0x{data[err.start]:02x} at byte "
            f"offset {err.start} is not valid in either"
        ) from None
    log.warning("%s: not UTF-8, read as Windows-1251", path)
    return text, "cp1251"


def _records_frame(records: object, path: Path, what: str) -> pd.DataFrame:
    """A frame from parsed JSON that must be a list of objects; object dtype keeps values raw."""
    if isinstance(records, dict):
        keys = list(records)
        hint = [k for k in keys if isinstance(records[k], list)]
        tip = f"; the records may be the array under {hint[0]!r}" if hint else ""
        shown = keys[:20] + (["..."] if len(keys) > 20 else [])
        raise UserError(
            f"{path}: expected {what} of records ([{{...}}, ...]) but found a JSON object with "
            f"keys {shown}{tip}"
        )
    if not isinstance(records, list):
        raise UserError(
            f"{path}: expected {what} of records ([{{...}}, ...]) but found a JSON "
            f"{type(records).__name__}"
        )
    if not records:
        raise UserError(f"{path}: no records in the file (empty JSON array)")
    if not isinstance(records[0], dict):
        raise UserError(
            f"{path}: expected {what} of records (JSON objects) but record 0 is a "
            f"{type(records[0]).__name__}"
        )
    try:
        return pd.DataFrame(records, dtype=object)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{path}: expected {what} of records (JSON objects), but some elements are not "
            f"objects ({err})"
        ) from err


def _read_json(data: bytes, path: Path) -> pd.DataFrame:
    # json.loads + DataFrame(dtype=object) measured ~2.5x faster than pd.read_json on 1M records.
    text, encoding = decode_export(data, path)
    if not text or text.isspace():
        raise UserError(f"{path}: empty file (only whitespace)")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        hint = ""
        if err.msg == "Extra data":
            hint = (
                "; it looks like JSON Lines (one record per line): name the file .jsonl or set "
                "data.format=jsonl"
            )
        raise UserError(
            f"{path}: not valid JSON: {err.msg} at line {err.lineno} column {err.colno} "
            f"(char {err.pos}){hint}"
        ) from err
    frame = _records_frame(records, path, "a JSON array")
    frame.attrs["encoding"] = encoding
    return frame


def _read_jsonl(data: bytes, path: Path) -> pd.DataFrame:
    text, encoding = decode_export(data, path)
    body = text.strip()
    if not body:
        raise UserError(f"{path}: empty file (only whitespace)")
    # Fast path: one json.loads over the lines joined into an array (raw newlines cannot occur
    # inside JSON strings). Blank lines or a bad line fall through to the line-by-line reader,
    # which also reports the exact bad line.
    try:
        records = json.loads("[" + body.replace("\r\n", "\n").replace("\n", ",") + "]")
    except json.JSONDecodeError:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise UserError(
                    f"{path}: not valid JSON Lines: line {number}: {err.msg} at column {err.colno}"
                ) from err
    frame = _records_frame(records, path, "JSON Lines")
    frame.attrs["encoding"] = encoding
    return frame


def sniff_delimiter(header: str) -> str:
    """`;` (Russian Excel), tab or `,`: whichever occurs most in the header line."""
    counts = {sep: header.count(sep) for sep in (";", "\t", ",")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else ","


def _read_csv(data: bytes, path: Path) -> pd.DataFrame:
    text, encoding = decode_export(data, path)
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{path}: empty file (only whitespace)")
    newline = stripped.find("\n")
    sep = sniff_delimiter(stripped[: newline if newline >= 0 else len(stripped)])
    try:
        frame = pd.read_csv(
            io.StringIO(stripped),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise UserError(f"{path}: cannot read as CSV (delimiter {sep!r}): {err}") from err
    frame.attrs["encoding"] = encoding
    return frame


# pandas' Excel engine and the package providing each: `python -m src.bench excel` read 100k
# lines in 1.40 s with python-calamine and in 10.46 s with openpyxl.
EXCEL_ENGINE = "calamine"
EXCEL_PACKAGES = {"calamine": "python_calamine", "openpyxl": "openpyxl"}


def require_excel_engine(path: Path, engine: str = EXCEL_ENGINE) -> None:
    """Refuse an Excel export when the package that reads workbooks (the excel extra) is absent."""
    try:
        __import__(EXCEL_PACKAGES[engine])
    except ImportError:
        raise UserError(
            f"{path}: reading Excel workbooks needs the excel extra: pip install -e '.[excel]'"
        ) from None


def read_excel(
    data: bytes, path: Path, sheet: Any = None, engine: str = EXCEL_ENGINE
) -> pd.DataFrame:
    """One sheet of an .xlsx workbook (`sheet`: a name or 0-based position; None = the first)."""
    require_excel_engine(path, engine)
    try:
        workbook = pd.ExcelFile(io.BytesIO(data), engine=engine)
    except Exception as err:  # zipfile, XML and engine errors of several unrelated types
        raise UserError(f"{path}: not a readable Excel workbook ({err})") from err
    names = workbook.sheet_names
    if sheet is None:
        chosen = names[0]
    elif isinstance(sheet, int) or (str(sheet).isdigit() and str(sheet) not in names):
        if not 0 <= int(sheet) < len(names):
            raise UserError(f"data.sheet={sheet}: {path} has {len(names)} sheet(s): {names}")
        chosen = names[int(sheet)]
    elif str(sheet) in names:
        chosen = str(sheet)
    else:
        raise UserError(f"data.sheet={sheet!r}: no such sheet in {path}; its sheets: {names}")
    frame = pd.read_excel(workbook, sheet_name=chosen, dtype=object)
    frame.attrs["sheet"] = chosen
    return frame


def _read_parquet(data: bytes, path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several unrelated types for a non-Parquet file
        raise UserError(f"{path}: not a readable Parquet file ({err})") from err


# --------------------------------------------------------------------------------------------
# Value parsers (vectorised; each accepts any dtype)
# --------------------------------------------------------------------------------------------


def _via_uniques(series: pd.Series, func: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply `func` once per distinct value: exports repeat ids, dates and prices a lot.

    Columns that look unique (sale ids) skip the factorize that would not pay for itself.
    """
    sample = series.iloc[:10_000]
    try:
        if len(series) > 2 * len(sample) and sample.nunique() >= 0.9 * len(sample):
            return func(series.reset_index(drop=True)).set_axis(series.index)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable values (a nested JSON object in the column)
        return func(series.reset_index(drop=True)).set_axis(series.index)
    done = func(pd.Series(uniques))
    return done.reindex(codes).set_axis(series.index)  # code -1 (missing) -> NA


def _as_text(series: pd.Series) -> pd.Series:
    """Values as stripped strings (numbers via their repr); empty or missing -> NaN."""
    text = series.astype("str").str.strip()
    return text.where(text != "")


def _ids(series: pd.Series, missing: tuple[str, ...], no_leading_zeros: bool) -> pd.Series:
    text = _as_text(series)
    # 1234.0 (a JSON float, or a CSV written by pandas) is the same customer as 1234.
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    if no_leading_zeros:
        text = text.str.replace(r"^0+(?=.)", "", regex=True)
    placeholders = {value.strip().casefold() for value in missing}
    if placeholders - {""}:
        text = text.where(~text.str.casefold().isin(placeholders))
    return text


def normalise_ids(
    series: pd.Series, missing: tuple[str, ...] = (), no_leading_zeros: bool = False
) -> pd.Series:
    """Ids as stripped strings: 1234, 1234.0, "1234.0" and " 1234 " all become "1234".

    Missing, None, empty strings and the `missing` placeholders (any case, e.g. "(blank)", "N/A")
    become NaN (pandas `str` dtype). Leading zeros are kept unless `no_leading_zeros`
    ("000123" -> "123"; "000" -> "0").
    """
    return _via_uniques(series, lambda s: _ids(s, missing, no_leading_zeros)).astype("str")


def normalise_text(series: pd.Series) -> pd.Series:
    """Free text (addresses) as stripped strings, otherwise intact; empty -> NaN."""
    return _via_uniques(series, _as_text).astype("str")


def _numbers(series: pd.Series) -> pd.Series:
    text = _as_text(series)
    for space in _NUMBER_SPACES:  # literal replaces: several times faster than one regex
        text = text.str.replace(space, "", regex=False)
    text = text.str.replace("\u2212", "-", regex=False)
    both = text.str.contains(",", regex=False) & text.str.contains(".", regex=False)
    if both.any():
        # "1.234,50" or "1,234.50": the last separator is the decimal one.
        comma_decimal = text.str.rfind(",") > text.str.rfind(".")
        text = text.mask(both & comma_decimal, text.str.replace(".", ""))
        text = text.mask(both & ~comma_decimal, text.str.replace(",", ""))
    text = text.str.replace(",", ".", regex=False)
    try:  # one C cast when every value is clean; it refuses the whole column otherwise
        cast = pc.cast(pa.array(text, type=pa.string()), pa.float64())
        values = pd.Series(cast.to_numpy(zero_copy_only=False), index=text.index)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        values = pd.to_numeric(text, errors="coerce").astype("float64")
    return values.where(np.isfinite(values))  # "inf" is not an amount


def parse_ru_numbers(series: pd.Series) -> pd.Series:
    """Numbers from JSON numbers or Russian strings ("1 234,50", "1\u00a0234,50", "-12,5").

    Spaces, NBSP and narrow NBSP are thousands separators, the comma is the decimal separator
    (when both "." and "," occur, the last one is). Unparseable, empty, +-Infinity -> NaN.
    """
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        values = series.astype("float64")
    elif series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in _NUMERIC_KINDS:
        values = series.astype("float64")  # JSON numbers only (e.g. 1C quantity): no text detour
    else:
        return _numbers(series).astype("float64")  # amounts are mostly distinct: no factorize
    return values.where(np.isfinite(values.to_numpy()))  # JSON/Parquet Infinity is no amount


def _date_forms(dayfirst: bool) -> list[tuple[str, dict[int, str]]]:
    """(shape regex, {number of ':' -> strptime format}) for each date form, ISO first."""
    day_month = "%d{s}%m{s}%Y" if dayfirst else "%m{s}%d{s}%Y"
    time = r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
    forms = [(rf"\d{{4}}-\d{{2}}-\d{{2}}(?:[T ]{time}(?: ?{_ZONE})?)?", {})]
    for sep, sep_re in ((".", r"\."), ("/", "/")):
        date = day_month.format(s=sep)
        shape = rf"\d{{1,2}}{sep_re}\d{{1,2}}{sep_re}\d{{4}}(?: \d{{1,2}}:\d{{2}}(?::\d{{2}})?)?"
        forms.append((shape, {0: date, 1: f"{date} %H:%M", 2: f"{date} %H:%M:%S"}))
    return forms


def _offset_minutes(text: pd.Series) -> np.ndarray:
    """Minutes east of UTC of ISO strings ending in a zone (Z, +03, +0300, -05:00)."""
    parts = text.str.extract(r"(?:(Z)|([+-])(\d{2}):?(\d{2})?)$")
    sign = np.where(parts[1].to_numpy(dtype=object) == "-", -1.0, 1.0)
    hours = pd.to_numeric(parts[2], errors="coerce").fillna(0).to_numpy()
    minutes = pd.to_numeric(parts[3], errors="coerce").fillna(0).to_numpy()
    return sign * (hours * 60 + minutes)


def _in_range(parsed: pd.Series) -> pd.Series:
    """NaT for dates before 1900 or past 2261 (1C's empty 01.01.0001 and endless 31.12.9999)."""
    naive = parsed.dt.tz_localize(None) if parsed.dt.tz is not None else parsed
    return naive.where((naive >= _FIRST_DATE) & (naive < _LAST_DATE))


def _dates(series: pd.Series, dayfirst: bool) -> pd.DataFrame:
    """Per value: `date` (wall time; UTC for zoned ISO values), `offset` (minutes east of UTC
    of zoned values, else NaN) and `out_of_range` (1.0 for a date of a placeholder year)."""
    text = _as_text(series)
    values = text.to_numpy()
    out = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[ns]")
    offset = np.full(len(text), np.nan)
    out_of_range = np.zeros(len(text))
    todo = text.notna().to_numpy().copy()
    for shape, formats in _date_forms(dayfirst):
        if not todo.any():
            break
        candidates = np.flatnonzero(todo)
        subset = pd.Series(values[candidates], dtype="str")
        match = subset.str.fullmatch(shape).to_numpy(dtype=bool)
        if not match.any():
            continue
        positions, subset = candidates[match], subset[match]
        zoned = np.zeros(len(subset), dtype=bool)
        if not formats:  # ISO 8601: one fast C parser handles T/space, seconds, fractions, zones
            # A zone follows a time, so only values longer than a date can have one.
            zoned = ((subset.str.len() > 10) & subset.str[-6:].str.contains(r"[+\-Z]")).to_numpy()
            groups = {"ISO8601": np.flatnonzero(~zoned), "zoned": np.flatnonzero(zoned)}
        else:
            colons = subset.str.count(":").to_numpy()
            groups = {fmt: np.flatnonzero(colons == n) for n, fmt in formats.items()}
        for fmt, rows in groups.items():
            if not len(rows):
                continue
            chosen = subset.iloc[rows]
            if fmt == "zoned":
                parsed = pd.to_datetime(chosen, format="ISO8601", utc=True, errors="coerce")
                offset[positions[rows]] = _offset_minutes(chosen)
            else:
                parsed = pd.to_datetime(chosen, format=fmt, errors="coerce")
            kept = _in_range(parsed)
            out_of_range[positions[rows]] = (kept.isna() & parsed.notna()).to_numpy()
            out[positions[rows]] = kept.to_numpy().astype("datetime64[ns]")
        todo[positions] = False  # matched the shape: parsed, or a real bad value like 31.02
    return pd.DataFrame(
        {"date": out, "offset": offset, "out_of_range": out_of_range}, index=text.index
    )


def _tzinfo(setting: str) -> datetime.tzinfo:
    """`data.timezone` as a tzinfo: an offset (+03:00, -0500, Z) or an IANA name (Europe/Moscow)."""
    match = re.fullmatch(r"(?:Z|UTC)|(?:UTC)?([+-])(\d{2}):?(\d{2})?", setting.strip())
    if match:
        sign, hours, minutes = match.groups()
        delta = datetime.timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
        return datetime.timezone(-delta if sign == "-" else delta)
    return zoneinfo.ZoneInfo(setting.strip())


def _offset_label(minutes: float) -> str:
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(int(minutes)), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def read_dates(
    series: pd.Series, dayfirst: bool = True, timezone: str | None = None
) -> tuple[pd.Series, dict[str, Any]]:
    """Naive datetimes (datetime64[ns]) in one zone, and what was done about zones.

    Zoned ISO values (``Z``, ``+03:00``) are converted to `timezone` (None = the offset most of
    them carry); values without a zone are taken as already in it. A timezone-aware column
    (Parquet) is converted to `timezone`, or keeps its wall-clock time when it is None.
    """
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        zone = _tzinfo(timezone) if timezone else series.dt.tz
        local = _in_range(series.dt.tz_convert(zone).dt.tz_localize(None))
        zoned = int(series.notna().sum())
        info = {
            "zone": str(timezone or series.dt.tz),
            "chosen_by": "data.timezone" if timezone else "the column's own zone",
        }
        return local.astype("datetime64[ns]"), info | {
            "zoned_lines": zoned,
            "converted_lines": zoned if timezone else 0,
        }
    if pd.api.types.is_datetime64_any_dtype(series):
        info = {"zone": timezone or "as written", "chosen_by": _zone_source(timezone, False)}
        return _in_range(series).astype("datetime64[ns]"), info | {"zoned_lines": 0}
    parsed = _via_uniques(series, lambda s: _dates(s, dayfirst))
    dates, offsets = parsed["date"].astype("datetime64[ns]").rename(series.name), parsed["offset"]
    zoned = offsets.notna().to_numpy()
    info: dict[str, Any] = {"out_of_range_lines": int(parsed["out_of_range"].fillna(0).sum())}
    if not zoned.any():
        info |= {"zone": timezone or "as written", "chosen_by": _zone_source(timezone, False)}
        return dates, info | {"zoned_lines": 0}
    utc = dates[zoned]
    if timezone:
        local = utc.dt.tz_localize("UTC").dt.tz_convert(_tzinfo(timezone)).dt.tz_localize(None)
        shifted = int((offsets[zoned] != (local - utc).dt.total_seconds() / 60).sum())
        label = timezone
    else:
        dominant = float(offsets[zoned].mode().iloc[0])
        local = utc + pd.Timedelta(minutes=dominant)
        shifted = int((offsets[zoned] != dominant).sum())
        label = _offset_label(dominant)
    dates = dates.copy()
    dates[zoned] = local.astype("datetime64[ns]")
    info |= {
        "zone": label,
        "chosen_by": _zone_source(timezone),
        "zoned_lines": int(zoned.sum()),
        "converted_lines": shifted,
        "naive_lines_taken_as_zone": int(dates.notna().sum() - zoned.sum()),
    }
    return dates, info


def _zone_source(timezone: str | None, zoned: bool = True) -> str:
    if timezone:
        return "data.timezone"
    return "the export's most common offset" if zoned else "no date carries a zone"


def parse_dates(series: pd.Series, dayfirst: bool = True, timezone: str | None = None) -> pd.Series:
    """Datetimes (naive, datetime64[ns]) from the date forms 1C and Excel write, mixed freely.

    Forms: ISO ("2024-03-05T14:02:11", "2024-03-05 14:02:11", "2024-03-05", fractions and zones
    allowed), "05.03.2024 14:02:11", "5.03.2024 9:02", "05.03.2024" and the same with "/".
    `dayfirst` decides dd.mm vs mm.dd for the dotted and slashed forms. Each form is parsed with an
    explicit format on the rows of its shape (no per-element inference); anything else, and any
    year before 1900 or past 2261, -> NaT. Zones: see ``read_dates``.
    """
    return read_dates(series, dayfirst, timezone)[0]


# --------------------------------------------------------------------------------------------
# Raw frame -> canonical table
# --------------------------------------------------------------------------------------------


def _check_bad(
    raw: pd.Series,
    parsed: pd.Series,
    source: str,
    column: str,
    role: str,
    what: str,
    max_bad_share: float,
) -> None:
    """Raise if more than `max_bad_share` of `column` is empty or unparseable."""
    bad = parsed.isna().to_numpy()
    n_bad, n = int(bad.sum()), len(bad)
    if n == 0 or n_bad / n <= max_bad_share:
        if n_bad:
            log.info("%s: column %r: %d values empty or not %s", source, column, n_bad, what)
        return
    n_empty = int((bad & _as_text(raw).isna().to_numpy()).sum())
    positions = np.flatnonzero(bad)[:_N_EXAMPLES]
    examples = ", ".join(f"{i}: {raw.iloc[i]!r}" for i in positions)
    forms = f"; readable date forms: {_DATE_FORMS}" if role == schema.DATE else ""
    raise UserError(
        f"{source}: column {column!r} ({role}): {n_bad} of {n} values ({n_bad / n:.1%}) are "
        f"empty or not {what} ({n_empty} empty, {n_bad - n_empty} unparseable), more than "
        f"data.max_bad_share={max_bad_share}; first bad rows (0-based record index): "
        f"{examples}{forms}"
    )


def fallback_order_ids(customer_id: pd.Series, date: pd.Series) -> pd.Series:
    """One order per customer per day, "{customer_id}|{YYYY-MM-DD}"; NaN if either is missing."""
    codes, days = pd.factorize(date.dt.normalize(), use_na_sentinel=True)
    day_text = pd.Series(days.strftime("%Y-%m-%d"), dtype="str").reindex(codes)
    ids = customer_id.astype("str") + "|" + day_text.set_axis(date.index)
    return ids.where(customer_id.notna() & date.notna()).astype("str")


def to_canonical(
    raw: pd.DataFrame,
    settings: LoadSettings | None = None,
    source: str = "input",
    remembered: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """The canonical transaction table from a raw frame with the export's column names, and the
    loader's report.

    `source` names the data in error messages (the file path); `remembered` is the column mapping
    a trained model was fitted with (``match_columns``). Output has a fresh RangeIndex (row i =
    record i), the roles found, in ``schema.CANONICAL`` order. Order ids fall back to
    ``"{customer_id}|{YYYY-MM-DD}"`` when the column is absent or a value is empty or a
    placeholder. Rows are never dropped; unreadable dates/amounts are NaT/NaN unless above
    ``max_bad_share``, which raises a UserError naming the column and the first bad records.
    """
    settings = settings or LoadSettings()
    raw = raw.reset_index(drop=True)
    have = [str(c) for c in raw.columns]
    found = match_columns(have, settings.columns, source, remembered)
    raw = raw.set_axis(have, axis=1)
    log.debug("%s: columns %s", source, describe(found))  # the command prints it once
    column = {role: raw[name] for role, name in found.items()}

    out: dict[str, pd.Series] = {}
    missing = settings.missing_ids
    out[schema.CUSTOMER_ID] = normalise_ids(
        column[schema.CUSTOMER_ID], missing, settings.ids_ignore_leading_zeros
    )
    out[schema.DATE], zone = read_dates(column[schema.DATE], settings.dayfirst, settings.timezone)
    checks = [(schema.DATE, out[schema.DATE], "dates")]
    if schema.QUANTITY in found:
        out[schema.QUANTITY] = parse_ru_numbers(column[schema.QUANTITY])
    if schema.AMOUNT in found:
        out[schema.AMOUNT] = parse_ru_numbers(column[schema.AMOUNT])
        checks.append((schema.AMOUNT, out[schema.AMOUNT], "numbers"))
    else:
        price = parse_ru_numbers(column[PRICE])
        checks += [(schema.QUANTITY, out[schema.QUANTITY], "numbers"), (PRICE, price, "numbers")]
        out[schema.AMOUNT] = out[schema.QUANTITY] * price
    for role, values, what in checks:
        _check_bad(column[role], values, source, found[role], role, what, settings.max_bad_share)
    for role in _ID_ROLES:
        if role in found:
            out[role] = normalise_ids(column[role], missing if role == schema.ORDER_ID else ())
    if schema.ADDRESS in found:
        out[schema.ADDRESS] = normalise_text(column[schema.ADDRESS])

    no_customer = out[schema.CUSTOMER_ID].isna().to_numpy()
    placeholders = int(_as_text(column[schema.CUSTOMER_ID][no_customer]).notna().sum())
    out_of_range = zone.pop("out_of_range_lines", 0)
    blank_orders = int(out[schema.ORDER_ID].isna().sum()) if schema.ORDER_ID in out else len(raw)
    if blank_orders:
        fallback = fallback_order_ids(out[schema.CUSTOMER_ID], out[schema.DATE])
        out[schema.ORDER_ID] = (
            out[schema.ORDER_ID].fillna(fallback) if schema.ORDER_ID in out else fallback
        )
    report = LoadReport(
        source=source,
        format=raw.attrs.get("format"),
        encoding=raw.attrs.get("encoding"),
        sheet=raw.attrs.get("sheet"),
        columns=found,
        timezone=zone | {"setting": "data.timezone"},
        unreadable={
            "dates": int(out[schema.DATE].isna().sum()),
            "dates_out_of_range": out_of_range,
            "amounts": int(out[schema.AMOUNT].isna().sum()),
        },
        missing_ids={
            "placeholders": list(missing),
            "customer_lines": placeholders,
            "setting": "data.missing_ids",
        },
        order_ids={
            "column": found.get(schema.ORDER_ID),
            "lines_without": blank_orders,
            "grouped_as": "one order per customer per day",
        },
    )
    if zone["zoned_lines"]:
        log.info(
            "%s: %d dates carry a zone; converted to %s (%s), %d of them shifted",
            source, zone["zoned_lines"], zone["zone"], zone["chosen_by"],
            zone["converted_lines"],
        )  # fmt: skip
    if blank_orders:
        log.info(
            "%s: %d lines without an order id; grouped as one order per customer per day",
            source, blank_orders,
        )  # fmt: skip
    return pd.DataFrame({c: out[c] for c in schema.CANONICAL if c in out}), report
