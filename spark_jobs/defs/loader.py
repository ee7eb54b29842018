"""Load every YAML file under the definitions folder into one validated :class:`Definitions`.

YAML is composed node by node so every value keeps its line. Every problem, from a syntax error
to a cycle between SQL views, becomes one line ``file:line path: value what-is-wrong``; all of
them are raised together, sorted by file and line, as one DefinitionError. Nothing else escapes:
definitions come from many teams, and a bad one must read as a message, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from spark_jobs.defs.models import (
    Definitions,
    FeatureSet,
    Invalid,
    Loc,
    Source,
    TrainingSet,
    check_name,
    show,
    unknown_field,
)
from spark_jobs.defs.sql_guard import view_references
from spark_jobs.errors import DefinitionError

SECTIONS: dict[str, type[Source] | type[FeatureSet] | type[TrainingSet]] = {
    "sources": Source,
    "feature_sets": FeatureSet,
    "training_sets": TrainingSet,
}
_SINGULAR = {"sources": "source", "feature_sets": "feature set", "training_sets": "training set"}

# Definitions files are small; only an alias bomb ("billion laughs") gets near this.
_MAX_VALUES = 200_000


def load_definitions(
    defs_dir: str | os.PathLike[str], *, sql_dir: str | os.PathLike[str] | None = None, data_root: str = "."
) -> Definitions:
    """Read and check every ``*.yaml`` / ``*.yml`` under `defs_dir` (recursively, sorted).

    SQL views are read from `sql_dir` (default: ``sql`` next to `defs_dir`); ``${data_root}`` in
    source paths becomes `data_root`, as given. Raises DefinitionError listing every problem.
    """
    root = Path(defs_dir)
    if not root.is_dir():
        raise DefinitionError(f"{_shown(root)}: no such definitions folder")
    sql_root = Path(sql_dir) if sql_dir is not None else root.resolve().parent / "sql"
    return _Loader(root, sql_root, str(data_root)).run()


@dataclass
class _Document:
    file: str  # as shown in messages
    data: Any
    lines: dict[Loc, int]


@dataclass(frozen=True)
class _Entry:
    """One named definition (a source, feature set or training set) in one file."""

    kind: str
    name: str
    raw: Any
    doc: _Document

    @property
    def loc(self) -> Loc:
        return (self.kind, self.name)


class _Report:
    """The problems found so far, one message line each."""

    def __init__(self) -> None:
        self._lines: set[tuple[str, int, str]] = set()

    def at_line(self, file: str, line: int, text: str) -> None:
        self._lines.add((file, line, f"{file}:{line}{text}"))

    def add(self, doc: _Document, loc: Loc, message: str) -> None:
        path = _existing_path(doc.data, loc)
        line = next((doc.lines[path[:k]] for k in range(len(path), -1, -1) if path[:k] in doc.lines), 1)
        self.at_line(doc.file, line, f" {_dotted(path, doc.data)}: {message}" if path else f": {message}")

    def raise_any(self) -> None:
        if self._lines:
            raise DefinitionError.collected([text for _, _, text in sorted(self._lines)])


@dataclass
class _Loader:
    root: Path
    sql_dir: Path
    data_root: str
    report: _Report = field(default_factory=_Report)
    files: dict[str, str] = field(default_factory=dict)
    entries: dict[str, dict[str, _Entry]] = field(default_factory=lambda: {kind: {} for kind in SECTIONS})
    built: dict[str, dict[str, BaseModel]] = field(default_factory=lambda: {kind: {} for kind in SECTIONS})
    # Names that are defined but invalid: references to them are not reported a second time.
    invalid: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in SECTIONS})
    # Sections some file holds but not as a mapping: names in them are unknown, so references are not checked.
    unreadable: set[str] = field(default_factory=set)

    def run(self) -> Definitions:
        for path in _yaml_files(self.root):
            doc = self._read_document(path)
            if doc is not None:
                self._collect(doc)
        for entry in self.entries["sources"].values():
            self._build(entry, self._source(entry))
        sources = {} if "sources" in self.unreadable else {"sources": set(self.entries["sources"])}
        for entry in self.entries["feature_sets"].values():
            self._build(entry, self._model(entry, sources))
        context = {
            **sources,
            "feature_sets": self.built["feature_sets"],
            "invalid_feature_sets": self.invalid["feature_sets"],
            "feature_sets_unreadable": "feature_sets" in self.unreadable,
        }
        for entry in self.entries["training_sets"].values():
            self._build(entry, self._model(entry, context))
        definitions = self._definitions()
        self.report.raise_any()
        assert definitions is not None  # every failure to build was reported above
        return definitions

    # -- files ---------------------------------------------------------------------------------

    def _read_document(self, path: Path) -> _Document | None:
        file = _shown(path)
        text = self._read_text(path, file, f"{self.root.resolve().name}/{path.relative_to(self.root).as_posix()}")
        if text is None:
            return None
        try:
            data, lines = _parse_yaml(text)
        except _YamlError as exc:
            self.report.at_line(file, exc.line, f": YAML syntax error: {exc.message}")
            return None
        return _Document(file, data, lines)

    def _read_text(self, path: Path, file: str, key: str) -> str | None:
        """The file's text, its hash recorded under `key`; None (reported) when unreadable."""
        try:
            content = path.read_bytes()
        except OSError as exc:
            self.report.at_line(file, 1, f": cannot read: {exc.strerror or exc}")
            return None
        self.files[key] = hashlib.sha256(content).hexdigest()
        try:
            return content.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = content.count(b"\n", 0, exc.start) + 1
            self.report.at_line(file, line, f": not UTF-8 text (byte {content[exc.start]:#04x})")
            return None

    def _collect(self, doc: _Document) -> None:
        if doc.data is None:
            return
        if not isinstance(doc.data, dict):
            self.report.add(doc, (), f"{show(doc.data)}: a definitions file is a mapping of {', '.join(SECTIONS)}")
            return
        for kind, body in doc.data.items():
            if kind not in SECTIONS:
                self.report.add(doc, (kind,), unknown_field(kind, list(SECTIONS)))
            elif isinstance(body, dict):
                for name, raw in body.items():
                    self._collect_entry(_Entry(kind, name, raw, doc))
            elif body is not None:
                self.report.add(doc, (kind,), f"{show(body)} is not valid: {kind} is a mapping of name -> definition")
                self.unreadable.add(kind)

    def _collect_entry(self, entry: _Entry) -> None:
        try:
            if not isinstance(entry.name, str):
                raise ValueError(f"{show(entry.name)} is not a valid name: a name is a text like user_activity")
            check_name(entry.name)
        except ValueError as exc:
            self.report.add(entry.doc, entry.loc, str(exc))
            return
        first = self.entries[entry.kind].get(entry.name)
        if first is None:
            self.entries[entry.kind][entry.name] = entry
            return
        where = f"{first.doc.file}:{first.doc.lines.get(first.loc, 1)}"
        unique = f"{_SINGULAR[entry.kind]} names are unique"
        self.report.add(entry.doc, entry.loc, f"{entry.name} is defined twice: also in {where} ({unique})")

    # -- models --------------------------------------------------------------------------------

    def _source(self, entry: _Entry) -> BaseModel | None:
        data = self._entry_data(entry)
        if data is None:
            return None
        if isinstance(data.get("path"), str):
            data["path"] = data["path"].replace("${data_root}", self.data_root)
        if isinstance(data.get("sql"), str):
            text = self._read_sql(entry, data["sql"])
            if text is None:
                return None
            data["sql_file"], data["sql"] = data["sql"], text
        source = self._validate(entry, data)
        if not isinstance(source, Source) or source.sql is None:
            return source
        try:
            return source.model_copy(update={"depends_on": view_references(source.sql, self.entries["sources"])})
        except ValueError as exc:
            if "sources" not in self.unreadable:  # else the missing name may be in the unreadable section
                self.report.add(entry.doc, (*entry.loc, "sql"), f"{show(source.sql_file)} {exc}")
            return None

    def _model(self, entry: _Entry, context: dict[str, Any] | None = None) -> BaseModel | None:
        data = self._entry_data(entry)
        return None if data is None else self._validate(entry, data, context)

    def _read_sql(self, entry: _Entry, ref: str) -> str | None:
        loc = (*entry.loc, "sql")
        relative = PurePosixPath(ref)
        path = self.sql_dir / relative
        if not ref.strip() or relative.is_absolute() or ".." in relative.parts:
            where = _shown(self.sql_dir)
            self.report.add(entry.doc, loc, f"{show(ref)} is not a file under {where}: write e.g. views.sql")
            return None
        if not path.is_file() or not path.resolve().is_relative_to(self.sql_dir.resolve()):
            self.report.add(entry.doc, loc, f"{show(ref)}: no such file under {_shown(self.sql_dir)}")
            return None
        key = f"{self.sql_dir.resolve().name}/{relative.as_posix()}"
        return self._read_text(path, _shown(path), key)

    def _entry_data(self, entry: _Entry) -> dict[Any, Any] | None:
        """The entry's YAML mapping plus the fields the loader fills in; None (reported) if wrong."""
        model = SECTIONS[entry.kind]
        if not isinstance(entry.raw, dict):
            shape = f"a {_SINGULAR[entry.kind]} is a mapping of {', '.join(model.yaml_fields())}"
            self.report.add(entry.doc, entry.loc, f"{show(entry.raw)} is not valid: {shape}")
            return None
        derived = [key for key in entry.raw if key in model.DERIVED]
        for key in derived:
            self.report.add(entry.doc, (*entry.loc, key), unknown_field(key, model.yaml_fields()))
        if derived:
            return None
        data = {**entry.raw, "name": entry.name, "file": entry.doc.file}
        if entry.kind == "training_sets":
            data["lines"] = _field_lines(entry, ("logged", "labels"))
        elif entry.kind == "feature_sets":
            data["lines"] = _field_lines(entry, "features")
        return data

    def _validate(self, entry: _Entry, data: dict[Any, Any], context: dict[str, Any] | None = None) -> BaseModel | None:
        try:
            return SECTIONS[entry.kind].model_validate(data, context=context)
        except ValidationError as exc:
            for loc, message in _problems(exc):
                self.report.add(entry.doc, (*entry.loc, *loc), message)
            return None

    def _build(self, entry: _Entry, model: BaseModel | None) -> None:
        if model is None:
            self.invalid[entry.kind].add(entry.name)
        else:
            self.built[entry.kind][entry.name] = model

    def _definitions(self) -> Definitions | None:
        try:
            # The pieces are validated again as parts of the whole; what was found broken above
            # stays known, so its consequences are not reported a second time.
            context = {
                "invalid_feature_sets": self.invalid["feature_sets"],
                "feature_sets_unreadable": "feature_sets" in self.unreadable,
            }
            return Definitions.model_validate({**self.built, "files": self.files}, context=context)
        except ValidationError as exc:
            for loc, message in _problems(exc):
                # Every cross-reference problem is located at (kind, name, ...) of one entry.
                entry = self.entries.get(str(loc[0]), {}).get(str(loc[1])) if len(loc) > 1 else None
                if entry is None:
                    self.report.at_line(_shown(self.root), 0, f": {message}")
                else:
                    self.report.add(entry.doc, loc, message)
            return None


def _field_lines(entry: _Entry, prefix: str | tuple[str, ...]) -> dict[str, int]:
    """Lines of the fields under `prefix` that are checked against data later (a training set's
    logged values and label filters, a feature's filter and column)."""
    lines = {}
    for loc, line in entry.doc.lines.items():
        if loc[: len(entry.loc)] == entry.loc and len(loc) > len(entry.loc):
            field = ".".join(str(part) for part in loc[len(entry.loc) :])
            if field.startswith(prefix):
                lines[field] = line
    return lines


# -- YAML with lines ---------------------------------------------------------------------------

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _YamlError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _parse_yaml(text: str) -> tuple[Any, dict[Loc, int]]:
    """The document's value and the line (1-based) of every path in it."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # reads the text at once: may raise for control characters
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        value = None if node is None else _Composer(loader, lines).value(node, ())
        return value, lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = f" ({exc.context}, line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise _YamlError(mark.line + 1 if mark else 1, f"{exc.problem or exc.context}{context}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise _YamlError(line, f"the character {char} is not allowed in YAML") from None
    except yaml.YAMLError as exc:
        raise _YamlError(1, " ".join(str(exc).split())) from None
    except RecursionError:
        raise _YamlError(1, "values are nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


class _Composer:
    """Builds plain values from YAML nodes, recording the line of every path on the way."""

    def __init__(self, loader: yaml.SafeLoader, lines: dict[Loc, int]) -> None:
        self.loader = loader
        self.lines = lines
        self.count = 0
        self.open: set[int] = set()  # nodes being built: an alias back to one is a loop

    def value(self, node: yaml.Node, path: Loc) -> Any:
        line = node.start_mark.line + 1
        self.count += 1
        if self.count > _MAX_VALUES:
            raise _YamlError(line, f"more than {_MAX_VALUES} values: are aliases expanding?")
        self.lines.setdefault(path, line)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.open:
            raise _YamlError(line, "an alias refers to a value that contains it")
        if node.tag not in (_MAP_TAG, _SEQ_TAG):
            raise _YamlError(line, f"the tag {node.tag} is not supported")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Loc) -> dict[Any, Any]:
        written = {id(key_node) for key_node, _ in node.value}
        # Resolves `<<: *defaults` merge keys: merged pairs come first, so written keys override them.
        self.loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        seen_written: set[Any] = set()
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _YamlError(line, "a key must be a plain value, not a list or mapping")
            key = self.scalar(key_node)
            if id(key_node) in written:
                if key in seen_written:
                    raise _YamlError(line, f"the key {show(key)} appears twice in one mapping")
                seen_written.add(key)
            self.lines[(*path, key)] = line
            result[key] = self.value(value_node, (*path, key))
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
            hash(value)
        # PyYAML's constructors raise plain ValueError/TypeError for bad tagged scalars
        # (`2024-13-01`, `!!int x`); they are syntax errors here, with the line.
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise _YamlError(node.start_mark.line + 1, f"bad value {show(node.value)}: {problem}") from None
        return value


# -- messages ----------------------------------------------------------------------------------

# What a pydantic error type means, in the words of a YAML author.
_SHOULD_BE = {
    "string_type": "should be a text",
    "int_type": "should be a whole number",
    "float_type": "should be a number",
    "bool_type": "should be true or false",
    "tuple_type": "should be a list",
    "list_type": "should be a list",
    "dict_type": "should be a mapping",
    "model_type": "should be a mapping",
    "model_attributes_type": "should be a mapping",
    "string_too_short": "should not be empty",
    "too_short": "should not be empty",
}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _problems(exc: ValidationError) -> Iterator[tuple[Loc, str]]:
    """Each error of a pydantic validation as (path below the validated value, message)."""
    errors = exc.errors()
    for error in errors:
        loc = tuple(part for part in error["loc"] if part != "[key]")
        if error["type"] == "too_short" and any(_below(other["loc"], error["loc"]) for other in errors):
            continue  # the list is short because its items failed: those are the problems
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, Invalid):
            for problem in cause.problems:
                yield (*loc, *problem.loc), problem.message
        elif isinstance(cause, ValueError):  # our validators' messages start with the bad value
            yield loc, str(cause)
        elif error["type"] == "missing":
            yield loc, "missing: this field is required"
        else:
            what = _SHOULD_BE.get(error["type"]) or error["msg"].removeprefix("Input ")
            yield loc, f"{show(error.get('input'))} is not valid: {what[:1].lower()}{what[1:]}"


def _below(loc: tuple[Any, ...], parent: tuple[Any, ...]) -> bool:
    return len(loc) > len(parent) and loc[: len(parent)] == parent


def _existing_path(data: Any, loc: Loc) -> Loc:
    """`loc` as far as it exists in the YAML data, plus a missing field's name (to say what is missing)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and type(part) is int and 0 <= part < len(node):
            node = node[part]
        else:
            if isinstance(node, dict) and isinstance(part, str):
                path.append(part)
            break
        path.append(part)
    return tuple(path)


def _dotted(path: Loc, data: Any = None) -> str:
    """`path` as written in messages; a list item with a name shows it: ``features[4] (dur_avg)``."""
    text = ""
    node = data
    for part in path:
        try:
            node = node[part] if isinstance(node, (dict, list)) else None
        except (KeyError, IndexError, TypeError):
            node = None
        if type(part) is int:
            text += f"[{part}]"
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({show(node['name'])})"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part) if isinstance(part, str) else show(part)}]"
    return text


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(Path.cwd())).as_posix()
    except ValueError:
        return absolute.as_posix()


def _yaml_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix in (".yaml", ".yml")
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
