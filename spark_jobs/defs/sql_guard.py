"""Reading the SQL text of definitions: filters and views, before any engine sees them.

Definitions are untrusted, and Spark SQL can call into the JVM (``reflect``), read the
environment (``${env:HOME}`` is substituted before parsing) or differ on every run (``rand()``).
So the text is tokenized the way Spark's lexer does it (strings with backslash escapes, raw
strings, `quoted names`, ``/* */`` and ``--`` comments, numbers before names) and
parsed into calls: a name, possibly qualified and quoted, followed by ``(``, at any depth of
nesting; a type after ``CAST(... AS`` or ``::`` is no call; a keyword that opens parentheses
(``IN (``, ``OVER (``, ``AS (``) is none either. Every call must be to a function of the
allow-list (:mod:`spark_jobs.defs.sql_allow_list`). Where readers differ, the text is refused
rather than guessed at: a ``--`` comment continued by a trailing backslash (code to Sail, comment
to Spark), a comment inside a comment, a quote escaped by a backslash inside a string.

Errors are :class:`SqlError` (a ValueError) with the offset of the problem, so callers can name
the line; messages say what is wrong and why, and never start with the text itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from typing import NamedTuple

from spark_jobs.defs.sql_allow_list import AGGREGATES, BARE_FUNCTIONS, FORBIDDEN, TABLE_FUNCTIONS, WINDOW
from spark_jobs.defs.sql_allow_list import allowed_functions

DOCS = "docs/definitions.md"


class Token(NamedTuple):
    kind: str  # word | quoted (`name`) | string | number | symbol
    text: str  # as written
    pos: int  # offset in the SQL text

    @property
    def upper(self) -> str:
        """The keyword this token may be: the upper-cased text of a plain word, else ""."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """The name a word or `quoted` token stands for (quotes removed), lower case."""
        if self.kind == "quoted":
            return self.text[1:-1].replace("``", "`").lower()
        if self.kind == "string" and self.text.startswith('"'):  # an identifier if double quotes are
            return self.text[1:-1].lower()
        return self.text.lower()


class SqlError(ValueError):
    def __init__(self, pos: int, what: str) -> None:
        super().__init__(what)
        self.pos = pos
        self.what = what


class SqlRefused(SqlError):
    """Text that could be read, but is refused for what it would make an engine do."""


def line_of(sql: str, pos: int) -> int:
    return sql.count("\n", 0, pos) + 1


# -- tokens ------------------------------------------------------------------------------------

_OPERATORS = ("<=>", ">>>", "<>", "!=", "<=", ">=", "==", "=>", "->", "::", "||", "|>", ">>", "<<", "&&")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")


def tokenize(sql: str, *, comments: bool = True) -> list[Token]:
    """The tokens of `sql`, comments and spaces dropped; raises SqlError on what cannot be read.

    Refused everywhere: ``${`` (Spark substitutes variables, system properties and environment
    variables there before reading the text), characters outside ASCII except in strings,
    quoted names and comments, hints, and parentheses or quotes that do not match.
    """
    if "${" in sql:
        raise SqlRefused(
            sql.index("${"),
            "${...} is not allowed: Spark replaces it with a variable, a system property or an environment"
            " variable before reading the SQL (write concat('$', '{') for the text)",
        )
    tokens: list[Token] = []
    depth = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in " \t\r\n":
            i += 1
            continue
        if sql.startswith("--", i) or sql.startswith("/*", i):
            end = _comment_end(sql, i)
            if not comments:
                raise SqlError(i, "comments are not allowed here")
            i = end
            continue
        if c in "'\"" or (c in "rR" and i + 1 < n and sql[i + 1] in "'\""):
            end = _string_end(sql, i)
            tokens.append(Token("string", sql[i:end], i))
            i = end
            continue
        if c == "`":
            end = i + 1
            while True:
                end = sql.find("`", end)
                if end < 0:
                    raise SqlError(i, "the quote ` is never closed")
                if not sql.startswith("``", end):
                    break
                end += 2
            tokens.append(Token("quoted", sql[i : end + 1], i))
            i = end + 1
            continue
        if c in _NAME_CHARS or (c == "." and i + 1 < n and sql[i + 1] in _DIGITS):
            word_end = i
            while word_end < n and sql[word_end] in _NAME_CHARS:
                word_end += 1
            number_end = _number_end(sql, i)
            if number_end >= word_end and number_end > i:  # as Spark's lexer: the longer match, a number on a tie
                tokens.append(Token("number", sql[i:number_end], i))
                i = number_end
            else:
                tokens.append(Token("word", sql[i:word_end], i))
                i = word_end
            continue
        if not c.isascii() or not c.isprintable():
            raise SqlRefused(i, f"the character {c!r} is not allowed outside a string or a `quoted name`")
        text = next((op for op in _OPERATORS if sql.startswith(op, i)), c)
        depth += {"(": 1, ")": -1}.get(text, 0)
        if depth < 0:
            raise SqlError(i, "a ) has no matching (")
        tokens.append(Token("symbol", text, i))
        i += len(text)
    if depth:
        raise SqlError(n, "a ( is never closed")
    return tokens


def _comment_end(sql: str, i: int) -> int:
    if sql.startswith("--", i):
        # Ends at the first \r or \n: an engine that ends it later reads less code than is checked.
        end = next((j for j in range(i, len(sql)) if sql[j] in "\r\n"), len(sql))
        if sql[i:end].endswith("\\"):
            # Spark continues such a comment on the next line, Sail does not: refuse the doubt.
            raise SqlRefused(i, "a -- comment may not end with \\ (engines disagree on whether the next line is code)")
        return end
    if sql.startswith("/*+", i):
        raise SqlRefused(i, "hints (/*+ ... */) are not allowed: the engine plans the query")
    end = sql.find("*/", i + 2)
    if end < 0:
        raise SqlError(i, "a /* comment is never closed")
    inner = sql.find("/*", i + 2, end)
    if inner >= 0:
        # Spark and Sail nest such comments; a reader that does not would run what they skip.
        raise SqlRefused(inner, "a /* inside a /* */ comment is not allowed (readers differ on nesting)")
    return end + 2


def _string_end(sql: str, i: int) -> int:
    raw = sql[i] in "rR"
    quote = sql[i + 1] if raw else sql[i]
    j = i + (2 if raw else 1)
    while j < len(sql):
        if sql[j] == "\\" and not raw:
            if sql.startswith(quote, j + 1):
                # A reader without backslash escapes would end the string here and read on as code.
                raise SqlRefused(j, f"\\{quote} inside a string is not allowed: write the string in the other quotes")
            j += 2
        elif sql[j] == quote:
            return j + 1
        else:
            j += 1
    raise SqlError(i, f"the quote {quote} is never closed")


def _number_end(sql: str, i: int) -> int:
    """The end of the number starting at `i` (Spark's numeric literals), or `i` if none."""
    n = len(sql)
    j = i
    while j < n and sql[j] in _DIGITS:
        j += 1
    digits = j > i
    if j < n and sql[j] == "." and (digits or (j + 1 < n and sql[j + 1] in _DIGITS)):
        j += 1
        while j < n and sql[j] in _DIGITS:
            j += 1
    elif not digits:
        return i
    if j < n and sql[j] in "eE":
        k = j + 1 + (1 if j + 1 < n and sql[j + 1] in "+-" else 0)
        if k < n and sql[k] in _DIGITS:
            j = k
            while j < n and sql[j] in _DIGITS:
                j += 1
    for suffix in ("BD", "bd", "Bd", "bD", "L", "l", "S", "s", "Y", "y", "D", "d", "F", "f"):
        if sql.startswith(suffix, j):
            return j + len(suffix)
    return j


# -- calls -------------------------------------------------------------------------------------

# Words after which "(" opens syntax (a list, a subquery, a window, a clause), not arguments.
# None of them names a function that could do harm: what is inside the parentheses is checked.
_SYNTAX_WORDS = frozenset(
    "ALL AND ANY AS BETWEEN BY CASE CUBE DISTINCT ELSE ESCAPE EXCEPT FOR FROM GROUP HAVING ILIKE IN INTERSECT"
    " IS JOIN LATERAL MINUS NOT ON OR OVER PARTITION PIVOT QUALIFY RECURSIVE REGEXP ROLLUP SELECT SETS SOME"
    " TABLE TABLESAMPLE THEN UNION UNPIVOT USING VALUES WHEN WHERE WINDOW WITH".split()
)
_BUILTIN = (("builtin",), ("system", "builtin"))
_NAMES = ("word", "quoted")


class Call(NamedTuple):
    """A function call in SQL text: `name` is what the engine looks up (lower case, unqualified)."""

    name: str
    written: str  # as written, with its qualifier
    qualifier: tuple[str, ...]
    pos: int
    args: int | None  # the number of arguments; None for a name Spark calls without parentheses


class Parsed(NamedTuple):
    tokens: list[Token]
    calls: list[Call]
    call_parens: dict[int, str]  # index of each "(" that opens a call's arguments -> the call's name

    def from_is_syntax(self, i: int) -> bool:
        """Whether FROM at token `i` is part of an expression (EXTRACT(h FROM ts), IS DISTINCT FROM)."""
        tokens = self.tokens
        if i >= 2 and tokens[i - 1].upper == "DISTINCT" and tokens[i - 2].upper in ("IS", "NOT"):
            return True
        opened = _innermost(tokens, i)
        return opened is not None and self.call_parens.get(opened) in _FROM_IN_ARGUMENTS


# Functions whose arguments may hold FROM (and nothing with FROM in it reads a table).
_FROM_IN_ARGUMENTS = frozenset(("extract", "trim", "btrim", "ltrim", "rtrim", "substring", "substr", "overlay"))


def parse(tokens: list[Token]) -> Parsed:
    """Every call in `tokens` (at any depth), and which parentheses hold arguments."""
    match = _matching(tokens)
    not_calls = _cte_column_lists(tokens, match)
    types: set[int] = set()
    casts: list[int] = []  # "(" indexes of open CAST( / TRY_CAST( calls
    calls: list[Call] = []
    call_parens: dict[int, str] = {}
    n = len(tokens)
    i = 0
    while i < n:
        tok = tokens[i]
        if tok.text == "::" or (tok.upper == "AS" and casts and _innermost(tokens, i) == casts[-1]):
            types.update(range(i + 1, _type_end(tokens, match, i + 1)))
        if tok.text == ")" and casts and match[i] == casts[-1]:
            casts.pop()
        if not _is_name(tok):
            i += 1
            continue
        end, parts = _chain(tokens, i)
        opens = end < n and tokens[end].text == "("
        dotted = i > 0 and tokens[i - 1].text == "."  # x[0].name: a field, or a call Spark refuses
        if opens and (dotted or _is_call(tokens, match, i, end, parts, types, not_calls)):
            close = match[end]
            commas = _top_level_commas(tokens, match, end + 1, close)
            qualifier = tuple(p.name for p in parts[:-1])
            if dotted:
                qualifier = ("...", *qualifier)
            written = ".".join(p.text for p in parts)
            args = 0 if close == end + 1 else commas + 1
            calls.append(Call(parts[-1].name, written, qualifier, tok.pos, args))
            call_parens[end] = parts[-1].name if not qualifier or qualifier in _BUILTIN else ""
            if parts[-1].name in ("cast", "try_cast") and not qualifier:
                casts.append(end)
        elif not opens and not dotted and len(parts) == 1 and _is_bare_function(tokens, i, types):
            calls.append(Call(tok.name, tok.text, (), tok.pos, None))
        i = end
    return Parsed(tokens, calls, call_parens)


def _is_name(tok: Token) -> bool:
    return tok.kind in _NAMES or (tok.kind == "string" and tok.text.startswith('"'))


def _chain(tokens: list[Token], i: int) -> tuple[int, list[Token]]:
    """The dotted name starting at `i`: (index after it, its parts)."""
    parts = [tokens[i]]
    j = i + 1
    while j + 1 < len(tokens) and tokens[j].text == "." and _is_name(tokens[j + 1]):
        parts.append(tokens[j + 1])
        j += 2
    return j, parts


def _is_call(
    tokens: list[Token], match: dict[int, int], i: int, end: int, parts: list[Token], types: set[int], not_calls: set[int]
) -> bool:
    """Whether the name parts[...] followed by "(" at `end` is a function call."""
    if len(parts) > 1 or tokens[i].kind != "word" or tokens[i].name in FORBIDDEN:
        return True  # a qualified or quoted name before "(" is always a call, a forbidden one too
    if i in not_calls:
        return False
    word = tokens[i].upper
    if word in _SYNTAX_WORDS:
        return False
    previous = tokens[i - 1] if i else None
    if word == "FILTER" and previous is not None and previous.text == ")":
        return False  # count(*) FILTER (WHERE ...)
    inside = tokens[end + 1 : match[end]]
    if i in types and all(t.kind == "number" or t.text == "," for t in inside):
        return False  # DECIMAL(10, 2), VARCHAR(20) in a type
    if previous is not None and previous.upper == "AS":
        return not all(t.kind in _NAMES or t.text == "," for t in inside)  # AS t(a, b): column names
    return True


def _is_bare_function(tokens: list[Token], i: int, types: set[int]) -> bool:
    """A name like current_date, which Spark calls without parentheses unless a column has it."""
    if tokens[i].kind not in _NAMES or tokens[i].name not in BARE_FUNCTIONS or i in types:
        return False
    before = tokens[i - 1] if i else None
    after = tokens[i + 1] if i + 1 < len(tokens) else None
    if before is not None and before.upper == "AS":
        return False  # an alias
    return after is None or after.text not in ("->", "=>")


def _matching(tokens: list[Token]) -> dict[int, int]:
    """Index of "(" -> index of its ")" and back (tokens are balanced)."""
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.text == "(":
            stack.append(i)
        elif tok.text == ")":
            j = stack.pop()
            match[j], match[i] = i, j
    return match


def _innermost(tokens: list[Token], i: int) -> int | None:
    """The index of the innermost "(" open at `i`, if any."""
    depth = 0
    for j in range(i - 1, -1, -1):
        if tokens[j].text == ")":
            depth += 1
        elif tokens[j].text == "(":
            if depth == 0:
                return j
            depth -= 1
    return None


def _top_level_commas(tokens: list[Token], match: dict[int, int], start: int, stop: int) -> int:
    count, j = 0, start
    while j < stop:
        if tokens[j].text == "(":
            j = match[j]
        elif tokens[j].text == ",":
            count += 1
        j += 1
    return count


def _type_end(tokens: list[Token], match: dict[int, int], k: int) -> int:
    """The index after the type that starts at `k` (INT, DECIMAL(10, 2), ARRAY<STRUCT<a: INT>>, ...)."""
    n = len(tokens)
    if k >= n or not _is_name(tokens[k]):
        return k
    name = tokens[k].upper
    k += 1
    if name == "INTERVAL":
        while k < n and tokens[k].upper in ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "TO"):
            k += 1
    if k < n and tokens[k].text == "(":
        return match[k] + 1
    if k < n and tokens[k].text == "<":
        depth = 0
        while k < n:
            text = tokens[k].text
            depth += text.count("<") if text in ("<", "<<") else 0
            depth -= text.count(">") if text in (">", ">>", ">>>") else 0
            k = match[k] + 1 if text == "(" else k + 1
            if depth <= 0:
                break
    return k


def _cte_column_lists(tokens: list[Token], match: dict[int, int]) -> set[int]:
    """Indexes of the names in `WITH name(a, b) AS (...)`: those parentheses hold column names."""
    found: set[int] = set()
    n = len(tokens)
    for w, tok in enumerate(tokens):
        if tok.upper != "WITH":
            continue
        k = w + 1 + (1 if w + 1 < n and tokens[w + 1].upper == "RECURSIVE" else 0)
        while k < n and _is_name(tokens[k]):
            j = k + 1
            if j < n and tokens[j].text == "(":
                inside = tokens[j + 1 : match[j]]
                if not all(t.kind in _NAMES or t.text == "," for t in inside):
                    break
                found.add(k)
                j = match[j] + 1
            if not (j + 1 < n and tokens[j].upper == "AS" and tokens[j + 1].text == "("):
                break
            k = match[j + 1] + 1
            if not (k < n and tokens[k].text == ","):
                break
            k += 1
    return found


# -- the rules ---------------------------------------------------------------------------------

_SPECIAL_TIMES = ("now", "today", "yesterday", "tomorrow")


def call_problems(parsed: Parsed, *, view: bool) -> Iterator[SqlError]:
    """What is wrong with the calls of `parsed` (once per function), and with time-like strings."""
    allowed = allowed_functions(view=view)
    seen: set[str] = set()
    for call in parsed.calls:
        problem = _call_problem(call, allowed, view)
        if problem is not None and call.written.lower() not in seen:
            seen.add(call.written.lower())
            shown = f"{call.written}()" if call.args is not None else f"{call.written} (a function even without parentheses)"
            yield SqlError(call.pos, f"calls {shown}, which {problem}")
    for tok in parsed.tokens:
        if tok.kind == "string":
            words = tok.text[2 if tok.text[0] in "rR" else 1 : -1].lower().split()
            if words and words[0] in _SPECIAL_TIMES and len(words) <= 2 and tok.text not in seen:
                seen.add(tok.text)
                what = "read as a date or time is the time the query runs: differs on every run"
                yield SqlError(tok.pos, f"uses {tok.text}, which {what}")


def _call_problem(call: Call, allowed: Collection[str], view: bool) -> str | None:
    if call.qualifier and call.qualifier not in _BUILTIN:
        return "is not a built-in function: definitions may call built-in functions only"
    if not call.name.isascii():
        return "is no built-in function: their names are plain ASCII"
    if call.name in FORBIDDEN:
        return FORBIDDEN[call.name]
    if call.name == "unix_timestamp" and call.args == 0:
        return "without an argument is the time the query runs: differs on every run"
    if call.name in allowed:
        return None
    if not view and call.name in {**AGGREGATES, **WINDOW, **TABLE_FUNCTIONS}:
        return "works on many rows: a filter tests one row at a time"
    close = difflib.get_close_matches(call.name, list(allowed), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"is not a function definitions may call (the allowed ones are listed in {DOCS}){hint}"


def view_clause_problems(tokens: list[Token]) -> Iterator[SqlError]:
    """Clauses a view may not use: scripts, sampling and LIMIT (rows that differ between runs)."""
    for i, tok in enumerate(tokens):
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok.upper == "USING" and after is not None and after.kind == "string":
            yield SqlError(tok.pos, f"USING {after.text} runs an external program: not allowed")
        elif tok.upper == "TABLESAMPLE":
            yield SqlError(tok.pos, "TABLESAMPLE picks different rows on every run: not allowed")
        elif tok.upper in ("LIMIT", "OFFSET") and after is not None and (after.kind == "number" or after.text == "("):
            yield SqlError(tok.pos, f"{tok.text} keeps rows that may differ between runs: not allowed in a view")


# -- filters and views -------------------------------------------------------------------------


class SqlProblems(ValueError):
    """Everything wrong with one SQL text, one message each (none starts with the text itself)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# Statements other than a query, and commands: never part of a view or a filter.
_COMMANDS = frozenset(
    "ALTER ANALYZE CACHE CALL CLEAR COPY CREATE DECLARE DELETE DROP EXECUTE GRANT INSERT LOAD MERGE MSCK"
    " OPTIMIZE REFRESH RESET RESTORE REVOKE SET TRUNCATE UNCACHE UPDATE USE VACUUM".split()
)
# Words that end a FROM item (so they are no alias).
_CLAUSES = frozenset(
    "ANTI CLUSTER CROSS DISTRIBUTE EXCEPT FULL GROUP HAVING INNER INTERSECT JOIN LATERAL LEFT LIMIT MINUS"
    " NATURAL OFFSET ON ORDER OUTER PIVOT QUALIFY RIGHT SEMI SORT TABLESAMPLE UNION UNPIVOT USING WHERE"
    " WINDOW".split()
)


def _no_commands(tokens: list[Token], what: str) -> None:
    for i, token in enumerate(tokens):
        if token.upper in _COMMANDS and not (i and tokens[i - 1].text == "."):
            raise SqlError(token.pos, f"{token.text} is not allowed: {what}")


def check_view_sql(sql: str) -> str:
    """Check that `sql` is one SELECT (or WITH ... SELECT) calling only allowed functions.

    Returns it without trailing `;`. Raises SqlProblems("line N: what is wrong", ...).
    """
    try:
        tokens = tokenize(sql)
        end = len(sql)
        while tokens and tokens[-1].text == ";":
            end = tokens.pop().pos
        if not tokens:
            raise SqlError(0, "is empty: a view is one SELECT")
        for token in tokens:
            if token.text == ";":
                raise SqlError(token.pos, "; separates statements: a view is one SELECT")
        first = next((t for t in tokens if t.text != "("), tokens[0])
        if first.upper not in ("SELECT", "WITH"):
            raise SqlError(first.pos, f"starts with {first.text}: a view is one SELECT (or WITH ... SELECT)")
        _no_commands(tokens, "a view is one SELECT (no DDL, DML or commands)")
    except SqlError as exc:
        raise SqlProblems([f"line {line_of(sql, exc.pos)}: {exc.what}"]) from None
    problems = [*view_clause_problems(tokens), *call_problems(parse(tokens), view=True)]
    if problems:
        raise SqlProblems([f"line {line_of(sql, p.pos)}: {p.what}" for p in problems])
    return sql[:end].rstrip()


def check_filter(expr: str) -> str:
    """Check that `expr` is one boolean SQL expression calling only allowed functions.

    No statement, subquery, comment or list. Raises SqlProblems.
    """
    try:
        tokens = tokenize(expr, comments=False)
        if not tokens:
            raise SqlError(0, "it is empty")
        parsed = parse(tokens)
        depth = 0
        for i, token in enumerate(tokens):
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            if token.text == ";":
                raise SqlError(token.pos, "; separates statements")
            if token.upper == "SELECT":
                raise SqlError(token.pos, "subqueries are not allowed")
            if token.upper == "FROM" and not parsed.from_is_syntax(i):
                raise SqlError(token.pos, "FROM is not allowed: a filter reads the columns of its source")
            if token.text == "," and depth == 0:
                raise SqlError(token.pos, "a , separates expressions")
        _no_commands(tokens, "no DDL, DML or commands")
    except SqlRefused as exc:
        raise SqlProblems([exc.what]) from None
    except SqlError as exc:
        raise SqlProblems([f"is not one boolean expression: {exc.what}"]) from None
    problems = [p.what for p in call_problems(parsed, view=False)]
    if problems:
        raise SqlProblems(problems)
    return expr


def view_references(sql: str, sources: Collection[str]) -> tuple[str, ...]:
    """The sources a view reads (FROM / JOIN), in order of first use.

    Raises ValueError("line N: ...") for any other table: a view reads only sources, its own
    WITH queries and table functions that read no storage (`range`, `explode`, ...).
    """
    tokens = tokenize(sql)
    ctes = {
        tokens[i].text.lower()
        for i in range(len(tokens) - 2)
        if tokens[i].kind == "word" and tokens[i + 1].upper == "AS" and tokens[i + 2].text == "("
    } | {tokens[i].name for i in _cte_column_lists(tokens, _matching(tokens))}
    found: dict[str, None] = {}
    for parts, is_function in _from_items(tokens):
        written = ".".join(part.text for part in parts)
        name = ".".join(part.text[1:-1].replace("``", "`") if part.kind == "quoted" else part.text for part in parts)
        where = f"line {line_of(sql, parts[0].pos)}"
        if is_function:
            if name.lower() not in TABLE_FUNCTIONS:
                raise ValueError(f"{where}: the table function {written} is not allowed: a view reads sources by name")
        elif name.lower() in sources:
            found[name.lower()] = None
        elif name.lower() not in ctes:
            raise ValueError(
                f"{where}: {written} is not a source: a view reads only sources ({', '.join(sorted(sources)) or 'none'})"
                " and its own WITH queries"
            )
    return tuple(found)


def _from_items(tokens: list[Token]) -> Iterator[tuple[list[Token], bool]]:
    """(name parts, is a function) of every table after FROM / JOIN, and in its , list."""
    parsed = parse(tokens)
    for i, token in enumerate(tokens):
        if token.upper == "JOIN" or (token.upper == "FROM" and not parsed.from_is_syntax(i)):
            yield from _table_list(tokens, i + 1)


def _table_list(tokens: list[Token], j: int) -> Iterator[tuple[list[Token], bool]]:
    while j < len(tokens):
        token = tokens[j]
        if token.text == "(":  # a subquery: its own FROM is found by the caller
            j = _after_parens(tokens, j)
        elif token.kind in ("word", "quoted") and token.upper not in ("LATERAL", "VALUES"):
            parts = [token]
            j += 1
            while j + 1 < len(tokens) and tokens[j].text == "." and tokens[j + 1].kind in ("word", "quoted"):
                parts.append(tokens[j + 1])
                j += 2
            is_function = j < len(tokens) and tokens[j].text == "("
            yield parts, is_function
            if is_function:
                j = _after_parens(tokens, j)
        else:
            return
        if j < len(tokens) and tokens[j].upper == "TABLESAMPLE" and j + 1 < len(tokens):
            j = _after_parens(tokens, j + 1)
        if j < len(tokens) and tokens[j].upper == "AS":
            j += 1
        if j < len(tokens) and tokens[j].kind in ("word", "quoted") and tokens[j].upper not in _CLAUSES:
            j += 1
            if j < len(tokens) and tokens[j].text == "(":  # column aliases: t(a, b)
                j = _after_parens(tokens, j)
        if j < len(tokens) and tokens[j].text == ",":
            j += 1
        else:
            return


def _after_parens(tokens: list[Token], j: int) -> int:
    """The index after the ")" matching the "(" at `j` (tokens are balanced)."""
    depth = 0
    for k in range(j, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[k].text, 0)
        if depth == 0:
            return k + 1
    return len(tokens)
