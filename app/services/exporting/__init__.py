"""Exports of comparisons, rankings and demonstrations as JSONL, Parquet or CSV, with a dataset
card: columns, writers (formats), prepare (rows, split, stats), demos (SFT rows with their
provenance), rankings (the native rankings format), card (README.md), outputs (streams, files).
"""

from app.services.exporting.card import render_card
from app.services.exporting.columns import Column, ExportError, Pseudonyms, prompt_as_text, transcript
from app.services.exporting.demos import DemoStats, prepare_demos
from app.services.exporting.outputs import (
    SPLITS,
    data_path,
    filename,
    iter_rows,
    preview,
    stream_archive,
    stream_file,
    write_directory,
    write_file,
)
from app.services.exporting.prepare import (
    CardStats,
    PreparedExport,
    prepare_comparisons,
    split_of,
)
from app.services.exporting.rankings import prepare_rankings
from app.services.exporting.writers import WRITERS

__all__ = [
    "SPLITS",
    "WRITERS",
    "CardStats",
    "Column",
    "DemoStats",
    "ExportError",
    "PreparedExport",
    "Pseudonyms",
    "data_path",
    "filename",
    "iter_rows",
    "preview",
    "prepare_comparisons",
    "prepare_demos",
    "prepare_rankings",
    "prompt_as_text",
    "render_card",
    "split_of",
    "stream_archive",
    "stream_file",
    "transcript",
    "write_directory",
    "write_file",
]
