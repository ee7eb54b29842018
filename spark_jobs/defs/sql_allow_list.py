"""The Spark SQL functions definitions may call, and the ones they may not, with the reason why.

Filters and SQL views come from many teams and run on the nightly cluster, so a call is allowed
only when it is deterministic (the same rows give the same result on every run and on both
engines), reads nothing but its arguments (no JVM reflection, no files, no environment) and runs
on Sail and on classic Spark alike. Everything else is refused, whether it is listed under
:data:`FORBIDDEN` (with the reason) or simply unknown.

Each allowed function carries one example call, over the columns of a tiny table
(``i`` INT, ``d`` DOUBLE, ``s`` STRING, ``s_ts`` STRING holding a time, ``t`` TIMESTAMP, ``a`` ARRAY<INT>, ``m`` MAP<STRING, INT>,
``b`` BOOLEAN): the engine tests run every example on both engines, so the list never names a
function an engine does not know. docs/definitions.md lists the same names, for readers.
"""

from __future__ import annotations

from collections.abc import Mapping

# Category -> function -> an example call. Keep each category sorted; docs follow this order.
ALLOWED: dict[str, dict[str, str]] = {
    "comparison and logic": {
        "coalesce": "coalesce(NULL, i)",
        "equal_null": "equal_null(i, 3)",
        "greatest": "greatest(i, 5)",
        "if": "if(b, 1, 2)",
        "ifnull": "ifnull(NULL, i)",
        "isnan": "isnan(d)",
        "isnotnull": "isnotnull(s)",
        "isnull": "isnull(s)",
        "least": "least(i, 5)",
        "nanvl": "nanvl(d, 0D)",
        "nullif": "nullif(i, 3)",
        "nvl": "nvl(NULL, i)",
        "nvl2": "nvl2(s, 1, 2)",
    },
    "casts": {
        "bigint": "bigint(i)",
        "boolean": "boolean(i)",
        "cast": "cast(i AS STRING)",
        "date": "date(t)",
        "decimal": "decimal(d)",
        "double": "double(i)",
        "float": "float(i)",
        "int": "int(d)",
        "smallint": "smallint(i)",
        "string": "string(i)",
        "timestamp": "timestamp(s_ts)",
        "tinyint": "tinyint(i)",
        "try_cast": "try_cast(s AS INT)",
    },
    "arithmetic": {
        "abs": "abs(-i)",
        "acos": "acos(0.5D)",
        "asin": "asin(0.5D)",
        "atan": "atan(d)",
        "atan2": "atan2(d, 1D)",
        "bround": "bround(d, 0)",
        "cbrt": "cbrt(d)",
        "ceil": "ceil(d)",
        "ceiling": "ceiling(d)",
        "cos": "cos(d)",
        "cosh": "cosh(d)",
        "degrees": "degrees(d)",
        "exp": "exp(d)",
        "expm1": "expm1(d)",
        "floor": "floor(d)",
        "hypot": "hypot(d, 1D)",
        "ln": "ln(d)",
        "log": "log(10D, d)",
        "log10": "log10(d)",
        "log1p": "log1p(d)",
        "log2": "log2(d)",
        "mod": "mod(i, 2)",
        "negative": "negative(i)",
        "pi": "pi()",
        "pmod": "pmod(-i, 2)",
        "positive": "positive(i)",
        "pow": "pow(d, 2D)",
        "power": "power(d, 2D)",
        "radians": "radians(d)",
        "rint": "rint(d)",
        "round": "round(d, 1)",
        "sign": "sign(d)",
        "signum": "signum(d)",
        "sin": "sin(d)",
        "sinh": "sinh(d)",
        "sqrt": "sqrt(d)",
        "tan": "tan(d)",
        "tanh": "tanh(d)",
        "try_add": "try_add(i, 1)",
        "try_divide": "try_divide(i, 0)",
        "try_multiply": "try_multiply(i, 2)",
        "try_subtract": "try_subtract(i, 1)",
        "width_bucket": "width_bucket(d, 0D, 10D, 5)",
    },
    "bits and hashes": {
        "bit_count": "bit_count(i)",
        "crc32": "crc32(s)",
        "hash": "hash(s, i)",
        "hex": "hex(i)",
        "md5": "md5(s)",
        "sha1": "sha1(s)",
        "sha2": "sha2(s, 256)",
        "shiftleft": "shiftleft(i, 1)",
        "shiftright": "shiftright(i, 1)",
        "unhex": "unhex('4A')",
        "xxhash64": "xxhash64(s)",
    },
    "text": {
        "ascii": "ascii(s)",
        "base64": "base64(s)",
        "bit_length": "bit_length(s)",
        "btrim": "btrim(s)",
        "char": "char(65)",
        "char_length": "char_length(s)",
        "character_length": "character_length(s)",
        "chr": "chr(65)",
        "concat": "concat(s, 'x')",
        "concat_ws": "concat_ws('-', s, 'x')",
        "contains": "contains(s, 'b')",
        "endswith": "endswith(s, 'c')",
        "format_number": "format_number(d, 2)",
        "format_string": "format_string('%s-%d', s, i)",
        "initcap": "initcap(s)",
        "instr": "instr(s, 'b')",
        "lcase": "lcase(s)",
        "left": "left(s, 2)",
        "len": "len(s)",
        "length": "length(s)",
        "levenshtein": "levenshtein(s, 'abc')",
        "like": "like(s, 'A%')",
        "locate": "locate('b', s)",
        "lower": "lower(s)",
        "lpad": "lpad(s, 8, '*')",
        "ltrim": "ltrim(s)",
        "octet_length": "octet_length(s)",
        "overlay": "overlay(s PLACING 'x' FROM 1 FOR 1)",
        "position": "position('b' IN s)",
        "regexp_extract": "regexp_extract(s, '([a-z]+)', 1)",
        "regexp_like": "regexp_like(s, '^A')",
        "regexp_replace": "regexp_replace(s, ' ', '_')",
        "repeat": "repeat(s, 2)",
        "replace": "replace(s, 'b', 'x')",
        "reverse": "reverse(s)",
        "right": "right(s, 2)",
        "rlike": "rlike(s, '^A')",
        "rpad": "rpad(s, 8, '*')",
        "rtrim": "rtrim(s)",
        "split": "split(s, ' ')",
        "split_part": "split_part(s, ' ', 1)",
        "startswith": "startswith(s, 'A')",
        "substr": "substr(s, 1, 2)",
        "substring": "substring(s, 1, 2)",
        "substring_index": "substring_index(s, ' ', 1)",
        "translate": "translate(s, 'b', 'x')",
        "trim": "trim(s)",
        "ucase": "ucase(s)",
        "unbase64": "unbase64('QQ==')",
        "upper": "upper(s)",
    },
    "dates and times": {
        "add_months": "add_months(date(t), 1)",
        "date_add": "date_add(date(t), 1)",
        "date_format": "date_format(t, 'yyyy-MM-dd')",
        "date_part": "date_part('hour', t)",
        "date_sub": "date_sub(date(t), 1)",
        "date_trunc": "date_trunc('hour', t)",
        "datediff": "datediff(date(t), date(t))",
        "day": "day(t)",
        "dayofmonth": "dayofmonth(t)",
        "dayofweek": "dayofweek(t)",
        "dayofyear": "dayofyear(t)",
        "extract": "extract(hour FROM t)",
        "from_unixtime": "from_unixtime(1700000000)",
        "from_utc_timestamp": "from_utc_timestamp(t, 'Europe/Paris')",
        "hour": "hour(t)",
        "last_day": "last_day(date(t))",
        "make_date": "make_date(2026, 1, 31)",
        "make_timestamp": "make_timestamp(2026, 1, 31, 12, 30, 0)",
        "minute": "minute(t)",
        "month": "month(t)",
        "months_between": "months_between(t, t)",
        "next_day": "next_day(date(t), 'Mon')",
        "quarter": "quarter(t)",
        "second": "second(t)",
        "timestamp_micros": "timestamp_micros(1700000000000000)",
        "timestamp_millis": "timestamp_millis(1700000000000)",
        "timestamp_seconds": "timestamp_seconds(1700000000)",
        "to_date": "to_date(s_ts)",
        "to_timestamp": "to_timestamp(s_ts)",
        "to_unix_timestamp": "to_unix_timestamp(t)",
        "to_utc_timestamp": "to_utc_timestamp(t, 'Europe/Paris')",
        "trunc": "trunc(date(t), 'MM')",
        "unix_date": "unix_date(date(t))",
        "unix_micros": "unix_micros(t)",
        "unix_millis": "unix_millis(t)",
        "unix_seconds": "unix_seconds(t)",
        "unix_timestamp": "unix_timestamp(t)",
        "weekday": "weekday(t)",
        "weekofyear": "weekofyear(t)",
        "year": "year(t)",
    },
    "arrays, maps and structs": {
        "aggregate": "aggregate(a, 0, (acc, x) -> acc + x)",
        "array": "array(i, 2)",
        "array_contains": "array_contains(a, 2)",
        "array_distinct": "array_distinct(a)",
        "array_except": "array_except(a, array(1))",
        "array_intersect": "array_intersect(a, array(1))",
        "array_join": "array_join(array(s, 'x'), ',')",
        "array_max": "array_max(a)",
        "array_min": "array_min(a)",
        "array_position": "array_position(a, 2)",
        "array_remove": "array_remove(a, 1)",
        "array_repeat": "array_repeat(i, 2)",
        "array_sort": "array_sort(a)",
        "array_union": "array_union(a, array(9))",
        "arrays_overlap": "arrays_overlap(a, array(1))",
        "arrays_zip": "arrays_zip(a, sequence(1, 3))",
        "cardinality": "cardinality(a)",
        "element_at": "element_at(a, 1)",
        "exists": "exists(a, x -> x > 1)",
        "filter": "filter(a, x -> x > 1)",
        "flatten": "flatten(array(a, a))",
        "forall": "forall(a, x -> x > 0)",
        "map": "map('k', i)",
        "map_concat": "map_concat(m, map('z', 0))",
        "map_contains_key": "map_contains_key(m, 'k')",
        "map_entries": "map_entries(m)",
        "map_filter": "map_filter(m, (k, v) -> v > 0)",
        "map_from_arrays": "map_from_arrays(array('k'), array(i))",
        "map_from_entries": "map_from_entries(array(struct('k', i)))",
        "map_keys": "map_keys(m)",
        "map_values": "map_values(m)",
        "named_struct": "named_struct('x', i)",
        "reverse": "reverse(a)",
        "sequence": "sequence(1, i)",
        "size": "size(a)",
        "slice": "slice(a, 1, 2)",
        "sort_array": "sort_array(a)",
        "struct": "struct(i, s)",
        "transform": "transform(a, x -> x + 1)",
        "try_element_at": "try_element_at(a, 9)",
    },
    "JSON": {
        "from_json": "from_json('{\"x\": 1}', 'x INT')",
        "get_json_object": "get_json_object('{\"x\": 1}', '$.x')",
        "json_array_length": "json_array_length('[1, 2]')",
        "to_json": "to_json(struct(i, s))",
    },
}

# Aggregations (views only: a filter is evaluated per event) -> an example over the tiny table.
AGGREGATES: dict[str, str] = {
    "approx_count_distinct": "approx_count_distinct(s)",
    "avg": "avg(d)",
    "bool_and": "bool_and(b)",
    "bool_or": "bool_or(b)",
    "corr": "corr(d, i)",
    "count": "count(DISTINCT s)",
    "count_if": "count_if(b)",
    "covar_pop": "covar_pop(d, i)",
    "covar_samp": "covar_samp(d, i)",
    "every": "every(b)",
    "kurtosis": "kurtosis(d)",
    "max": "max(d)",
    "mean": "mean(d)",
    "median": "median(d)",
    "min": "min(d)",
    "percentile": "percentile(d, 0.5)",
    "percentile_approx": "percentile_approx(d, 0.5)",
    "skewness": "skewness(d)",
    "stddev": "stddev(d)",
    "stddev_pop": "stddev_pop(d)",
    "stddev_samp": "stddev_samp(d)",
    "sum": "sum(d)",
    "var_pop": "var_pop(d)",
    "var_samp": "var_samp(d)",
    "variance": "variance(d)",
}

# Window functions whose result does not depend on how ties are broken.
WINDOW: dict[str, str] = {
    "cume_dist": "cume_dist() OVER (ORDER BY i)",
    "dense_rank": "dense_rank() OVER (ORDER BY i)",
    "percent_rank": "percent_rank() OVER (ORDER BY i)",
    "rank": "rank() OVER (ORDER BY i)",
}

# Table functions and generators (views only) -> an example FROM item or SELECT item.
TABLE_FUNCTIONS: dict[str, str] = {
    "explode": "SELECT explode(a) FROM tiny",
    "explode_outer": "SELECT explode_outer(a) FROM tiny",
    "inline": "SELECT inline(array(struct(i, s))) FROM tiny",
    "inline_outer": "SELECT inline_outer(array(struct(i, s))) FROM tiny",
    "posexplode": "SELECT posexplode(a) FROM tiny",
    "posexplode_outer": "SELECT posexplode_outer(a) FROM tiny",
    "range": "SELECT * FROM range(3)",
    "stack": "SELECT stack(2, i, i) FROM tiny",
}

_ORDER = "depends on the order rows arrive in, and that differs between runs"
_CLOCK = "is the time the query runs: differs on every run"
_RANDOM = "differs on every run"
_PLACEMENT = "depends on how the data is split into files and partitions, which differs between runs"
_ENVIRONMENT = "reads the environment the query runs in, not the data"

# Functions that are refused for a reason worth telling; the message reads "<name> <reason>".
FORBIDDEN: dict[str, str] = {
    **dict.fromkeys(("reflect", "java_method", "try_reflect"), "calls into the JVM (any Java method, on every node)"),
    **dict.fromkeys(("rand", "randn", "random", "uniform", "randstr", "shuffle", "uuid"), _RANDOM),
    "aes_encrypt": f"{_RANDOM} (a random initialisation vector)",
    **dict.fromkeys(
        ("current_date", "current_time", "current_timestamp", "curdate", "localtimestamp", "now", "sysdate"), _CLOCK
    ),
    **dict.fromkeys(
        (
            "input_file_name", "input_file_block_start", "input_file_block_length", "monotonically_increasing_id",
            "spark_partition_id",
        ),
        _PLACEMENT,
    ),
    **dict.fromkeys(
        (
            "current_user", "user", "session_user", "current_catalog", "current_database", "current_schema",
            "current_timezone", "version",
        ),
        _ENVIRONMENT,
    ),
    **dict.fromkeys(
        (
            "any_value", "array_agg", "collect_list", "collect_set", "first", "first_value", "lag", "last",
            "last_value", "lead", "listagg", "max_by", "min_by", "mode", "nth_value", "ntile", "row_number",
            "string_agg",
        ),
        _ORDER,
    ),
    "identifier": "turns text into a name, so what it refers to cannot be checked",
}

# Names Spark resolves to a function even without parentheses (when no column has that name).
BARE_FUNCTIONS: frozenset[str] = frozenset(
    ("current_date", "current_time", "current_timestamp", "current_user", "user", "session_user")
)


def allowed_functions(*, view: bool) -> Mapping[str, str]:
    """Every function a filter (``view=False``) or a SQL view may call -> an example call."""
    names: dict[str, str] = {name: ex for category in ALLOWED.values() for name, ex in category.items()}
    if view:
        names |= AGGREGATES | WINDOW | TABLE_FUNCTIONS
    return names
