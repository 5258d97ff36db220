"""Dataset readers and validation."""

from slmstack.data.readers import read_examples, read_records
from slmstack.data.splits import stratified_split
from slmstack.data.validation import validate_examples

__all__ = ["read_examples", "read_records", "stratified_split", "validate_examples"]
