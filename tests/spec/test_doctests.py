"""The examples in the spec layer's docstrings run as tests."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from sweeper.search import samplers
from sweeper.spec import loader as specyaml
from sweeper.spec import reader as spec
from sweeper.spec import space


@pytest.mark.parametrize("module", [spec, space, samplers, specyaml], ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0
