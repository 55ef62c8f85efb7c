"""The fast path and the detailed cattrs path agree on every model, for any JSON.

`ModelConverter.structure` runs the generated fast path and only on a failure the detailed
path, to explain it. The README promises both accept exactly the same input: for every model
of both APIs, each input (shaped after the model's fields, with wrong types, nulls, quirks and
missing keys mixed in) gives the same model on both paths, or both refuse it.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from datetime import datetime, time
from decimal import Decimal
from typing import Any, get_args, get_origin

import attrs
import cattrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zigziik._convert import ModelConverter
from zigziik._jsonstyle import json_key, style_of
from zigziik.zigna import _convert as zigna_convert
from zigziik.zigna import models as zigna_models
from zigziik.ziik import _convert as ziik_convert
from zigziik.ziik import models as ziik_models

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["1", "7", "900", "2400", "2016-01-31T12:00:00", "0001-01-01T00:00:00"]),
)
ANY_JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def _models(module: types.ModuleType) -> list[type]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if attrs.has(cls) and cls.__module__ == module.__name__
    ]


CASES = [(zigna_convert.converter, cls) for cls in _models(zigna_models)] + [
    (ziik_convert.converter, cls) for cls in _models(ziik_models)
]


def _good(tp: Any, depth: int) -> st.SearchStrategy[Any]:
    """JSON a field of type ``tp`` documents (and the quirks it accepts)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_good(arg, depth) for arg in get_args(tp)))
    if tp is type(None):
        return st.none()
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        return st.lists(_good(item, depth + 1), max_size=2) | st.sampled_from([None, {}])
    if origin is typing.Literal:
        return st.sampled_from(get_args(tp))
    if attrs.has(tp):
        return _object(tp, depth + 1) if depth < 3 else st.sampled_from([None, {}, []])
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from([m.value for m in tp]) | st.integers(-3, 60)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=6),
        int: st.integers(min_value=-5, max_value=3000),
        bool: st.booleans(),
        float: st.floats(allow_nan=False) | st.integers(),
        Decimal: st.decimals(allow_nan=False, allow_infinity=False, places=2) | st.integers(),
        datetime: st.sampled_from(
            ["2016-01-31T12:00:00", "2016-01-31 12:00", "0001-01-01T00:00:00"]
        )
        | st.integers(0, 2**31),
        time: st.sampled_from(["900", "0", "2400", "1730", 900]),
    }
    return simple.get(tp, ANY_JSON)


def _object(cls: type, depth: int = 0) -> st.SearchStrategy[Any]:
    attrs.resolve_types(cls)
    style = style_of(cls)
    fields = {
        json_key(field, style): st.one_of(_good(field.type, depth), ANY_JSON)
        for field in attrs.fields(cls)
    }
    return st.fixed_dictionaries({}, optional=fields)


def _outcome(conv: cattrs.Converter, data: Any, cls: type) -> tuple[str, Any]:
    try:
        value = conv.structure(data, cls)
    except Exception as exc:  # a refusal: which exception does not matter, only that
        return "refused", type(exc).__name__
    return "ok", value


@pytest.mark.parametrize(("conv", "cls"), CASES, ids=[cls.__name__ for _, cls in CASES])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_and_detailed_paths_agree(
    conv: ModelConverter, cls: type, data: st.DataObject
) -> None:
    value = data.draw(_object(cls) | ANY_JSON, label="json")
    fast = _outcome(conv.fast, value, cls)
    detailed = _outcome(conv.detailed, value, cls)
    assert fast[0] == detailed[0], (fast, detailed)
    if fast[0] == "ok":
        assert fast[1] == detailed[1]
        assert (
            attrs.asdict(fast[1], recurse=False).keys()
            == attrs.asdict(detailed[1], recurse=False).keys()
        )
        assert _types(fast[1]) == _types(detailed[1])


def _types(value: Any) -> Any:
    """The value's shape with every leaf's type (``5 == IntEnum(5)``: types must match too)."""
    if attrs.has(type(value)):
        return (
            type(value),
            {f.name: _types(getattr(value, f.name)) for f in attrs.fields(type(value))},
        )
    if isinstance(value, list):
        return [_types(item) for item in value]
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    return type(value)


def test_every_model_is_covered() -> None:
    names = {cls.__name__ for _, cls in CASES}
    assert {"Order", "OrderPage", "Picture", "Unit", "OfficeHours", "NewUnit", "UnitPatch"} <= names
