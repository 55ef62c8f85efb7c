"""Self-referencing models convert on both converter paths (no infinite recursion)."""

from __future__ import annotations

import attrs
import pytest

from zigziik import DecodeError
from zigziik._convert import json_model, make_converter, structure


@json_model()
@attrs.frozen
class Node:
    name: str | None = None
    children: list[Node] = attrs.field(factory=list)
    parent: Node | None = None


@pytest.mark.parametrize("detailed", [False, True])
def test_recursive_model(detailed: bool) -> None:
    conv = make_converter(detailed_validation=detailed)
    node = conv.structure(
        {
            "name": "a",
            "children": [{"name": "b", "children": [{"name": "c"}]}],
            "parent": {"name": "p"},
        },
        Node,
    )
    assert node.children[0].children[0] == Node(name="c")
    assert type(node.parent) is Node
    assert node.parent.name == "p"


def test_recursive_model_errors_name_the_path() -> None:
    with pytest.raises(DecodeError, match="children"):
        structure({"children": [{"children": [{"name": 5}]}]}, Node)
