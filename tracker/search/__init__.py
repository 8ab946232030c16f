"""The run filter and order-by language, shared by every backend: its vocabulary and syntax tree
(:mod:`~tracker.search.grammar`), the parser (:mod:`~tracker.search.parser`), the formatter and
quoting (:mod:`~tracker.search.format`) and the Python interpreter
(:mod:`~tracker.search.interpret`); every name is importable from here.

On every filter MLflow's ``search_runs`` accepts, it returns what MLflow returns on its SQLite
store (a differential test checks this against the real ``mlflow`` package); it adds ``OR``,
parentheses, ``IN`` for every field, numeric param comparisons, ``ESCAPE`` and escape strings.
Grammar::

    filter   := or_expr | <empty>
    or_expr  := and_expr (OR and_expr)*              AND binds tighter than OR
    and_expr := term (AND term)*
    term     := '(' or_expr ')' | clause
    clause   := field op value [ESCAPE string] | field IS [NOT] NULL
    field    := [type '.'] key                       no type means an attribute
    type     := metrics | metric | params | param | parameters | parameter
              | tags | tag | attributes | attribute | attr | run
    key      := bare key (letters, digits, _ . - /), or `quoted`, "quoted" or E'escaped'
    op       := = | == | != | <> | < | <= | > | >= | [NOT] LIKE | [NOT] ILIKE | [NOT] IN
    value    := string | number | '(' value (',' value)* ')'
    string   := 'text' | "text" | E'text'

Keywords, types and attribute names are case-insensitive; metric, param and tag keys are not. The
first dot ends the type: ``metrics.1day.excess_return.mean`` is the metric
``1day.excess_return.mean``. ``tags.mlflow.runName`` is the run name (MLflow keeps the name in
that tag). Numbers are decimal literals (``-1``, ``.5``, ``1e-3``); integers beyond 2**53 are
read as floats.

Quoting is MLflow's (that is, sqlparse's): the text between the quotes is taken as it is, nothing
is unescaped. A doubled quote or a backslash before a quote does not end the string but stays in
it: ``'it''s'`` is the five characters ``it''s``; write ``"it's"`` for ``it's``. For text no plain
quoting can hold, an escape string ``E'...'`` (PostgreSQL's) reads ``\\x`` as ``x`` and ``''`` as
``'``: ``E'it\'s "x"'``. MLflow does not accept escape strings.

What each type accepts:

- ``metrics``: ``= != < <= > >= IN NOT IN`` with numbers (``metrics.IC > 0.05``, never
  ``'0.05'``); ``IS NULL`` / ``IS NOT NULL`` test whether the run logged the metric. A NaN value
  is logged; as in MLflow (and IEEE 754) it satisfies only ``!=`` and ``NOT IN``.
- ``params``: with strings ``= != LIKE ILIKE IN`` (and the ``NOT`` forms); with unquoted
  numbers ``= != < <= > >= IN NOT IN`` compare numerically, and only params whose value reads as a
  number (:func:`param_number`) can match: ``params.lr <= 0.01``. An IN list is all strings or all
  numbers. ``IS [NOT] NULL`` tests whether the run has the param.
- ``tags``: like params, strings only.
- attributes ``run_id`` (``id``), ``run_name`` (``name``, ``"run name"``), ``status``,
  ``experiment_id``, ``lifecycle`` (``lifecycle_stage``) are strings, like tags; ``start_time``
  (``created``), ``end_time`` and ``heartbeat`` are numbers (epoch milliseconds) and may be NULL.
- ``status`` ignores case (``status = 'finished'``), and ``'stale'`` names a RUNNING run whose
  heartbeat (or, for runs written by other tools, start time) is older than
  ``tracker.stale.DEFAULT_STALE_AFTER``, as ``tracker ls`` shows it: a stale run is both
  ``'running'`` and ``'stale'``, so ``status = 'running'`` includes it and
  ``status != 'stale'`` excludes it.

A comparison on a metric, param, tag or NULL attribute that the run does not have is false, even
for ``!=`` and ``NOT IN``. ``LIKE`` is case-sensitive; ``%`` matches any text and ``_`` one
character, everywhere in the pattern: as in SQL and MLflow on SQLite there is no escape character
unless ``ESCAPE`` names one (``tags.x LIKE '100!%' ESCAPE '!'`` matches ``100%``). ``ILIKE``
also ignores the case of ASCII letters (only those: ``'é'`` does not match ``'É'``).

A filter holds at most :data:`MAX_CLAUSES` comparisons and nests parentheses at most
:data:`MAX_DEPTH` deep.

Order-by items are ``field [ASC|DESC]`` or ``-field`` (descending), for example
``["metrics.IC DESC", "params.lr"]``; a field may appear once. Strings sort by code point, params
as strings, experiment ids as numbers. Runs with a value come first, then NaN, then runs without
one, in either direction; ties go to the latest ``start_time``, then the smallest ``run_id``.
"""

from tracker.search.format import KEY_QUOTES, format_field, format_filter, quote
from tracker.search.grammar import (
    ATTRIBUTES,
    COMPARE_OPS,
    LIKE_OPS,
    LIST_OPS,
    MAX_CLAUSES,
    MAX_DEPTH,
    NULL_OPS,
    NUMERIC_ATTRIBUTES,
    RUN_NAME_TAG,
    STALE,
    And,
    Comparison,
    Expr,
    Or,
    OrderKey,
    ascii_fold,
    ascii_upper,
    like_parts,
    param_number,
)
from tracker.search.interpret import (
    RunView,
    is_stale,
    search_in_python,
    sort_runs,
    stale_cutoff,
    status_comparison,
    to_predicate,
)
from tracker.search.parser import parse_filter, parse_order_by

__all__ = [
    "ATTRIBUTES",
    "And",
    "COMPARE_OPS",
    "Comparison",
    "Expr",
    "KEY_QUOTES",
    "LIKE_OPS",
    "LIST_OPS",
    "MAX_CLAUSES",
    "MAX_DEPTH",
    "NULL_OPS",
    "NUMERIC_ATTRIBUTES",
    "Or",
    "OrderKey",
    "RUN_NAME_TAG",
    "RunView",
    "STALE",
    "ascii_fold",
    "ascii_upper",
    "format_field",
    "format_filter",
    "is_stale",
    "like_parts",
    "param_number",
    "parse_filter",
    "parse_order_by",
    "quote",
    "search_in_python",
    "sort_runs",
    "stale_cutoff",
    "status_comparison",
    "to_predicate",
]
