"""Command-line flags made from a stage's config dataclass: one `--field-name` per field, its default the
field's, its help the field's own documentation (the docstring under it, or its trailing comment), so a new
field shows up on the command line by itself and the defaults cannot drift from the config's."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import textwrap
import typing


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """{field: its documentation}: the string literal right under the field, else the comment after it, else
    the class docstring's "name: text" (or "a, b: text") paragraph."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines, docs = source.splitlines(), _docstring_fields(cls.__doc__ or "")
    body = ast.parse(source).body[0].body
    for node, after in zip(body, [*body[1:], None]):
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        name = node.target.id
        if isinstance(after, ast.Expr) and isinstance(getattr(after, "value", None), ast.Constant) \
                and isinstance(after.value.value, str):
            docs[name] = " ".join(after.value.value.split())
        elif "#" in lines[node.end_lineno - 1]:
            docs[name] = lines[node.end_lineno - 1].split("#", 1)[1].strip()
    return docs


def _docstring_fields(doc: str) -> dict[str, str]:
    """'name: text' entries of a class docstring (an entry runs until the next one or a blank line)."""
    docs, names, text = {}, [], []
    for line in inspect.cleandoc(doc).splitlines() + [""]:
        head, sep, rest = line.partition(": ")
        starts = sep and line == line.lstrip() and all(n.strip().isidentifier() for n in head.split(","))
        if starts or not line.strip():
            docs.update(dict.fromkeys(names, " ".join(text)))
            names, text = ([n.strip() for n in head.split(",")], [rest.strip()]) if starts else ([], [])
        elif names:
            text.append(line.strip())
    return docs


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = (),
                         choices: dict[str, tuple] | None = None, aliases: dict[str, list[str]] | None = None
                         ) -> list[str]:
    """One flag per init field of dataclass `cls` (except `skip`); returns the field names added.

    bool fields get --name / --no-name; tuple-of-str fields take comma-separated text; `choices` limits
    a field's values; `aliases` adds other flags for a field. Every default is the config's own, in the help."""
    hints, docs, added = typing.get_type_hints(cls), field_docs(cls), []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip or f.name.startswith("_"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = (docs.get(f.name) or f.name.replace("_", " ")) + f" (default: {_shown(default)})"
        kind = _scalar(hints[f.name])
        kwargs = dict(dest=f.name, default=default, help=help_text.replace("%", "%%"))
        flags = [flag(f.name), *(aliases or {}).get(f.name, [])]
        if kind is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        elif kind is tuple:
            parser.add_argument(*flags, type=_comma_list, metavar="A,B", **kwargs)
        else:
            parser.add_argument(*flags, type=kind, choices=(choices or {}).get(f.name), **kwargs)
        added.append(f.name)
    return added


def config_from_args(cls, args: argparse.Namespace, names: list[str], **extra):
    """The config the parsed flags describe (ConfigError from the config when a value is out of range)."""
    return cls(**{name: getattr(args, name) for name in names}, **extra)


def _scalar(hint):
    """The argparse type of an annotation: int, float, str, bool, or tuple (comma-separated)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple
    if args and origin is not tuple:  # X | None
        return _scalar(args[0])
    return hint if hint in (int, float, str, bool) else str


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) if value else "none"
    return "none" if value is None else str(value)
