"""Named registries: the one way frugalml picks a strategy, a model or a layer rule by a string in parameters.

A :class:`Registry` maps names to objects (functions, classes, specs). It refuses a duplicate name unless told
to replace it, and an unknown name is a :class:`~frugalml.errors.ParameterError` that lists what exists, so a
typo in ``parameters.yml`` fails with the choices, before any work. Every stage's registry is one of these
(``register_x`` / ``create_x`` in the architecture's words)::

    FOLD_MODELS: Registry[FoldModel] = Registry("fold model", key="clean.models")

    @FOLD_MODELS.register("naive_bayes")
    def naive_bayes(...): ...

    FOLD_MODELS.get("naive_bayes")
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from frugalml.errors import ParameterError

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Registry(Generic[T]):
    """Name -> object, with duplicate refusal and named lookup errors.

    Args:
        kind: What the entries are, in the user's words ("fold model", "labelling function").
        key: The parameter that names entries, quoted in errors (e.g. ``clean.models``).
        loader: Called once before the first lookup (imports the modules that register the built-ins).
    """

    def __init__(self, kind: str, *, key: str | None = None, loader: Callable[[], object] | None = None) -> None:
        self.kind = kind
        self.key = key
        self._entries: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._loader is not None
            self._loader()

    def add(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Register ``entry`` under ``name``.

        Args:
            name: The name parameters use.
            entry: The object.
            replace: Allow replacing an entry of the same name.

        Returns:
            The entry, unchanged.

        Raises:
            ParameterError: When the name is taken and ``replace`` is false, or the name is not a non-empty string.
        """
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and not replace:
            raise ParameterError(
                f"a {self.kind} named '{name}' is already registered (pass replace=True to replace it)"
            )
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator form of :meth:`add` (default name: the object's ``__name__``).

        Args:
            name: The name parameters use.
            replace: Allow replacing an entry of the same name.

        Returns:
            A decorator that registers and returns the object unchanged.
        """

        def decorator(entry: T) -> T:
            return self.add(name or str(getattr(entry, "__name__", "")), entry, replace=replace)

        return decorator

    def remove(self, name: str) -> None:
        """Forget an entry (tests, notebooks); unknown names are ignored."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry named ``name``.

        Raises:
            ParameterError: For an unknown name, listing the registered ones.
        """
        self._ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            where = f"{self.key}: " if self.key else ""
            raise ParameterError(f"{where}unknown {self.kind} {name!r}; registered: {sorted(self._entries)}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._ensure_loaded()
        return sorted(self._entries)

    def items(self) -> dict[str, T]:
        """A copy of name -> entry."""
        self._ensure_loaded()
        return dict(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)


class TypeRegistry(Generic[T]):
    """Class -> rule, looked up along the method resolution order (Opacus' per-layer registrations).

    ``lookup(type(module))`` finds the rule registered for the module's class or its nearest registered base,
    so a subclass of ``nn.Linear`` uses the ``nn.Linear`` rule unless it registers its own.

    Args:
        kind: What the rules are ("norm sampler").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._rules: dict[type, T] = {}

    def register(self, *classes: type, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register the rule for each of ``classes``.

        Raises:
            ParameterError: When a class already has a rule and ``replace`` is false.
        """
        if not classes:
            raise ParameterError(f"register a {self.kind} for at least one class")

        def decorator(rule: T) -> T:
            for cls in classes:
                if cls in self._rules and not replace:
                    raise ParameterError(
                        f"a {self.kind} for {cls.__module__}.{cls.__qualname__} is already registered "
                        "(pass replace=True to replace it)"
                    )
            for cls in classes:
                self._rules[cls] = rule
            return rule

        return decorator

    def remove(self, cls: type) -> None:
        """Forget the rule of ``cls`` (tests)."""
        self._rules.pop(cls, None)

    def lookup(self, cls: type) -> T | None:
        """The rule for ``cls`` or its nearest registered base class; None when there is none."""
        for base in cls.__mro__:
            if base in self._rules:
                return self._rules[base]
        return None

    def classes(self) -> list[type]:
        """The classes with a rule."""
        return list(self._rules)
