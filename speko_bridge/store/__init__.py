"""Session stores: :class:`SessionStore` is the interface, SQLite the embedded default,
Redis (:mod:`.redis`, imported on demand) for several replicas."""

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
