"""Zigna's converter: the core's rules plus Zigna's quirks (``_hooks``)."""

from __future__ import annotations

from .._convert import ModelConverter
from ._hooks import register_zigna_hooks

__all__ = ["converter", "decode_json", "structure", "unstructure"]

converter = ModelConverter(register_zigna_hooks)

structure = converter.structure
unstructure = converter.unstructure
decode_json = converter.decode_json
