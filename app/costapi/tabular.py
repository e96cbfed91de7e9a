"""Tabular answers as CSV: `format=csv` or `Accept: text/csv` picks it; JSON otherwise."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.tables import csv_cell

CSV_MEDIA_TYPE = "text/csv"
JSON_DEFAULT_LIMIT = 100
# A spreadsheet download wants the whole table, so CSV pages are as large as allowed.
MAX_LIMIT = 10_000


class ResponseFormat(StrEnum):
    json = "json"
    csv = "csv"


FormatParam = Annotated[
    ResponseFormat | None,
    Query(
        alias="format",
        description="`csv` for a CSV table, `json` for JSON. Without it the `Accept` header "
        "decides (`text/csv` or `application/json`), and JSON is the default.",
    ),
]
LimitParam = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"Rows per page: {JSON_DEFAULT_LIMIT} by default for JSON, {MAX_LIMIT} "
        "for CSV.",
    ),
]
OffsetParam = Annotated[
    int, Query(ge=0, le=10_000_000, description="Rows to skip, from the stable order.")
]

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            CSV_MEDIA_TYPE: {
                "schema": {"type": "string"},
                "example": "period_start,period_end,user_id,username,currency,amount\n"
                "2026-10-01,2026-11-01,17,alice,USD,123.45678901234\n",
            }
        },
        "description": "The same rows as JSON, or as CSV with a header line.",
    }
}


def wants_csv(request: Request, requested: ResponseFormat | None) -> bool:
    """CSV when asked for by `format`, or when the Accept header prefers text/csv to JSON."""
    if requested is not None:
        return requested == ResponseFormat.csv
    accept = request.headers.get("accept", "")
    if "csv" not in accept:
        return False
    best_csv = best_json = -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        if media == CSV_MEDIA_TYPE:
            best_csv = max(best_csv, quality)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, quality)
    return best_csv > 0 and best_csv > best_json


def page_limit(limit: int | None, csv_wanted: bool) -> int:
    if limit is not None:
        return limit
    return MAX_LIMIT if csv_wanted else JSON_DEFAULT_LIMIT


def csv_response(
    *,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    filename: str,
    total: int | None = None,
    next_offset: int | None = None,
) -> Response:
    """A CSV download; pagination travels in headers, since CSV has nowhere else for it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if total is not None:
        headers["X-Total-Count"] = str(total)
    if next_offset is not None:
        headers["X-Next-Offset"] = str(next_offset)
    return Response(
        buffer.getvalue(), media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8", headers=headers
    )


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """JSON of a model the route has just built (and so validated): FastAPI would validate it
    again against the response model, in a worker thread of its own, for every request."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
