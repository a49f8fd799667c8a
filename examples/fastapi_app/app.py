"""An items service in FastAPI, the way FastAPI apps are usually written; `ringserve app:app` serves it.

- pydantic models and a CRUD API on SQLite through aiosqlite (an async driver: the queries run in
  aiosqlite's thread, the event loop never blocks on the database)
- dependency injection: the database connection and the pagination parameters
- a lifespan that opens the database (creating the tables) and closes it at shutdown; the connection
  reaches the requests through the lifespan state (request.state.db)
- a background task: every change is written to an audit log after the response has gone out
- an upload (UploadFile, streamed to disk) and its download (FileResponse, which Starlette sends with
  the server's http.response.pathsend extension when the server offers it, as ringserve does)
- a StreamingResponse (CSV export) and server-sent events
- a websocket endpoint (echo)
- static files (StaticFiles) and a small page at /

Data (SQLite database, uploads) lives in EXAMPLE_DATA_DIR, by default data/ beside this file.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import aiosqlite
from fastapi import (BackgroundTasks, Depends, FastAPI, HTTPException, Query, Request, Response, UploadFile,
                     WebSocket, WebSocketDisconnect, status)
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR") or HERE / "data").resolve()
UPLOAD_DIR = DATA_DIR / "uploads"
DB_PATH = DATA_DIR / "items.sqlite3"
AUDIT_DELAY = 0.5  # the background task's stand-in for slow work (sending a mail, calling a webhook)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    price REAL NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    item_id INTEGER,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    uploaded_at TEXT NOT NULL
);
"""


# --------------------------------------------------------------------------- lifespan and dependencies


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
    UPLOAD_DIR.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit, each statement is its own transaction (the connection is
    # shared by the requests of this process). WAL and a busy timeout let several worker processes
    # use the same file.
    db = await aiosqlite.connect(DB_PATH, timeout=20, isolation_level=None)
    db.row_factory = aiosqlite.Row
    await db.execute("PRAGMA journal_mode=WAL")
    await db.executescript(SCHEMA)
    try:
        yield {"db": db, "streams": {"open": 0}}
    finally:
        await db.close()


app = FastAPI(title="ringserve FastAPI example", lifespan=lifespan)
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def get_db(request: Request) -> aiosqlite.Connection:
    return request.state.db


Db = Annotated[aiosqlite.Connection, Depends(get_db)]


class Page(BaseModel):
    limit: int
    offset: int


def pagination(limit: Annotated[int, Query(ge=1, le=100)] = 20, offset: Annotated[int, Query(ge=0)] = 0) -> Page:
    return Page(limit=limit, offset=offset)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --------------------------------------------------------------------------- models


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    price: float = Field(ge=0)
    tags: list[str] = Field(default_factory=list, max_length=20)


class Item(ItemIn):
    id: int
    created_at: datetime


class AuditEntry(BaseModel):
    id: int
    action: str
    item_id: int | None
    at: datetime


class FileInfo(BaseModel):
    id: str
    name: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    url: str


def item_of(row: aiosqlite.Row) -> Item:
    return Item(**{**dict(row), "tags": json.loads(row["tags"])})


def file_of(row: aiosqlite.Row) -> FileInfo:
    return FileInfo(**dict(row), url=app.url_path_for("download_file", file_id=row["id"]))


async def fetch_item(db: aiosqlite.Connection, item_id: int) -> Item:
    async with db.execute("SELECT * FROM items WHERE id = ?", (item_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no item {item_id}")
    return item_of(row)


async def record(db: aiosqlite.Connection, action: str, item_id: int | None) -> None:
    """The background task: runs after the response was sent."""
    await asyncio.sleep(AUDIT_DELAY)
    await db.execute("INSERT INTO audit (action, item_id, at) VALUES (?, ?, ?)", (action, item_id, now()))


# --------------------------------------------------------------------------- items (CRUD)


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(HERE / "static" / "index.html")


@app.post("/items", status_code=status.HTTP_201_CREATED)
async def create_item(item: ItemIn, db: Db, tasks: BackgroundTasks, response: Response) -> Item:
    async with db.execute(
        "INSERT INTO items (name, description, price, tags, created_at) VALUES (?, ?, ?, ?, ?) RETURNING *",
        (item.name, item.description, item.price, json.dumps(item.tags), now()),
    ) as cursor:
        created = item_of(await cursor.fetchone())
    tasks.add_task(record, db, "created", created.id)
    response.headers["Location"] = app.url_path_for("read_item", item_id=created.id)
    return created


@app.get("/items")
async def list_items(db: Db, page: Annotated[Page, Depends(pagination)], tag: str | None = None) -> list[Item]:
    sql, args = "SELECT * FROM items", []
    if tag is not None:
        sql += " WHERE EXISTS (SELECT 1 FROM json_each(items.tags) WHERE value = ?)"
        args.append(tag)
    sql += " ORDER BY id LIMIT ? OFFSET ?"
    async with db.execute(sql, (*args, page.limit, page.offset)) as cursor:
        return [item_of(row) for row in await cursor.fetchall()]


@app.get("/items/{item_id}")
async def read_item(item_id: int, db: Db) -> Item:
    return await fetch_item(db, item_id)


@app.put("/items/{item_id}")
async def update_item(item_id: int, item: ItemIn, db: Db, tasks: BackgroundTasks) -> Item:
    await fetch_item(db, item_id)
    await db.execute(
        "UPDATE items SET name = ?, description = ?, price = ?, tags = ? WHERE id = ?",
        (item.name, item.description, item.price, json.dumps(item.tags), item_id),
    )
    tasks.add_task(record, db, "updated", item_id)
    return await fetch_item(db, item_id)


@app.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: int, db: Db, tasks: BackgroundTasks) -> None:
    await fetch_item(db, item_id)
    await db.execute("DELETE FROM items WHERE id = ?", (item_id,))
    tasks.add_task(record, db, "deleted", item_id)


@app.get("/audit")
async def audit_log(db: Db, page: Annotated[Page, Depends(pagination)], item_id: int | None = None) -> list[AuditEntry]:
    sql, args = "SELECT * FROM audit", []
    if item_id is not None:
        sql += " WHERE item_id = ?"
        args.append(item_id)
    async with db.execute(sql + " ORDER BY id LIMIT ? OFFSET ?", (*args, page.limit, page.offset)) as cursor:
        return [AuditEntry(**dict(row)) for row in await cursor.fetchall()]


@app.get("/export/items.csv")
async def export_items(db: Db) -> StreamingResponse:
    """Every item as CSV, streamed row by row from the database cursor."""

    async def rows() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "name", "price", "tags", "created_at"])
        async with db.execute("SELECT * FROM items ORDER BY id") as cursor:
            async for row in cursor:
                writer.writerow([row["id"], row["name"], row["price"], " ".join(json.loads(row["tags"])),
                                 row["created_at"]])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="items.csv"'})


# --------------------------------------------------------------------------- files


@app.post("/files", status_code=status.HTTP_201_CREATED)
async def upload_file(file: UploadFile, db: Db) -> FileInfo:
    file_id = uuid.uuid4().hex
    digest, size = hashlib.sha256(), 0
    with open(UPLOAD_DIR / file_id, "wb") as out:
        while chunk := await file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            await run_in_threadpool(out.write, chunk)
    async with db.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        (file_id, file.filename or file_id, file.content_type or "application/octet-stream", size,
         digest.hexdigest(), now()),
    ) as cursor:
        return file_of(await cursor.fetchone())


@app.get("/files")
async def list_files(db: Db, page: Annotated[Page, Depends(pagination)]) -> list[FileInfo]:
    async with db.execute("SELECT * FROM files ORDER BY uploaded_at LIMIT ? OFFSET ?",
                          (page.limit, page.offset)) as cursor:
        return [file_of(row) for row in await cursor.fetchall()]


@app.get("/files/{file_id}")
async def download_file(file_id: str, db: Db) -> FileResponse:
    async with db.execute("SELECT * FROM files WHERE id = ?", (file_id,)) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no file {file_id}")
    return FileResponse(UPLOAD_DIR / row["id"], media_type=row["content_type"], filename=row["name"])


# --------------------------------------------------------------------------- server-sent events, websocket


@app.get("/events")
async def events(
    request: Request,
    count: Annotated[int | None, Query(ge=1)] = None,
    interval: Annotated[float, Query(ge=0, le=60)] = 1.0,
) -> StreamingResponse:
    """Server-sent events: a 'tick' every `interval` seconds, `count` of them (default: until the client
    leaves), then a 'done' event. /events/open tells how many streams this process is sending."""
    streams = request.state.streams

    async def stream() -> AsyncIterator[str]:
        streams["open"] += 1
        try:
            n = 0
            while count is None or n < count:
                if n:
                    await asyncio.sleep(interval)
                n += 1
                data = json.dumps({"n": n, "at": now()})
                yield f"id: {n}\nevent: tick\ndata: {data}\n\n"
            yield f"event: done\ndata: {json.dumps({'count': n})}\n\n"
        finally:
            streams["open"] -= 1

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@app.get("/events/open")
async def open_streams(request: Request) -> dict:
    return {"open": request.state.streams["open"]}


@app.websocket("/ws")
async def websocket_echo(websocket: WebSocket) -> None:
    """Echoes each text message back as {"echo": text, "n": count}; closes on "bye"."""
    await websocket.accept()
    n = 0
    try:
        while True:
            text = await websocket.receive_text()
            n += 1
            await websocket.send_json({"echo": text, "n": n})
            if text == "bye":
                await websocket.close()
                return
    except WebSocketDisconnect:
        pass
