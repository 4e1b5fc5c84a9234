"""A plugin table: built-ins listed by name and made on first use, plus third-party plugins
from a packaging entry point group, loaded once when first needed.

Formats and merge strategies each keep one; their modules hold the literal table of built-ins
(STYLE: explicit tables, no registration by import side effect). A name registered twice is an
error, never a silent overwrite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from git_theta.errors import ConfigError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["Registry"]

T = TypeVar("T")


def entry_points(group: str) -> Iterable[EntryPoint]:
    """The installed entry points of `group`. importlib.metadata is imported here, on first
    use: it costs ~30 ms, and most commands (the filter above all) never read plugins."""
    from importlib.metadata import entry_points as installed

    return installed(group=group)


class Registry(Generic[T]):
    """Plugins of one kind.

    Args:
        kind: what a plugin is, for messages ("format", "merge strategy").
        group: the entry point group third-party plugins register under.
        base: the class every plugin must be an instance of (often abstract, hence `type`).
        builtin: name -> factory, in the order `__iter__` yields them.
    """

    def __init__(
        self, kind: str, group: str, base: type, builtin: Mapping[str, Callable[[], T]]
    ) -> None:
        self._kind = kind
        self._group = group
        self._base = base
        self._builtin = dict(builtin)
        self._made: dict[str, T] = {}
        self._plugins: dict[str, T] | None = None

    def _make(self, name: str) -> T:
        if name not in self._made:
            self._made[name] = self._builtin[name]()
        return self._made[name]

    def plugins(self) -> dict[str, T]:
        """Third-party plugins by name (entry points are read on the first call only)."""
        if self._plugins is None:
            table: dict[str, T] = {}
            for ep in entry_points(group=self._group):
                if ep.name in self._builtin or ep.name in table:
                    raise ConfigError(
                        f"{self._kind} {ep.name!r} from {ep.value} is already registered; "
                        "rename the plugin"
                    )
                plugin = ep.load()()
                if not isinstance(plugin, self._base):
                    raise ConfigError(
                        f"entry point {ep.value} does not make a git_theta {self._base.__name__}"
                    )
                table[ep.name] = cast(T, plugin)
            self._plugins = table
        return self._plugins

    def find(self, name: str) -> T | None:
        """The plugin registered as `name`, or None."""
        if name in self._builtin:
            return self._make(name)
        return self.plugins().get(name)

    def names(self) -> list[str]:
        """Built-in names in table order, then plugin names sorted."""
        return [*self._builtin, *sorted(self.plugins())]

    def items(self) -> Iterator[tuple[str, T]]:
        """(registered name, plugin): built-ins in table order, each made only when reached,
        then plugins."""
        for name in self._builtin:
            yield name, self._make(name)
        yield from self.plugins().items()

    def __iter__(self) -> Iterator[T]:
        return (plugin for _, plugin in self.items())
