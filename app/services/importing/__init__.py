"""Importing prompts, pairs, demonstrations and labelled preference data, all or nothing:
schema (kinds, fields, problems), read (file formats), parse (validation), store, preferences.
"""

from app.services.importing.parse import ParsedRow, parse_rows
from app.services.importing.preferences import IMPORT_RATER, import_preferences, parse_hh
from app.services.importing.schema import ImportFailed, ImportKind, ImportProblem, ImportReport
from app.services.importing.store import import_file

__all__ = [
    "IMPORT_RATER",
    "ImportFailed",
    "ImportKind",
    "ImportProblem",
    "ImportReport",
    "ParsedRow",
    "import_file",
    "import_preferences",
    "parse_hh",
    "parse_rows",
]
