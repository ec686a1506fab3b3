"""Edits of an agent's files without a checkout, keeping comments and layout.

Each edit is applied twice: to the plain data (as the strict loader reads it),
which decides every error and the expected result, and to a ruamel round-trip
tree, which keeps comments, key order, quoting and indentation. The written
bytes must read back as the plain result, else it is a bug, reported as one.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from agentstage.errors import AgentstageError, InvalidConfig, NotFound, Problem, UsageError
from agentstage.fieldpath import Entry, FieldPath, Key, parse_path, render_path, section_of

if TYPE_CHECKING:
    from agentstage.model import Section


class Edit(NamedTuple):
    """Set *path* to *value* (a plain JSON-like value), or unset it when *remove*."""

    path: FieldPath
    value: Any = None
    remove: bool = False


_UNSET_HINT = "to remove a field use unset"


def parse_assignment(text: str) -> Edit:
    """Parse `PATH=VALUE`: VALUE is YAML 1.2, or `@FILE` for the text of a file."""
    path_text, sep, raw = text.partition("=")
    if not sep:
        raise UsageError(f"expected PATH=VALUE, got {text!r}",
                         hint=f"write e.g. model.temperature=0.3; {_UNSET_HINT}")
    path = parse_path(path_text)
    if not raw.strip():
        raise UsageError(f"no value given for {path_text}",
                         hint=f"write {path_text}=VALUE ({path_text}=\"''\" for an empty text);"
                              f" {_UNSET_HINT}")
    if raw.startswith("@"):
        return Edit(path, _read_text(raw[1:], path_text))
    from agentstage.yamlload import parse_yaml

    try:
        value = parse_yaml(raw.encode("utf-8"), "the value").data
    except InvalidConfig as exc:
        first = exc.problems[0]
        problem = first.message
        if problem == "file is empty":
            problem = "it holds only a comment"
        elif "\n" in raw.strip() and first.line is not None:
            problem += f" (line {first.line} of the value)"
        raise UsageError(f"invalid value for {path_text}: {problem}",
                         hint=f"VALUE is read as YAML: quote text, e.g. "
                              f"{quoted(path_text, raw)}") from None
    text = raw.strip()
    comment = _comment_in(raw)
    if comment is not None:
        raise UsageError(f"the value of {path_text} would lose {comment!r}: YAML reads"
                         " ' #' as the start of a comment",
                         hint=f"quote the value to keep it: {quoted(path_text, raw)}; or leave"
                              " the comment out")
    if "\n" not in text and not text.startswith(("{", "[", "'", '"')) and (
            isinstance(value, dict) or (isinstance(value, list) and text.startswith("-"))):
        what = "a mapping (': ' separates a key from its value)" if isinstance(value, dict) \
            else "a list ('- ' starts a list item)"
        inline = "{" + text + "}" if isinstance(value, dict) else "[" + text[1:].strip() + "]"
        raise UsageError(f"the value of {path_text} reads as {what}: {text!r}",
                         hint=f"for text, quote it: {quoted(path_text, raw)};"
                              f" for {'a mapping' if isinstance(value, dict) else 'a list'},"
                              f" write {_shell(f'{path_text}={inline}')}")
    return Edit(path, value)


def quoted(path_text: str, raw: str) -> str:
    """`PATH=VALUE` with VALUE quoted for YAML, and the whole quoted for a POSIX shell."""
    return _shell(f"{path_text}='{raw.strip().replace(chr(39), chr(39) * 2)}'")


def _shell(arg: str) -> str:
    import shlex

    if not any(c in arg for c in '"$`\\!\n'):
        return f'"{arg}"'
    return shlex.quote(arg)


def explain_invalid(exc: InvalidConfig, assignments: Sequence[str],
                    edits: Sequence[Edit]) -> InvalidConfig:
    """*exc* worded about the command-line values when every problem lies in a field they set
    (`invalid value for name: ...`, not a file and line the user never wrote); else *exc*.
    *edits* are what parse_assignment made of *assignments*."""
    given = [(render_path(edit.path), text.partition("=")[2], edit.value)
             for text, edit in zip(assignments, edits, strict=True)]

    def source(path: str) -> tuple[str, str, Any] | None:
        for item in given:
            if path == item[0] or path.startswith((item[0] + ".", item[0] + "[")):
                return item
        return None

    found = [(p, source(p.path)) for p in exc.problems]
    if not found or any(item is None for _, item in found):
        return exc
    lines = [f"invalid value for {p.path}: {p.message}" for p, _ in found]
    message = lines[0] if len(lines) == 1 else \
        f"{len(lines)} invalid values:\n" + "\n".join(f"  {ln}" for ln in lines)
    hint = "check the value given on the command line"
    for problem, item in found:
        if item is None:
            continue
        path, raw, value = item
        if problem.path == path and "string" in problem.message and not isinstance(value, str):
            hint = (f"VALUE is read as YAML, and {raw.strip()!r} is {_kind(value)}: for text,"
                    f" quote it: {quoted(path, raw)}")
            break
    return InvalidConfig(exc.problems, hint=hint, message=message)


def _comment_in(text: str) -> str | None:
    """The first comment YAML would drop from *text* (` #...`), or None."""
    from ruamel.yaml import YAML

    try:
        for token in YAML(typ="rt").scan(text):
            found = getattr(token, "_comment", None) or ()
            for item in found:
                for comment in item if isinstance(item, list) else [item]:
                    value = getattr(comment, "value", None)
                    if isinstance(value, str) and value.strip():
                        return value.strip()
    except Exception:  # pragma: no cover - the text parsed a moment ago
        return None
    return None


def _positional(verb: str, full: str, where: str, field: str, ident: str,
                entries: list[Any]) -> UsageError:
    """A number in [] where no entry has it for id: meant as a position, which paths never are."""
    ids = [str(e[field]) for e in entries if isinstance(e, dict) and field in e]
    shown = ", ".join(ids[:10]) + (", …" if len(ids) > 10 else "")
    hint = (f"the {field}s in {where}: {shown}" if ids else f"{where} has no entries yet") + \
        f"; e.g. {where}[{ids[0] if ids else 'ID'}]"
    return UsageError(f"cannot {verb} {full}: no entry of {where} has {field} {ident!r};"
                      f" entries are named by {field}, not by position", hint=hint)


def _read_text(name: str, path_text: str) -> str:
    from agentstage.yamlload import MAX_FILE_BYTES

    if not name:
        raise UsageError(f"no file name after '@' in the value of {path_text}",
                         hint=f"write {path_text}=@FILE to read the value from FILE")
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no file {name} (the value of {path_text})") from None
    except OSError as exc:
        raise UsageError(f"cannot read {name} (the value of {path_text}): "
                         f"{exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{name} is {len(data)} bytes, over the cap of {MAX_FILE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{name} is not UTF-8 text (the value of {path_text})",
                         hint="save the file as UTF-8") from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def apply_edits(files: Mapping[str, bytes], edits: Sequence[Edit]) -> dict[str, bytes]:
    """The agent's files (name -> bytes) after *edits*, applied in order.

    Files no edit touches keep their bytes; a file whose data ends up the same keeps
    its bytes too; unsetting a whole list section removes its file.
    """
    by_file: dict[str, tuple[Section, list[Edit]]] = {}
    for edit in edits:
        section = section_of(edit.path)
        by_file.setdefault(section.file, (section, []))[1].append(edit)
    result = dict(files)
    for name, (section, file_edits) in by_file.items():
        new = _edit_file(name, files.get(name), section, file_edits)
        if new is None:
            result.pop(name, None)
        else:
            result[name] = new
    return result


class _Gone:
    """The state of a file that an edit removed."""


_GONE = _Gone()


def _edit_file(name: str, raw: bytes | None, section: Section, edits: list[Edit]) -> bytes | None:
    from agentstage.yamlload import MAX_FILE_BYTES, parse_yaml

    for n, edit in enumerate(edits):
        if raw is not None and edit.remove and section.is_list and len(edit.path) == 1:
            # the file goes whole: what it held, even if unreadable, no longer matters
            return _edit_file(name, None, section, edits[n + 1:]) if edits[n + 1:] else None
    old: Any = _GONE
    if raw is not None:
        old = None if _only_comments(raw) else parse_yaml(raw, name).data
    plain = _Editor(name, section, rt=False).run(_copy(old), edits)
    if plain is _GONE:
        return None
    if raw is not None and old is not None and _same(plain, old):
        return raw
    if raw is not None and re.search(rb"(?m)^%YAML", raw):
        # the round-trip writer would follow the directive (1.1 reads `no` as false), the
        # loader reads YAML 1.2: the two must not disagree about the file being edited
        raise UsageError(f"cannot edit {name}: it starts with a %YAML directive, and "
                         "agentstage reads every file as YAML 1.2",
                         hint=f"remove the %YAML line from {name} (in a checkout, or with "
                              "agentstage restore), then edit again")
    yaml, tree = _load_rt(raw)
    tree = _Editor(name, section, rt=True).run(tree, edits)
    data = _dump(yaml, tree)
    if len(data) > MAX_FILE_BYTES:  # the loader's cap: a value the file cannot hold
        where = render_path(edits[0].path) if len(edits) == 1 else ""
        raise InvalidConfig([Problem(name, None, where, f"the edited file would be {len(data)} "
                                     f"bytes, over the cap of {MAX_FILE_BYTES}")],
                            hint="shorten the value, or split it")
    try:
        back = parse_yaml(data, name).data
    except InvalidConfig as exc:
        raise _bug(name, str(exc)) from None
    if not _same(back, plain):
        raise _bug(name, "it does not read back as the value set")
    return data


def _bug(name: str, what: str) -> AgentstageError:
    return AgentstageError(f"internal error: the edited {name} would be wrong: {what}",
                           hint="this is a bug in agentstage; please report it with the edit")


def _only_comments(raw: bytes) -> bool:
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())


def _kind(value: Any) -> str:
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    return "a list"


def _same(a: Any, b: Any) -> bool:
    """Equal as YAML data: types must agree (1, 1.0 and true differ); key order is ignored."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    for kind in (bool, int, float, str):
        if isinstance(a, kind) or isinstance(b, kind):
            return isinstance(a, kind) and isinstance(b, kind) and a == b
    return a is None and b is None


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _check_value(value: Any, where: str) -> None:
    """Refuse what is not plain YAML data, before anything is written."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"cannot set {where}: key {key!r} is not a string")
            _check_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"cannot set {where}: {value} is not allowed, numbers must be finite")
    elif value is not None and not isinstance(value, (str, int, bool)):
        raise UsageError(f"cannot set {where}: a {type(value).__name__} is not a YAML value")


class _Editor:
    """Applies edits to one file's data: plain (rt=False) or a ruamel tree (rt=True)."""

    def __init__(self, file: str, section: Section, rt: bool) -> None:
        self.file = file
        self.section = section
        self.rt = rt
        self.node: Callable[[Any], Any] = _to_node if rt else _copy

    def run(self, root: Any, edits: list[Edit]) -> Any:
        for edit in edits:
            root = self.apply(root, edit)
        return root

    def apply(self, root: Any, edit: Edit) -> Any:
        path, section = edit.path, self.section
        full = render_path(path)
        verb = "unset" if edit.remove else "set"
        if not edit.remove:
            _check_value(edit.value, full)
        steps = path[1:] if section.is_list else path
        if not steps:  # a whole list section: the whole file
            if edit.remove:
                return _GONE  # unsetting what is not there changes nothing
            if not isinstance(edit.value, list):
                raise UsageError(f"cannot set {full}: it is a list of entries, not"
                                 f" {_kind(edit.value)}", hint=f"e.g. {full}=[]; {_UNSET_HINT}")
            if isinstance(root, list):
                self.permute(root, edit.value, section.key)
                self.assign_into(root, edit.value, None)
                return root
            return self.node(edit.value)
        if root is _GONE or root is None:
            if edit.remove:
                return root
            root = self.node([] if section.is_list else {})
        if section.is_list and not isinstance(root, list):
            raise UsageError(f"cannot {verb} {full}: {self.file} is {_kind(root)},"
                             " not a list of entries", hint=f"fix {self.file} first")
        if not section.is_list and not isinstance(root, dict):
            raise UsageError(f"cannot {verb} {full}: {self.file} is {_kind(root)},"
                             " not a mapping of settings", hint=f"fix {self.file} first")
        offset = len(path) - len(steps)
        container: Any = root
        parent: tuple[Any, Any] | None = None
        chain: list[tuple[Any, Any]] = []  # (holder, key) of each container below root
        for n, step in enumerate(steps):
            where = render_path(path[: offset + n])
            here = render_path(path[: offset + n + 1])
            last = n == len(steps) - 1
            if isinstance(step, Key):
                if not isinstance(container, dict):
                    raise UsageError(f"cannot {verb} {full}: {where} is {_kind(container)},"
                                     " not a mapping", hint=None if edit.remove else
                                     f"to replace it, unset {where} first")
                slot: Any = step.name
                exists = slot in container
            else:
                if not isinstance(container, list):
                    raise UsageError(f"cannot {verb} {full}: {where} is {_kind(container)},"
                                     " not a list of entries")
                field = self.entry_key(path, offset + n)
                slot = self.find(container, field, step.ident, here)
                exists = slot is not None
                if not exists and step.ident.isascii() and step.ident.isdigit():
                    raise _positional(verb, full, where, field, step.ident, container)
            if last:
                if edit.remove:
                    if exists:
                        self.delete(container, slot, parent)
                        self.prune(root, chain)
                elif isinstance(step, Entry):
                    value = self.entry_value(edit.value, field, step.ident, full)
                    if exists:
                        self.replace(container, slot, value)
                    else:
                        self.append(container, None, value, parent)
                else:
                    if exists:
                        self.replace(container, slot, edit.value)
                    else:
                        self.append(container, slot, edit.value, parent)
                return root
            child = container[slot] if exists else None
            if child is None:
                if edit.remove:
                    return root  # not there: nothing to unset
                if isinstance(step, Entry):
                    if steps[n + 1:] == (Key(field),) and edit.value != step.ident:
                        raise self.missing(here)  # a rename of an entry that is not there
                    self.append(container, None, {field: step.ident}, parent)
                    slot = len(container) - 1
                else:
                    fresh: Any = [] if isinstance(steps[n + 1], Entry) else {}
                    if exists:
                        self.replace(container, slot, fresh)
                    else:
                        self.append(container, slot, fresh, parent)
            parent = (container, slot)
            chain.append(parent)
            container = container[slot]
        return root  # pragma: no cover - the loop returns at its last step

    def permute(self, entries: list[Any], value: list[Any], key: str) -> None:
        """Put *entries* in the order of the same ids in *value*, each with the comment
        lines above it, so that a reordered list does not leave its comments behind."""
        def ids(items: list[Any]) -> list[Any]:
            return [e.get(key) if isinstance(e, dict) else None for e in items]

        old, new = ids(entries), ids(value)
        if old == new or None in old or sorted(map(str, old)) != sorted(map(str, new)) \
                or len(set(old)) != len(old) or set(old) != set(new):
            return
        order = [old.index(i) for i in new]
        if not self.rt:
            entries[:] = [entries[n] for n in order]
            return
        above = {n: _get_rest(entries, n - 1) for n in range(1, len(entries))}
        tail = _get_rest(entries, len(entries) - 1)
        for n in range(len(entries)):
            _set_rest(entries, n, "")
        nodes = list(entries)
        for n, m in enumerate(order):
            entries[n] = nodes[m]
        first = above.get(order[0], "").lstrip("\n")
        if first:
            _add_pre_comments(entries, first)
        second = above.get(1, "")
        gap = second[: len(second) - len(second.lstrip("\n"))]  # what parted the first two
        for n in range(1, len(order)):
            _set_rest(entries, n - 1, above.get(order[n], gap))
        _set_rest(entries, len(entries) - 1, tail)

    def prune(self, root: Any, chain: list[tuple[Any, Any]]) -> None:
        """Remove the mappings an unset left empty, from the innermost up to an entry or a
        top-level setting: `config: {}` means no more than no `config`, and an unset of the
        last key should not leave its holder behind. (An emptied list of entries stays, as
        `actions: []`.)"""
        while chain:
            holder, key = chain[-1]
            node = holder[key]
            if node or not isinstance(node, dict) or not isinstance(holder, dict) \
                    or holder is root:
                return
            chain.pop()
            self.delete(holder, key, chain[-1] if chain else None)

    def missing(self, full: str) -> NotFound:
        return NotFound(f"no field {full} in this agent",
                        hint="'agentstage show AGENT' prints the agent's fields")

    def entry_key(self, path: FieldPath, index: int) -> str:
        """The field that names the entries of the list that path[index] selects from."""
        from agentstage.model import NESTED_KEYS

        if index == 1:
            return self.section.key
        before = path[index - 1]
        name = before.name if isinstance(before, Key) else ""
        return NESTED_KEYS.get((self.section.name, name), "id")

    def find(self, entries: list[Any], field: str, ident: str, where: str) -> int | None:
        found = [i for i, e in enumerate(entries) if isinstance(e, dict) and e.get(field) == ident]
        if len(found) > 1:
            problem = Problem(self.file, None, where,
                              f"duplicate {field} {ident!r}: cannot tell which to edit")
            raise InvalidConfig([problem], hint=f"fix {self.file} first")
        return found[0] if found else None

    def entry_value(self, value: Any, field: str, ident: str, full: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise UsageError(f"cannot set {full}: an entry is a mapping, not {_kind(value)}",
                             hint=f"e.g. {full}='{{enabled: true}}'; {_UNSET_HINT}")
        if field in value and value[field] != ident:
            raise UsageError(f"cannot set {full}: the value's {field} is {value[field]!r},"
                             f" not {ident!r}", hint=f"leave {field} out of the value, or make"
                             f" it {ident}")
        return {field: ident, **{k: v for k, v in value.items() if k != field}}

    # The three changes a container undergoes, keeping comments where they belong.

    def append(self, container: Any, key: Any, value: Any,
               parent: tuple[Any, Any] | None = None) -> None:
        node = self.node(value)
        if not self.rt:
            if isinstance(container, list):
                container.append(node)
            else:
                container[key] = node
            return
        if not container:
            self.append_first(container, key, node, parent)
            return
        keys = _keys(container)
        tail = _get_rest(container, keys[-1])
        gap = _get_rest(container, keys[-2]) if len(keys) > 1 else ""
        _set_rest(container, keys[-1], gap[: len(gap) - len(gap.lstrip("\n"))])
        if isinstance(container, list):
            container.append(node)
            key = len(container) - 1
        else:
            key = _key(key)
            container.ca.items.pop(key, None)
            container[key] = node
        _set_rest(container, key, tail)

    def append_first(self, container: Any, key: Any, node: Any,
                     parent: tuple[Any, Any] | None) -> None:
        """An empty collection, written `[]`, gets its first item: from now on a block."""
        tail = ""
        if parent is None or not _fa(parent[0]).flow_style():
            _fa(container).set_block_style()
            if parent is not None:
                tail = _get_rest(*parent)
                _set_rest(*parent, "")
        if isinstance(container, list):
            container.append(node)
        else:
            key = _key(key)
            _ca(container).items.pop(key, None)
            container[key] = node
        if tail and parent is not None:
            _set_rest(*parent, tail)

    def delete(self, container: Any, key: Any, parent: tuple[Any, Any] | None) -> None:
        if not self.rt:
            del container[key]
            return
        keys = _keys(container)
        index = keys.index(key)
        rest = _get_rest(container, key)
        if isinstance(container, dict):
            _ca(container).items.pop(key, None)
        del container[key]
        if index > 0:
            _set_rest(container, keys[index - 1], rest)
            return
        if container or parent is None:
            rest = rest.lstrip("\n")  # the blank lines separated the removed item
            if rest:
                _add_pre_comments(container, rest)
        else:
            _drop_pre_comments(container, parent)
        if not container:
            _ca(container).items.clear()
            _fa(container).set_flow_style()  # written inline, `key: []`, comments after it
            if parent is not None:
                _set_rest(parent[0], parent[1], rest)

    def replace(self, container: Any, key: Any, value: Any) -> None:
        old = container[key]
        if _same(old, value):
            return
        if (isinstance(old, dict) and isinstance(value, dict)) or (
                isinstance(old, list) and isinstance(value, list)):
            self.assign_into(old, value, (container, key))
            return
        if not self.rt:
            container[key] = self.node(value)
            return
        rest = _get_rest(container, key)
        was_block = _is_block(old)
        container[key] = _restyled(old, value)
        if was_block:
            _drop_pre_comments(old, (container, key))  # they were about the old items
        elif _is_block(container[key]):
            _drop_token(container, key)
        _set_rest(container, key, rest)

    def assign_into(self, old: Any, value: Any, parent: tuple[Any, Any] | None) -> None:
        """Make container *old* equal to *value* in place, keeping what stays the same."""
        if isinstance(old, dict):
            for key, item in value.items():
                if key in old:
                    self.replace(old, key, item)
                else:
                    self.append(old, key, item, parent)
            for key in reversed([k for k in old if k not in value]):
                self.delete(old, key, parent)  # from the end: comments above go with their key
            return
        for index, item in enumerate(value[: len(old)]):
            self.replace(old, index, item)
        for item in value[len(old):]:
            self.append(old, None, item, parent)
        while len(old) > len(value):
            self.delete(old, len(old) - 1, parent)


# ruamel helpers: a value's trailing comment lives in its holder's `ca.items`; the first
# line of it is the value's own end-of-line comment, the rest belongs to what follows.


def _ca(node: Any) -> Any:
    return node.ca


def _fa(node: Any) -> Any:
    return node.fa


def _lc(node: Any) -> Any:
    return node.lc


def _keys(container: Any) -> list[Any]:
    return list(range(len(container))) if isinstance(container, list) else list(container)


def _is_block(value: Any) -> bool:
    """A non-empty block collection, whose last item holds the comments that follow it."""
    if not isinstance(value, (dict, list)) or not value:
        return False
    return not value.fa.flow_style() if hasattr(value, "fa") else True


def _is_block_text(value: Any) -> bool:
    from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

    return isinstance(value, (LiteralScalarString, FoldedScalarString))


def _deepest(container: Any, key: Any) -> tuple[Any, Any]:
    value = container[key]
    while _is_block(value):
        container, key = value, _keys(value)[-1]
        value = container[key]
    return container, key


def _token_slot(container: Any) -> int:
    return 0 if isinstance(container, list) else 2


def _get_rest(container: Any, key: Any) -> str:
    """The comment lines after the value at *key* (deepest last item) that are not its own."""
    holder, slot = _deepest(container, key)
    entry = holder.ca.items.get(slot)
    token = entry[_token_slot(holder)] if entry else None
    if token is None:
        return ""
    value: str = token.value
    if _is_block_text(holder[slot]):
        return value
    return value.partition("\n")[2]


def _set_rest(container: Any, key: Any, rest: str) -> None:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    holder, slot = _deepest(container, key)
    pos = _token_slot(holder)
    entry = holder.ca.items.get(slot)
    token = entry[pos] if entry else None
    block = _is_block_text(holder[slot])
    head = "" if token is None or block else token.value.partition("\n")[0] + "\n"
    if not head.startswith("#") and not rest:
        if entry is not None:
            entry[pos] = None
        return
    text = head + rest if (head or block) else "\n" + rest
    if token is None:
        token = CommentToken(text, CommentMark(0), None)
        holder.ca.items.setdefault(slot, [None, None, None, None])[pos] = token
    else:
        token.value = text


def _drop_token(container: Any, key: Any) -> None:
    entry = container.ca.items.get(key)
    if entry:
        entry[_token_slot(container)] = None


def _add_pre_comments(container: Any, text: str) -> None:
    """Add comment lines before the first item of *container*."""
    comment = _ca(container).comment
    if comment is None:
        comment = _ca(container).comment = [None, None]
    if comment[1] is None:
        comment[1] = []
    comment[1].extend(_comment_lines(text))  # in place: the list is shared with the holder


def _drop_pre_comments(container: Any, parent: tuple[Any, Any]) -> None:
    # an empty token list, unlike None, makes ruamel misplace what follows
    comment = _ca(container).comment
    if comment is not None:
        comment[1] = None
    entry = _ca(parent[0]).items.get(parent[1])
    if entry and isinstance(parent[0], dict):
        entry[3] = None


def _comment_lines(text: str) -> list[Any]:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    tokens = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip(" ")
        tokens.append(CommentToken(stripped, CommentMark(len(line) - len(stripped)), None))
    return tokens


# What a literal block holds as is: YAML's printable characters, but no BOM and no
# character a reader might take for a line break; other text is written double-quoted.
_LITERAL_OK = re.compile(r"[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                         r"\U00010000-\U0010ffff]*")

_ODD_BREAKS = re.compile("[\x85\u2028\u2029]")


def _key(key: Any) -> Any:
    """A new mapping key: plain when it is a simple name, else double-quoted, since ruamel
    writes some keys plain that do not read back the same (`0?`, `:0`, U+0085)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(key, str) and not _SIMPLE_KEY.fullmatch(key):
        return DoubleQuotedScalarString(key)
    return key


def _to_node(value: Any) -> Any:
    """A ruamel node for a plain value: block collections, literal blocks for multi-line text."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

    if isinstance(value, dict):
        node = CommentedMap()
        for key, item in value.items():
            node[_key(key)] = _to_node(item)
        return node
    if isinstance(value, list):
        return CommentedSeq(_to_node(item) for item in value)
    if isinstance(value, str):
        if "\n" in value and _LITERAL_OK.fullmatch(value):
            return LiteralScalarString(value)
        if _ODD_BREAKS.search(value):
            return DoubleQuotedScalarString(value)  # ruamel folds them, unescaped, elsewhere
    return value


def _restyled(old: Any, value: Any) -> Any:
    """The node for *value* in place of *old*: in old's quotes, or folded, where that fits.

    Always a node of its own type, so ruamel's assignment does not force old's style on it.
    """
    from ruamel.yaml.scalarstring import (
        DoubleQuotedScalarString,
        FoldedScalarString,
        PlainScalarString,
        SingleQuotedScalarString,
    )

    node = _to_node(value)
    if type(node) is not str:
        return node
    if isinstance(old, (SingleQuotedScalarString, DoubleQuotedScalarString)):
        return type(old)(node)
    if isinstance(old, FoldedScalarString) and node and node == node.strip() \
            and "\n" not in node and _LITERAL_OK.fullmatch(node):
        return FoldedScalarString(node)
    return PlainScalarString(node)


# Loading and dumping with the file's own indentation.

_DEFAULT_INDENT = (2, 2, 4)  # mapping indent, dash offset, item indent: the sample repo's style


@functools.cache
def _exact_floats() -> tuple[type, type]:
    """A constructor and representer that write an untouched float back as it was written:
    ruamel's round trip re-formats floats from their value and can lose a digit
    (1.615366770918863e-123 came back as ...862e-123)."""
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.representer import RoundTripRepresenter
    from ruamel.yaml.scalarfloat import ScalarFloat

    class Constructor(RoundTripConstructor):
        def construct_yaml_float(self, node: Any) -> Any:
            value = super().construct_yaml_float(node)
            if isinstance(value, ScalarFloat):
                setattr(value, "agentstage_text", node.value)  # noqa: B010
            return value

    class Representer(RoundTripRepresenter):
        def represent_scalar_float(self, data: Any) -> Any:
            text = getattr(data, "agentstage_text", None)
            if isinstance(text, str):
                return self.represent_scalar("tag:yaml.org,2002:float", text)
            return super().represent_scalar_float(data)

    Constructor.add_constructor("tag:yaml.org,2002:float", Constructor.construct_yaml_float)
    Representer.add_representer(ScalarFloat, Representer.represent_scalar_float)
    return Constructor, Representer


def _load_rt(raw: bytes | None) -> tuple[Any, Any]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.Constructor, yaml.Representer = _exact_floats()
    yaml.preserve_quotes = True
    yaml.width = 4096
    if raw is None:
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.Emitter = _emitter(0, 2)
        return yaml, _GONE
    text = raw.decode("utf-8").removeprefix("\ufeff")
    tree = yaml.load(text)
    mapping, offset, sequence = _guess_indent(tree, text.splitlines())
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    dash, item = 0, 2
    if _is_block(tree) and isinstance(tree, list):
        top: Any = tree
        dash, item = top.lc.col, top.lc.item(0)[1]
        if item - dash < 2:
            dash, item = 0, 2
    yaml.Emitter = _emitter(dash, item)
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    yaml.explicit_start = bool(body) and body[0].startswith("---")
    yaml.explicit_end = bool(body) and body[-1].rstrip() == "..."
    return yaml, (None if tree is None else tree)


def _guess_indent(tree: Any, lines: list[str]) -> tuple[int, int, int]:
    """The indentation of nested mappings and lists, from the first of each in the file.

    Without a nested mapping, a block text's indentation tells the mapping indent.
    """
    found: dict[str, tuple[int, ...]] = {}
    todo: list[Any] = [tree]
    while todo and not ("map" in found and "seq" in found):
        node: Any = todo.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        value: Any
        for key, value in items:
            if isinstance(node, dict) and _is_block(value):
                col = _lc(node).col
                if isinstance(value, dict):
                    found.setdefault("map", (_lc(value).col - col,))
                else:
                    found.setdefault("seq", (_lc(value).col - col, _lc(value).item(0)[1] - col))
            elif isinstance(node, dict) and _is_block_text(value) and "text" not in found:
                start = _lc(node).value(key)[0] + 1
                body = [ln for ln in lines[start:start + 50] if ln.strip()][:1]
                if body:
                    margin = len(body[0]) - len(body[0].lstrip(" "))
                    found["text"] = (margin - _lc(node).key(key)[1],)
            todo.append(value)
    mapping = found.get("map", found.get("text", (_DEFAULT_INDENT[0],)))[0]
    offset, sequence = found.get("seq", _DEFAULT_INDENT[1:])
    if mapping < 1 or offset < 0 or sequence < offset + 2:
        return _DEFAULT_INDENT
    return mapping, offset, sequence


_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_ .-]*")

_EMITTERS: dict[tuple[int, int], type] = {}


def _emitter(dash: int, item: int) -> type:
    """ruamel's emitter puts a top-level list where the file had it, not one offset in."""
    cached = _EMITTERS.get((dash, item))
    if cached is not None:
        return cached
    from ruamel.yaml.emitter import RoundTripEmitter

    class Emitter(RoundTripEmitter):
        def _in_top_list(self) -> bool:
            values = self.indents.values
            return len(values) == 1 and values[0][0] is None and bool(values[0][1])

        def expect_block_sequence_item(self, first: bool = False) -> None:
            if not self._in_top_list():
                super().expect_block_sequence_item(first)
                return
            saved = self.sequence_dash_offset, self.best_sequence_indent
            self.sequence_dash_offset, self.best_sequence_indent = dash, item
            try:
                super().expect_block_sequence_item(first)
            finally:
                self.sequence_dash_offset, self.best_sequence_indent = saved

    _EMITTERS[(dash, item)] = Emitter
    return Emitter


def _dump(yaml: Any, tree: Any) -> bytes:
    import io

    out = io.StringIO()
    if isinstance(tree, (list, dict)) and not tree:  # ruamel cannot write an empty root
        comment = _ca(tree).comment
        for token in (comment[1] or []) if comment else []:
            out.write(" " * token.column + token.value if token.value.strip() else "\n")
        out.write("[]\n" if isinstance(tree, list) else "{}\n")
        return out.getvalue().encode("utf-8")
    yaml.dump(tree, out)
    return out.getvalue().encode("utf-8")

