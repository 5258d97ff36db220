"""Dataset readers and validation."""

from slmstack.data.readers import read_examples, read_records
from slmstack.data.splits import stratified_split
from slmstack.data.validation import drop_duplicates, refuse_unusable_rows, validate_examples

__all__ = [
    "drop_duplicates",
    "read_examples",
    "read_records",
    "refuse_unusable_rows",
    "stratified_split",
    "validate_examples",
]
