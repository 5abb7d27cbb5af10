"""Session stores: :class:`SessionStore` is the interface, SQLite the embedded default."""

from .base import (
    ConsumeOutcome,
    ConsumeResult,
    SessionRecord,
    SessionStore,
    StoreUnavailable,
    UsageTotals,
)
from .sqlite import SQLiteStore

__all__ = [
    "ConsumeOutcome",
    "ConsumeResult",
    "SessionRecord",
    "SessionStore",
    "SQLiteStore",
    "StoreUnavailable",
    "UsageTotals",
]
