"""Strict JSON in the JVM: what Spark's own JSON parsing lets through, decided as Column expressions.

Spark's `try_parse_json` reads the first JSON value of a text and ignores whatever follows it (`{…} xyz`,
`{…}]]]` and `{…}{…}` all parse), and whether it accepts duplicate keys or lone surrogate escapes
depends on session settings. The expressions here decide those cases from the text itself. Every
regular expression is anchored or possessive, so it runs in linear time and never recurses per
character (Java's regex engine overflows its stack on backtracking alternations over long strings).

The definitions, as documented in the README:
- JSON whitespace is space, tab, CR and LF, nothing else (RFC 8259).
- The skeleton of a text is what remains after removing every JSON string (double-quoted, no raw
  control character, backslash escapes) and every character other than brackets and quotes, scanning
  from the left. For valid JSON it is exactly the nesting structure: `{"a":[1,{"b":"}"}]}` -> `{[{}]}`.
- The nesting depth is the deepest bracket level of the skeleton; more than `MAX_DEPTH` is too deep.
- A lone surrogate is a `\\uD800`-`\\uDBFF` escape not followed by a `\\uDC00`-`\\uDFFF` escape, or a
  `\\uDC00`-`\\uDFFF` escape not preceded by a high one, after escaped backslashes are set aside.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# Session settings that change what `try_parse_json` accepts; the job pins them (job.runtime.session.spark_conf), so
# that the same value gets the same code on any cluster. scoring.parse_messages refuses the first one changed.
STRICT_VARIANT_CONF = {
    "spark.sql.variant.allowDuplicateKeys": "false",
    "spark.sql.variant.validateUnicodeInJsonParsing": "true",
}

# What Jackson's default StreamReadConstraints allow (jackson-core 2.21, as pinned by Spark 4.2): nesting
# deeper than 1000 fails, so does a number of more than 1000 digits or a key of more than 50,000 characters.
MAX_DEPTH = 1000
MAX_NUMBER_DIGITS = 1000
MAX_KEY_CHARS = 50_000

JSON_WHITESPACE = " \t\r\n"
BYTE_ORDER_MARK = "\ufeff"

# A JSON string, unrolled and possessive: no backtracking, no recursion per character.
STRING = r'"[^"\\\x00-\x1f]*+(?:\\.[^"\\\x00-\x1f]*+)*+"'
# Removing these leaves the skeleton: brackets, and quotes that do not open a valid string.
_NOT_SKELETON = r"(?s)" + STRING + r"""|[^\[\]{}"']++"""
_ONLY_A_STRING = r"(?s)^[ \t\r\n]*+" + STRING + r"[ \t\r\n]*+\z"
# Jackson rejects a number or literal followed by anything but whitespace; one token, then whitespace only.
_ONLY_A_TOKEN = r"^[ \t\r\n]*+[-+.0-9A-Za-z]++[ \t\r\n]*+\z"
_ESCAPED_BACKSLASH = r"\\\\"
_HIGH = r"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = r"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
# Each alternative starts with the literal `\\u`, so the search skips ahead cheaply; the look-behind for a
# low half comes after it has matched (a look-behind first would be tried at every position).
LONE_SURROGATE = f"{_HIGH}(?!{_LOW})|{_LOW}(?<!{_HIGH}{_LOW})"
_FLAT_OBJECT = r"^[ \t\r\n]*+\{[^\[\]{}]*+\}[ \t\r\n]*+\z"

_OPEN = ("{", "[")
_CLOSE = ("}", "]")


def skeleton(text: Column) -> Column:
    """The brackets (and stray quotes) of a text outside its JSON strings; see the module docstring."""
    return F.regexp_replace(text, F.lit(_NOT_SKELETON), F.lit(""))


def first_char(text: Column) -> Column:
    """The first character that is not JSON whitespace ('' when there is none)."""
    # ltrim and substring return views of the same bytes: cheaper than a regex match per row.
    return F.substring(F.ltrim(text, F.lit(JSON_WHITESPACE)), 1, 1)


def flat_object(text: Column) -> Column:
    """JSON whitespace, `{`, anything but brackets, `}`, JSON whitespace: for a text whose first value
    parses, that value is then the whole text, one object deep. One linear regex pass; the common case (a
    tweet without brackets in its text) needs nothing else from this module."""
    return text.rlike(_FLAT_OBJECT)


def last_char(text: Column) -> Column:
    """The last character that is not JSON whitespace ('' when there is none)."""
    # rtrim, not a `(.)\s*$` search: a search restarts at every character of a long run of spaces.
    return F.substring(F.rtrim(text, F.lit(JSON_WHITESPACE)), -1, 1)


def shape(skeleton_column: Column) -> Column:
    """struct(depth: deepest nesting, single: the first bracket closes at the very end, quotes: any stray quote).

    A tweet's skeleton is `{}`, answered without looking further; nested values walk the skeleton once
    (an `aggregate` over its characters, in the JVM).
    """
    chars = F.split(skeleton_column, "")
    start = F.struct(
        F.lit(0).alias("level"),
        F.lit(0).alias("depth"),
        F.lit(False).alias("early"),
        F.lit(False).alias("quotes"),
        F.lit(0).alias("i"),
    )

    def step(acc: Column, char: Column) -> Column:
        level = acc["level"] + F.when(char.isin(*_OPEN), 1).when(char.isin(*_CLOSE), -1).otherwise(0)
        return F.struct(
            level.alias("level"),
            F.greatest(acc["depth"], level).alias("depth"),
            # Anything after the first value closed (its level back at 0) is content after it.
            (acc["early"] | ((acc["i"] > 0) & (acc["level"] <= 0))).alias("early"),
            (acc["quotes"] | ~char.isin(*_OPEN, *_CLOSE)).alias("quotes"),
            (acc["i"] + 1).alias("i"),
        )

    def finish(acc: Column) -> Column:
        return F.struct(
            acc["depth"].alias("depth"),
            (~acc["early"] & (acc["level"] == 0)).alias("single"),
            acc["quotes"].alias("quotes"),
        )

    def known(depth: int, single: bool) -> Column:
        return F.struct(F.lit(depth).alias("depth"), F.lit(single).alias("single"), F.lit(False).alias("quotes"))

    return (
        F.when(skeleton_column.isNull(), F.lit(None))
        .when(skeleton_column.isin("{}", "[]"), known(1, True))
        .when(skeleton_column == "", known(0, True))
        .otherwise(F.aggregate(chars, start, step, finish))
    )


def ends_after_first_value(text: Column, first: Column, last: Column, shape_column: Column) -> Column:
    """For a text whose first JSON value parses: true when nothing but JSON whitespace follows that value.

    Objects and arrays: the text ends with the bracket that closes the first one, and the skeleton's
    first bracket closes only at its end. Strings and other scalars: the whole text is that one token.
    """
    return (
        F.when(first == "{", (last == "}") & shape_column["single"])
        .when(first == "[", (last == "]") & shape_column["single"])
        .when(first == '"', text.rlike(_ONLY_A_STRING))
        .otherwise(text.rlike(_ONLY_A_TOKEN))
    )


def has_lone_surrogate(text: Column) -> Column:
    """Whether a `\\u` escape in the text encodes half of a surrogate pair without its other half."""
    # Escaped backslashes become a plain character first, so `\\\\ud800` (a backslash, then "ud800") is no escape
    # and `\\ud800\\\\\\udc00` (high, backslash, low) is two lone halves.
    plain = F.regexp_replace(text, F.lit(_ESCAPED_BACKSLASH), F.lit("_"))
    return F.when(text.contains("\\u"), plain.rlike(LONE_SURROGATE)).otherwise(F.lit(False))


def starts_with_bom(text: Column) -> Column:
    return text.startswith(BYTE_ORDER_MARK)


def lenient_parse_ok(text: Column) -> Column:
    """Whether the text's first JSON value is well formed, duplicate keys and lone surrogates allowed.

    Spark's `get_json_object` parses with Jackson's defaults plus single-quoted strings and raw control
    characters in strings (Hive compatibility); a skeleton without stray quotes rules those two out, so
    together they answer "well formed" for texts the Variant parser refused.
    """
    return F.get_json_object(text, "$").isNotNull()
