"""Hypothesis strategies shared by the codec property tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Any JSON value, small: what a confused or hostile upstream may put in any field.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
