"""Reading bill files: FOCUS CSV (plain or gzip) and Parquet, and the GCP export as
newline-delimited JSON (`bq extract`) or flat CSV. Streams: a file is never held in memory.

Every reader reports where it is (bytes read of the file on disk) through an optional callback,
for the progress bar, and hashes the bytes it reads: the import's batch records each file's
SHA-256, so `hubmeter costs imports` shows which delivery a batch came from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.costs.focus import FocusParser, cell_text
from app.costs.gcp_export import ExportAggregator
from app.costs.problems import RowProblems
from app.costs.records import CostRecord
from app.errors import InputError, InputProblem
from app.periods import Window

Progress = Callable[[int], None]
PROGRESS_EVERY_ROWS = 20_000

# Cells of a large FOCUS file can be long (Tags, resource ids); csv's default limit is 128 KiB.
csv.field_size_limit(16 * 1024 * 1024)


@dataclass
class FileRead:
    """What was read from one file."""

    path: Path
    rows: int = 0
    sha256: str = ""
    size_bytes: int = 0
    format: str = ""


class _HashingReader(io.RawIOBase):
    """A binary file that hashes what is read from it and knows how far it has got."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self.digest.update(data)
        self.position += count
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass
class _Opened:
    text: io.TextIOWrapper
    hashing: _HashingReader
    compressed: bool


def _open_text(path: Path) -> _Opened:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(
            InputProblem(str(path), None, None, None, "a readable file", exc.strerror)
        ) from exc
    hashing = _HashingReader(raw)
    buffered = io.BufferedReader(hashing, buffer_size=1024 * 1024)
    magic = buffered.peek(2)[:2]
    binary: IO[bytes] | gzip.GzipFile = buffered
    compressed = magic == b"\x1f\x8b"
    if compressed:
        binary = gzip.GzipFile(fileobj=buffered, mode="rb")
    # utf-8-sig: exporters on Windows (Azure) begin CSVs with a byte-order mark.
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
    return _Opened(text, hashing, compressed)


def _finish(read: FileRead, opened: _Opened) -> None:
    # Hash the rest of the file too (a reader may stop before EOF on a problem it tolerates).
    while opened.hashing.readinto(bytearray(1024 * 1024)):
        pass
    read.sha256 = opened.hashing.digest.hexdigest()
    read.size_bytes = opened.hashing.position


def _decode_problem(path: Path, line: int, exc: Exception) -> InputError:
    if isinstance(exc, UnicodeDecodeError):
        return InputError(InputProblem(str(path), line, None, None, "UTF-8 text", exc.reason))
    if isinstance(exc, EOFError | gzip.BadGzipFile | OSError):
        return InputError(
            InputProblem(str(path), line, None, None, "a complete gzip file", str(exc))
        )
    return InputError(InputProblem(str(path), line, None, None, "well-formed CSV", str(exc)))


def csv_rows(
    path: Path, read: FileRead, progress: Progress | None
) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) for each record, the header first (line 1)."""
    opened = _open_text(path)
    read.format = "csv.gz" if opened.compressed else "csv"
    reader = csv.reader(opened.text, strict=True)
    line = 1
    try:
        with opened.text:
            try:
                for values in reader:
                    yield line, values
                    line = reader.line_num + 1
                    if progress is not None and line % PROGRESS_EVERY_ROWS == 0:
                        progress(opened.hashing.position)
            except (csv.Error, UnicodeDecodeError, EOFError, OSError) as exc:
                raise _decode_problem(path, line, exc) from exc
            _finish(read, opened)
    finally:
        if progress is not None:
            progress(opened.hashing.position)


def is_parquet(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"PAR1"
    except OSError:
        return False


def read_focus(
    paths: list[Path],
    *,
    problems: RowProblems,
    window: Window | None,
    reads: list[FileRead],
    progress: Progress | None = None,
) -> Iterator[CostRecord]:
    """Cost lines from FOCUS files, one by one; one currency across all the files."""
    currency: str | None = None
    currency_where: str | None = None
    offset = 0
    for path in paths:
        read = FileRead(path)
        reads.append(read)
        file_progress = None if progress is None else _shifted(progress, offset)
        if is_parquet(path):
            rows = _parquet_rows(path, read, file_progress)
        else:
            rows = csv_rows(path, read, file_progress)
        parser: FocusParser | None = None
        for line, values in rows:
            if parser is None:
                parser = FocusParser(
                    values, source_name=str(path), problems=problems, window=window,
                    currency=currency, currency_where=currency_where,
                )  # fmt: skip
                continue
            if not values:
                continue  # a blank line, as a spreadsheet may leave at the end
            read.rows += 1
            record = parser.parse(values, line)
            if record is not None:
                yield record
        if parser is None:
            raise InputError(
                InputProblem(str(path), 1, None, None, "a FOCUS header row", "an empty file")
            )
        currency, currency_where = parser.currency, parser.currency_where
        offset += path.stat().st_size


def _shifted(progress: Progress, offset: int) -> Progress:
    return lambda position: progress(offset + position)


def _parquet_rows(
    path: Path, read: FileRead, progress: Progress | None
) -> Iterator[tuple[int, list[str]]]:
    """Parquet as CSV-like rows: the header (row 1), then each row's cells as FOCUS text; the
    "line" of a row is its 1-based row number plus one, as it would be in the CSV."""
    import pyarrow.parquet as pq

    read.format = "parquet"
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a damaged file
        raise InputError(
            InputProblem(str(path), None, None, None, "a readable Parquet file", str(exc))
        ) from exc
    names = parquet.schema_arrow.names
    yield 1, list(names)
    line = 1
    for batch in parquet.iter_batches(batch_size=10_000):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for row in zip(*columns, strict=True):
            line += 1
            yield line, [cell_text(value) for value in row]
        if progress is not None:
            progress(path.stat().st_size * line // max(parquet.metadata.num_rows + 1, 1))
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    read.sha256 = digest.hexdigest()
    read.size_bytes = path.stat().st_size


# --- the GCP export as files -----------------------------------------------------------------

# The flat CSV has one column per leaf field, named by its path with '.' or '_' (BigQuery
# column names cannot hold dots, so a query writing the CSV uses '_'); repeated fields
# (labels, project.labels, system_labels, credits) are JSON text as TO_JSON_STRING writes them.
GCP_CSV_FIELDS: tuple[tuple[str, ...], ...] = (
    ("billing_account_id",),
    ("service", "id"),
    ("service", "description"),
    ("sku", "id"),
    ("sku", "description"),
    ("usage_start_time",),
    ("usage_end_time",),
    ("project", "id"),
    ("project", "name"),
    ("project", "labels"),
    ("labels",),
    ("system_labels",),
    ("location", "location"),
    ("location", "region"),
    ("export_time",),
    ("cost",),
    ("cost_at_list",),
    ("currency",),
    ("usage", "amount"),
    ("usage", "unit"),
    ("usage", "amount_in_pricing_units"),
    ("usage", "pricing_unit"),
    ("credits",),
    ("invoice", "month"),
    ("cost_type",),
    ("adjustment_info", "id"),
    ("adjustment_info", "description"),
    ("adjustment_info", "type"),
    ("adjustment_info", "mode"),
)
_GCP_JSON_FIELDS = {("project", "labels"), ("labels",), ("system_labels",), ("credits",)}
_GCP_REQUIRED = ("billing_account_id", "cost", "usage_start_time", "usage_end_time", "currency")


def aggregate_gcp_export(
    paths: list[Path],
    *,
    aggregator: ExportAggregator,
    reads: list[FileRead],
    progress: Progress | None = None,
) -> None:
    """Feed every row of the export files to the aggregator (NDJSON or flat CSV, maybe gzip)."""
    offset = 0
    for path in paths:
        read = FileRead(path)
        reads.append(read)
        file_progress = None if progress is None else _shifted(progress, offset)
        opened = _open_text(path)
        first = _first_character(opened)
        if first == "{":
            read.format = "ndjson.gz" if opened.compressed else "ndjson"
            _gcp_ndjson(path, opened, aggregator, read, file_progress)
        else:
            opened.text.close()
            _gcp_csv(path, aggregator, read, file_progress)
        offset += path.stat().st_size


def _first_character(opened: _Opened) -> str:
    buffer = opened.text.buffer
    assert isinstance(buffer, io.BufferedReader | gzip.GzipFile)
    head = buffer.peek(64)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    return text[:1]


def _gcp_ndjson(
    path: Path,
    opened: _Opened,
    aggregator: ExportAggregator,
    read: FileRead,
    progress: Progress | None,
) -> None:
    source = str(path)
    line = 0
    with opened.text:
        try:
            for text in opened.text:
                line += 1
                if not text.strip():
                    continue
                read.rows += 1
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    aggregator.problems.report(
                        InputProblem(source, line, exc.colno, None, "a JSON object", exc.msg)
                    )
                    continue
                if not isinstance(row, dict):
                    aggregator.problems.report(
                        InputProblem(source, line, 1, None, "a JSON object", type(row).__name__)
                    )
                    continue
                aggregator.add(row, source=source, line=line)
                if progress is not None and line % PROGRESS_EVERY_ROWS == 0:
                    progress(opened.hashing.position)
        except (UnicodeDecodeError, EOFError, OSError) as exc:
            raise _decode_problem(path, line + 1, exc) from exc
        _finish(read, opened)
    if progress is not None:
        progress(opened.hashing.position)


def _gcp_csv(
    path: Path, aggregator: ExportAggregator, read: FileRead, progress: Progress | None
) -> None:
    source = str(path)
    columns: dict[tuple[str, ...], int] = {}
    for line, values in csv_rows(path, read, progress):
        if line == 1:
            names = {name.strip(): i for i, name in enumerate(values)}
            for field_path in GCP_CSV_FIELDS:
                for name in (".".join(field_path), "_".join(field_path)):
                    if name in names:
                        columns[field_path] = names[name]
                        break
            missing = [name for name in _GCP_REQUIRED if (name,) not in columns]
            missing += [
                ".".join(p) for p in (("service", "description"), ("sku", "id"), ("cost_type",))
                if p not in columns
            ]  # fmt: skip
            if missing:
                raise InputError(
                    InputProblem(
                        source, 1, None, None,
                        "a GCP billing export CSV header with " + ", ".join(missing),
                        ",".join(values[:8]),
                    )
                )  # fmt: skip
            width = len(values)
            continue
        read.rows += 1
        if len(values) != width:
            aggregator.problems.report(
                InputProblem(source, line, None, None, f"{width} fields", f"{len(values)} fields")
            )
            continue
        row: dict[str, Any] = {}
        bad = False
        for field_path, position in columns.items():
            value: Any = values[position]
            if value == "":
                continue
            if field_path in _GCP_JSON_FIELDS:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    aggregator.problems.report(
                        InputProblem(
                            source, line, position + 1, ".".join(field_path),
                            "JSON text (as TO_JSON_STRING writes it)", exc.msg,
                        )
                    )  # fmt: skip
                    bad = True
                    break
            target = row
            for part in field_path[:-1]:
                target = target.setdefault(part, {})
            target[field_path[-1]] = value
        if not bad:
            aggregator.add(row, source=source, line=line)
