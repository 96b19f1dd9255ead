"""Outputs of a prepared export: an HTTP stream (one file or a zip), a directory, a file, a preview.

A directory or archive holds one data file per split and README.md, the dataset card (card.py),
written last because it states the final counts.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from app.services.exporting.card import render_card
from app.services.exporting.postgres_columns import ColumnBatch
from app.services.exporting.prepare import PreparedExport
from app.services.exporting.writers import WRITERS, Writer

SPLITS = ("train", "test")


class _Chunks(io.RawIOBase):
    """A write-only stream whose bytes are collected and taken out in chunks (HTTP bodies)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _batches(export: PreparedExport) -> Iterator[Any]:
    """The rows in batches: Arrow tables (`ColumnBatch`) or (split, JSON line) where PostgreSQL
    writes them, else (split, row tuple)."""
    if export.tables is not None:
        return export.tables()
    return export.lines() if export.lines is not None else export.batches()


def _rows(batch: Any, *splits: str) -> list[Any]:
    """The rows of ``batch`` in ``splits`` ("all": every row), in row order."""
    if isinstance(batch, ColumnBatch):
        return [batch.table] if "all" in splits else batch.select(splits)
    if "all" in splits:
        return [values for _, values in batch]
    return [values for split, values in batch if split in splits]


def _write(export: PreparedExport, writer: Writer, rows: list[Any]) -> None:
    if export.tables is not None:
        writer.write_tables(rows)
    elif export.lines is not None:
        writer.write_lines(rows)
    else:
        writer.write(rows)


def stream_file(export: PreparedExport, *, split: str = "all") -> Iterator[bytes]:
    """One data file (the rows of ``split``, or all of them with the ``split`` column), in chunks."""
    sink = _Chunks()
    writer = WRITERS[export.spec.format](sink, export.columns)  # type: ignore[arg-type]
    for batch in _batches(export):
        _write(export, writer, _rows(batch, split))
        chunk = sink.take()
        if chunk:
            yield chunk
    writer.close()
    yield sink.take()


def data_path(export: PreparedExport, split: str) -> str:
    return f"data/{split}{export.extension}"


def stream_archive(export: PreparedExport) -> Iterator[bytes]:
    """A zip of README.md (the dataset card) and one data file per split, in chunks.

    The train file streams straight into the archive; the test rows wait in a temporary file
    (spilled to disk past a few MB) and follow it; the card, which needs the final counts,
    comes last.
    """
    sink = _Chunks()
    fmt = export.spec.format
    compression = zipfile.ZIP_STORED if fmt == "parquet" else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(sink, "w", compression=compression, compresslevel=1) as archive:  # type: ignore[arg-type]
        train_entry = archive.open(data_path(export, "train"), "w", force_zip64=True)
        train = WRITERS[fmt](train_entry, export.columns)
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spill:
            test = WRITERS[fmt](spill, export.columns)  # type: ignore[arg-type]
            for batch in _batches(export):
                _write(export, train, _rows(batch, "train"))
                _write(export, test, _rows(batch, "test"))
                chunk = sink.take()
                if chunk:
                    yield chunk
            train.close()
            train_entry.close()
            test.close()
            files = {"train": data_path(export, "train")}
            if export.stats.rows["test"]:
                files["test"] = data_path(export, "test")
                spill.seek(0)
                with archive.open(files["test"], "w", force_zip64=True) as entry:
                    shutil.copyfileobj(spill, entry, 1024 * 1024)  # type: ignore[misc]
                    yield sink.take()
        archive.writestr("README.md", render_card(export=export, files=files))
    yield sink.take()


def write_directory(
    export: PreparedExport, directory: Any, *, progress: Callable[[int], None] | None = None
) -> dict[str, str]:
    """Write data files and README.md under ``directory``; returns split -> relative path."""
    from pathlib import Path

    root = Path(directory)
    (root / "data").mkdir(parents=True, exist_ok=True)
    fmt = export.spec.format
    handles = {split: (root / data_path(export, split)).open("wb") for split in SPLITS}
    try:
        writers = {split: WRITERS[fmt](handles[split], export.columns) for split in SPLITS}
        for batch in _batches(export):
            for split in SPLITS:
                _write(export, writers[split], _rows(batch, split))
            if progress is not None:
                progress(len(batch))
        for writer in writers.values():
            writer.close()
    finally:
        for handle in handles.values():
            handle.close()
    files = {}
    for split in SPLITS:
        if export.stats.rows[split] or split == "train":
            files[split] = data_path(export, split)
        else:
            (root / data_path(export, split)).unlink()
    (root / "README.md").write_text(render_card(export=export, files=files), encoding="utf-8")
    return files


def write_file(export: PreparedExport, path: Any, *, progress: Callable[[int], None] | None = None) -> None:
    """All rows in one file (with the ``split`` column when metadata is on)."""
    with open(path, "wb") as handle:
        writer = WRITERS[export.spec.format](handle, export.columns)
        for batch in _batches(export):
            _write(export, writer, _rows(batch, "all"))
            if progress is not None:
                progress(len(batch))
        writer.close()


def preview(export: PreparedExport, *, limit: int = 5) -> tuple[list[dict[str, Any]], str]:
    """The first rows (as dicts) and the card of the whole export (one full pass, nothing written)."""
    first: list[dict[str, Any]] = []
    names = [c.name for c in export.columns]
    for batch in export.batches():
        for _, values in batch:
            if len(first) < limit:
                first.append(dict(zip(names, values, strict=True)))
    files = {split: data_path(export, split) for split in SPLITS if export.stats.rows[split]}
    return first, render_card(export=export, files=files or {"train": data_path(export, "train")})


def filename(export: PreparedExport, *, archive: bool, split: str = "all") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    base = f"{export.project.slug}-{export.kind}-{stamp}"
    if archive:
        return base + ".zip"
    return base + ("" if split == "all" else f"-{split}") + export.extension


def iter_rows(batches: Iterable[list[tuple[str, tuple[Any, ...]]]]) -> Iterator[tuple[Any, ...]]:
    for batch in batches:
        for _, values in batch:
            yield values
