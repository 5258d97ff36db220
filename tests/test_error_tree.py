"""The error tree: every public error derives from SlmstackError and crosses processes whole."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import slmstack.errors as errors
from slmstack.errors import (
    DataError,
    MissingDependencyError,
    Overloaded,
    SlmstackError,
    WorkflowError,
)


def test_every_public_error_is_in_the_tree_and_documented():
    classes = [
        getattr(errors, n)
        for n in errors.__all__
        if inspect.isclass(getattr(errors, n))
        and issubclass(getattr(errors, n), Exception)
        and not issubclass(getattr(errors, n), Warning)
    ]
    assert all(issubclass(c, SlmstackError) for c in classes)
    named = {
        n for n, c in vars(errors).items() if inspect.isclass(c) and issubclass(c, SlmstackError)
    }
    assert named <= set(errors.__all__)  # none left out of __all__
    assert all(n in errors.__doc__ for n in named)  # and each drawn in the tree


def test_errors_pickle_with_their_message_and_attributes():
    # A worker process (batch job, Ray) sends its error to the caller by pickling it; an
    # __init__ that takes other arguments than the message must not break that.
    cases = [
        MissingDependencyError("spacy", "ner", "Tagging"),
        DataError("no text column", path="rows.csv", row=3),
        Overloaded("queue full", retry_after_s=2.5),
        WorkflowError("desk", [("steps[0]", ".skill", "unknown"), ("steps[1]", ".to", "x")]),
    ]
    for error in cases:
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert vars(back) == vars(error)
    assert pickle.loads(pickle.dumps(cases[1])).path == Path("rows.csv")
