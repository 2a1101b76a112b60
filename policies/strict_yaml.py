"""YAML for configuration people write by hand: safe, and a duplicated key is an error."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["StrictLoader", "load_strict"]


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise resolve silently
    to the last one — a rule or a price that quietly never applies."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_strict(text: str) -> Any:
    """Parse `text`; raises yaml.YAMLError (duplicate keys included) with the position."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
