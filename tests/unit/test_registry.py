from __future__ import annotations

import pytest

from git_theta.errors import ConfigError
from git_theta.formats import all_formats, get_format
from git_theta.merges import all_strategies, get_strategy
from git_theta.registry import Registry


class Plugin:
    def __init__(self, name: str) -> None:
        self.name = name


def test_builtins_are_made_once_on_first_use_in_table_order():
    made: list[str] = []

    def factory(name: str):
        def make() -> Plugin:
            made.append(name)
            return Plugin(name)

        return make

    registry: Registry[Plugin] = Registry(
        "thing", "git_theta.tests.none", Plugin, {"b": factory("b"), "a": factory("a")}
    )
    assert made == []
    assert registry.find("a") is registry.find("a")
    assert made == ["a"]
    assert [name for name, _ in registry.items()] == ["b", "a"]
    assert registry.find("missing") is None
    assert registry.names() == ["b", "a"]


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match="known formats: flax, npz, pytorch, safetensors"):
        get_format("onnx")
    with pytest.raises(ConfigError, match=r"unknown merge strategy 'nope' \(valid: take-ours, "):
        get_strategy("nope")
    assert list(all_formats()) == ["safetensors", "pytorch", "npz", "flax"]
    assert "ties" in all_strategies()
