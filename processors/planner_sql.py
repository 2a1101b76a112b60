"""Text-to-SQL rules of the scripted planner, over the sample shop database.

SQL targets infra/sample/shop.sql (countries are ISO codes, plans starter/team/enterprise);
revenue counts paid orders only. `write_sql` is naive on purpose ("drop the orders table" gives
`DROP TABLE orders`): stopping that is the policy guard's job. Also the request vocabulary the
request rules share with it (`rx`, `EMAIL`, `DOCS_CUE`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["rx", "EMAIL", "DOCS_CUE", "read_sql", "write_sql"]


def rx(pattern: str) -> re.Pattern[str]:
    """A case-insensitive pattern."""
    return re.compile(pattern, re.IGNORECASE)


_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL = rx(rf"[a-z0-9._%+'-]+@{_LABEL}(?:\.{_LABEL})+")
DOCS_CUE = rx(r"\b(polic(y|ies)|process|procedure|how (do|can|should|would) (i|we|you)|how to|"
                r"guide|guideline|documentation|docs|handbook|playbook|runbook|terms|sla|allowed|"
                r"what happens|why|explain|describe|on-?call|rate limits?|retention|security|"
                r"onboarding|pricing|escalat\w*)\b")


# ---- SQL over the sample shop database ----------------------------------------------------------

_TABLES = {
    "customers": r"customers?|clients?|users?|accounts?|buyers?|subscribers?",
    "orders": r"orders?|sales?|purchases?|transactions?|refunds?",
    "products": r"products?|items?|skus?|offerings?",
}
_ENTITY = rx("|".join(rf"\b(?P<{t}>{w})\b" for t, w in _TABLES.items()))
_ALIAS = {"customers": "c", "orders": "o", "products": "p"}
_COLUMNS = {
    "customers": ["id", "name", "email", "country", "plan", "created_at"],
    "orders": ["id", "customer_id", "product_id", "quantity", "total_usd", "status", "ordered_at"],
    "products": ["id", "name", "category", "price_usd"],
}
# Joins run through orders, the only table that references the others.
_LINKS = {
    ("orders", "customers"): ("customer_id", "id"), ("orders", "products"): ("product_id", "id"),
    ("customers", "orders"): ("id", "customer_id"), ("products", "orders"): ("id", "product_id"),
}
_COUNTRIES = {
    "FR": "france|french", "BR": "brazil|brazilian", "CN": "china|chinese", "DE": "germany|german",
    "NG": "nigeria|nigerian", "MA": "morocco|moroccan", "SE": "sweden|swedish",
    "JP": "japan|japanese", "IT": "italy|italian", "IE": "ireland|irish", "ES": "spain|spanish",
    "US": r"united states|usa|u\.s\.a?\.?|america|american", "PL": "poland|polish",
    "IN": "india|indian", "NL": "netherlands|holland|dutch", "CA": "canada|canadian",
    "GB": r"united kingdom|uk|u\.k\.|great britain|britain|england|british",
    "AU": "australia|australian", "MX": "mexico|mexican", "AT": "austria|austrian",
    "CH": "switzerland|swiss", "BE": "belgium|belgian", "DK": "denmark|danish",
    "NO": "norway|norwegian", "FI": "finland|finnish", "PT": "portugal|portuguese",
}
_STATUSES = {"paid": r"paid|completed|successful|settled",
             "refunded": r"refunded|refunds?|returned",
             "pending": r"pending|unpaid|outstanding|open orders?"}
_PLAN = rx(r"\b(starter|team|enterprise)[- ](?:plan|tier|customers|clients|accounts)\b|"
            r"\bon (?:the |a )?(starter|team|enterprise)\b")
_CATEGORY = rx(r"\b(subscription|add-?on|service)s?[- ](?:products?|orders?|sales|revenue|items?|"
                r"category)\b|\bcategory\s+'?(subscription|add-?on|service)")
_ID = rx(r"\b(customer|client|order|product|item)s?\s*(?:#|id|number|no\.?)?\s*#?(\d+)\b")
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december"]
_MONTH = rx(rf"\b(?:in|during|for|of|since)\s+({'|'.join(_MONTHS)})\b")
_YEAR = rx(r"\b(20\d\d)\b")
_LIMIT_OPS = {"over": ">", "above": ">", "more than": ">", "greater than": ">", "at least": ">=",
              "under": "<", "below": "<", "less than": "<", "at most": "<="}
_MONEY_LIMIT = rx(rf"\b({'|'.join(_LIMIT_OPS)})\s*(?:\$\s*(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*"
                   r"(?:usd|dollars|\$))")
_DIM = rx(r"\b(?:by|per|for each|for every|each|across|in each)\s+(?:the\s+|their\s+|product\s+|"
           r"customer\s+)?(?P<d>countr(?:y|ies)|plans?|categor(?:y|ies)|products?|items?|"
           r"customers?|clients?|status|months?|years?)\b|\b(?P<m>monthly|yearly)\b")
_REVENUE = rx(r"\b(revenue|turnover|income|earnings|earned|spent|spend|spending|total sales|"
               r"sales (?:by|per|in|from|for|of)|order value|how much (?:\w+ ){0,4}?(?:refunded|"
               r"paid|spent|spend|made|earned|sold|bring in|brought in))\b")
_STRONG_SQL = rx(r"\b(how many|number of|count|revenue|average|avg|top \d+)\b")
_CUE = rx(r"\?|\b(how many|how much|number of|count|total|sum|average|avg|mean|top|list|show|"
           r"display|give me|get|fetch|pull|find|which|what|who|"
           r"see|all|most|least|highest|lowest|biggest|largest|best|cheapest|expensive|per|by)\b")
_COUNT = rx(r"\b(how many|number of|count|total (?:number of )?(?:orders|customers|clients|"
             r"products|items|sales|purchases))\b")
_SUPERLATIVE = rx(r"\b(top|most|highest|largest|biggest|best|least|lowest|fewest|cheapest|"
                   r"priciest|expensive|worst|bottom|leading)\b")
_RANKABLE = rx(r"\b(customers?|clients?|buyers?|products?|items?|countr(?:y|ies)|"
                r"categor(?:y|ies)|plans?)\b")
_NUMBER = rx(r"\b(?:top|first|last|latest|newest|bottom)\s+(\d+|one|two|three|four|five|six|seven|"
              r"eight|nine|ten|twenty)\b|\b(\d+|three|five|ten)\s+(?:most|best|biggest|largest|"
              r"cheapest|latest|newest|top)\b")
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10, "twenty": 20}
_TYPES = {"integer": "INTEGER", "int": "INTEGER", "number": "REAL", "real": "REAL", "float": "REAL",
          "decimal": "REAL", "text": "TEXT", "string": "TEXT", "date": "TEXT", "boolean": "INTEGER",
          "bool": "INTEGER"}
_FIELDS = {"price": "price_usd", "total": "total_usd", "amount": "total_usd",
           "email address": "email"}
_IDENT = re.compile(r"[a-z_][a-z0-9_]*")
# SQLite's keywords (sqlite.org/lang_keywords.html): a table named "in" or "set" must be quoted.
_SQL_KEYWORDS = frozenset("""
ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN BETWEEN
BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS CURRENT
CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE DESC DETACH
DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST
FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX
INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH
MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER
PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP REINDEX RELEASE
RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT SELECT SET TABLE TEMP TEMPORARY
THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN
WHERE WINDOW WITH WITHOUT""".split())  # noqa: SIM905 - laid out as the SQLite page lists them


@dataclass(frozen=True)
class _Cond:
    table: str
    """Table whose column the condition tests."""
    column: str
    """The column it tests."""
    render: Callable[[str], str]
    """SQL for the condition, given the column prefix ("c." inside a join, "" alone)."""


@dataclass
class _Query:
    select: list[str]
    tables: set[str]
    where: list[_Cond]
    group: str = ""
    order: str = ""
    limit: int = 0
    distinct: bool = False


@dataclass(frozen=True)
class _Dim:
    name: str
    table: str
    expr: str
    group: str = ""

    @property
    def group_by(self) -> str:
        return self.group or self.expr


def _lit(value: str | float) -> str:
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def _eq(table: str, column: str, values: list[str] | str | float) -> _Cond:
    if isinstance(values, list) and len(values) > 1:
        shown = ", ".join(map(_lit, values))
        return _Cond(table, column, lambda a: f"{a}{column} IN ({shown})")
    value = values[0] if isinstance(values, list) else values
    return _Cond(table, column, lambda a: f"{a}{column} = {_lit(value)}")


def _filters(text: str, base: str, *, money: bool = False) -> list[_Cond]:
    low = text.lower()
    conds: list[_Cond] = []
    if statuses := [s for s, w in _STATUSES.items() if re.search(rf"\b(?:{w})\b", low)]:
        conds.append(_eq("orders", "status", statuses))
    countries = [c for c, w in _COUNTRIES.items() if re.search(rf"\b(?:{w})(?!\w)", low)]
    if re.search(r"\bUS\b", text) and "US" not in countries:  # "us" the pronoun is no country
        countries.append("US")
    if countries:
        conds.append(_eq("customers", "country", countries))
    if plan := _PLAN.search(low):
        conds.append(_eq("customers", "plan", (plan.group(1) or plan.group(2)).lower()))
    if category := _CATEGORY.search(low):
        name = (category.group(1) or category.group(2)).lower()
        conds.append(_eq("products", "category", "add-on" if name.startswith("add") else name))
    for m in _ID.finditer(low):
        table = _table_of(m.group(1))
        if table == base or table == "orders" or base != "orders":
            conds.append(_eq(table, "id", int(m.group(2))))
        else:
            conds.append(_eq("orders", f"{table[:-1]}_id", int(m.group(2))))
    conds.extend(_eq("customers", "email", address.lower()) for address in EMAIL.findall(text))
    year, month = _YEAR.search(low), _MONTH.search(low)
    if year or month:
        table, column = _date_column(base, money=money)
        fmt = "%Y-%m" if year and month else "%Y" if year else "%m"
        value = "-".join(([year.group(1)] if year else []) +
                         ([f"{_MONTHS.index(month.group(1)) + 1:02d}"] if month else []))
        conds.append(_Cond(table, column, lambda a: f"strftime('{fmt}', {a}{column}) = '{value}'"))
    if limit := _MONEY_LIMIT.search(low):
        table, column = ("products", "price_usd") if base == "products" else ("orders", "total_usd")
        op, amount = _LIMIT_OPS[limit.group(1)], float(limit.group(2) or limit.group(3))
        conds.append(_Cond(table, column, lambda a: f"{a}{column} {op} {amount!r}"))
    return conds


def _date_column(base: str, *, money: bool) -> tuple[str, str]:
    # "customers in 2025" means sign-ups; anything about orders or money means order dates.
    if base == "customers" and not money:
        return "customers", "created_at"
    return "orders", "ordered_at"


def _table_of(word: str) -> str:
    m = _ENTITY.search(word)
    return m.lastgroup if m and m.lastgroup else ""


def _base(low: str, *, skip: tuple[int, int] = (0, 0)) -> str:
    for m in _ENTITY.finditer(low):
        if not skip[0] <= m.start() < skip[1] and m.lastgroup:
            return m.lastgroup
    return ""


_DIMS = {
    "coun": _Dim("country", "customers", "c.country"),
    "plan": _Dim("plan", "customers", "c.plan"),
    "cate": _Dim("category", "products", "p.category"),
    "prod": _Dim("product", "products", "p.name", "p.id, p.name"),
    "item": _Dim("product", "products", "p.name", "p.id, p.name"),
    "cust": _Dim("customer", "customers", "c.name", "c.id, c.name"),
    "clie": _Dim("customer", "customers", "c.name", "c.id, c.name"),
    "buye": _Dim("customer", "customers", "c.name", "c.id, c.name"),
    "stat": _Dim("status", "orders", "o.status"),
}


def _dim(low: str, *, base: str, money: bool) -> tuple[_Dim | None, tuple[int, int]]:
    """The "by X" / "per X" grouping of a question, and where it sits in the text."""
    m = _DIM.search(low)
    return (None, (0, 0)) if m is None else (_dimension(m.group("d") or m.group("m"), base=base,
                                                        money=money), m.span())


def _dimension(word: str, *, base: str = "orders", money: bool = True) -> _Dim:
    key = word.lower()[:4]
    if key in ("mont", "year"):
        table, column = _date_column(base, money=money)
        fmt = "%Y-%m" if key == "mont" else "%Y"
        return _Dim(key if key == "year" else "month", table,
                    f"strftime('{fmt}', {_ALIAS[table]}.{column})")
    return _DIMS[key]


def _render(q: _Query) -> str:
    tables = q.tables | {c.table for c in q.where}
    if len(tables) == 1:
        (only,) = tables
        source = f"{only} AS {_ALIAS[only]}"
    else:
        source = "orders AS o"
        if "customers" in tables:
            source += " JOIN customers AS c ON c.id = o.customer_id"
        if "products" in tables:
            source += " JOIN products AS p ON p.id = o.product_id"
    sql = f"SELECT {'DISTINCT ' if q.distinct else ''}{', '.join(q.select)} FROM {source}"
    if q.where:
        sql += " WHERE " + " AND ".join(c.render(f"{_ALIAS[c.table]}.") for c in q.where)
    for clause, value in (("GROUP BY", q.group), ("ORDER BY", q.order)):
        if value:
            sql += f" {clause} {value}"
    return sql + (f" LIMIT {q.limit}" if q.limit else "")


def _paid_by_default(conds: list[_Cond]) -> list[_Cond]:
    # Revenue means money kept: paid orders, unless the question names a status itself.
    has_status = any((c.table, c.column) == ("orders", "status") for c in conds)
    return conds if has_status else [*conds, _eq("orders", "status", "paid")]


def read_sql(text: str) -> str | None:
    """A SELECT answering `text` over the shop database, or None when it is no data question."""
    low = text.lower()
    if DOCS_CUE.search(low) and not _STRONG_SQL.search(low):
        return None
    money = bool(_REVENUE.search(low))
    ranking = bool(_SUPERLATIVE.search(low) and _RANKABLE.search(low))
    if not (_ENTITY.search(low) or money or ranking) or not _CUE.search(low):
        return None
    dim, span = _dim(low, base=_base(low) or "orders", money=money)
    base = "orders" if money else _base(low, skip=span) or ("orders" if dim is None else dim.table)
    conds = _filters(text, base, money=money)
    for intent in (_top_query, _average_query, _count_query, _money_query, _list_query):
        q = intent(low, base=base, money=money, dim=dim, conds=conds)
        if q is not None:
            return _render(q)
    return None



def _top_query(low: str, *, base: str, money: bool, dim: _Dim | None,
               conds: list[_Cond]) -> _Query | None:
    if "how many" in low or not _SUPERLATIVE.search(low):
        return None
    target = "customers" if low.startswith("who") else ""
    word = _RANKABLE.search(low)
    if not target and word is None:
        return None
    rank = _dimension(word.group(1) if word and not target else "customer")
    plural = target == "customers" or (word is not None and word.group(1).endswith(("s", "ies")))
    number = _NUMBER.search(low)
    n = number.group(1) or number.group(2) if number else ""
    limit = int(n) if n.isdigit() else _WORDS.get(n, 5 if plural else 1)
    ascending = bool(re.search(r"\b(least|lowest|fewest|cheapest|worst|bottom)\b", low))
    after = low[word.end():] if word else low
    if rank.name == "product" and re.search(r"\b(cheapest|priciest|expensive|price)\b", low):
        metric, tables, where = "p.price_usd", {"products"}, conds
    elif re.search(r"\b(orders?|order count|purchases)\b", after):
        metric, tables, where = "COUNT(o.id) AS orders", {"orders"}, conds
    elif re.search(r"\b(customers?|clients?)\b", after) and rank.name != "customer":
        metric, tables, where = "COUNT(DISTINCT c.id) AS customers", {"customers"}, conds
    elif re.search(r"\b(sold|sells?|selling|units|quantity|popular|bought|purchased)\b", low):
        metric, tables, where = "SUM(o.quantity) AS units_sold", {"orders"}, _paid_by_default(conds)
    else:
        metric, tables, where = ("ROUND(SUM(o.total_usd), 2) AS revenue_usd", {"orders"},
                                 _paid_by_default(conds))
    value = metric.rsplit(" AS ", 1)[-1]
    grouped = metric != "p.price_usd"
    return _Query([f"{rank.expr} AS {rank.name}", metric], tables | {rank.table}, where,
                  group=rank.group_by if grouped else "",
                  order=f"{value} {'ASC' if ascending else 'DESC'}, {rank.expr}", limit=limit)


def _average_query(low: str, *, base: str, money: bool, dim: _Dim | None,
                   conds: list[_Cond]) -> _Query | None:
    if not re.search(r"\b(average|avg|mean)\b", low):
        return None
    if re.search(r"\bper (customer|client)\b", low):
        metric = "ROUND(SUM(o.total_usd) / COUNT(DISTINCT o.customer_id), 2) AS per_customer_usd"
        return _Query([metric], {"orders"}, _paid_by_default(conds))
    if base == "products" or re.search(r"\bprices?\b", low):
        return _grouped("ROUND(AVG(p.price_usd), 2) AS average_price_usd", {"products"}, conds, dim)
    if re.search(r"\b(quantity|units|items per order)\b", low):
        return _grouped("ROUND(AVG(o.quantity), 2) AS average_quantity", {"orders"}, conds, dim)
    return _grouped("ROUND(AVG(o.total_usd), 2) AS average_order_value_usd", {"orders"},
                    _paid_by_default(conds), dim)


def _count_query(low: str, *, base: str, money: bool, dim: _Dim | None,
                 conds: list[_Cond]) -> _Query | None:
    if not _COUNT.search(low):
        return None
    tables = {base} | {c.table for c in conds} | ({dim.table} if dim else set())
    alias = _ALIAS[base]
    metric = f"COUNT(DISTINCT {alias}.id)" if len(tables) > 1 and base != "orders" else "COUNT(*)"
    return _grouped(f"{metric} AS {base[:-1]}_count", {base}, conds, dim)


def _money_query(low: str, *, base: str, money: bool, dim: _Dim | None,
                 conds: list[_Cond]) -> _Query | None:
    if not money:
        return None
    where = _paid_by_default(conds)
    status = "refunded" if "refunded" in low else "pending" if "pending" in low else ""
    name = f"{status}_usd" if status else "revenue_usd"
    return _grouped(f"ROUND(SUM(o.total_usd), 2) AS {name}", {"orders"}, where, dim)


def _list_query(low: str, *, base: str, money: bool, dim: _Dim | None,
                conds: list[_Cond]) -> _Query | None:
    alias = _ALIAS[base]
    columns = [f"{alias}.{c}" for c in _COLUMNS[base]]
    order = {"orders": "o.ordered_at DESC, o.id", "customers": "c.id", "products": "p.id"}[base]
    number = _NUMBER.search(low)
    n = number.group(1) or number.group(2) if number else ""
    tables = {base} | ({dim.table} if dim else set())
    joined = len(tables | {c.table for c in conds}) > 1
    return _Query(columns, tables, conds, order=f"{dim.expr}, {order}" if dim else order,
                  limit=int(n) if n.isdigit() else _WORDS.get(n, 100),
                  distinct=joined and base != "orders")


def _grouped(metric: str, tables: set[str], where: list[_Cond], dim: _Dim | None) -> _Query:
    if dim is None:
        return _Query([metric], tables, where)
    value = metric.rsplit(" AS ", 1)[-1]
    timeline = dim.name in ("month", "year")  # periods read best in calendar order
    return _Query([f"{dim.expr} AS {dim.name}", metric], tables | {dim.table}, where,
                  group=dim.group_by, order=dim.expr if timeline else f"{value} DESC, {dim.expr}")



# ---- changes to data or schema: written as asked, for the policy guard to judge -----------------

_WRITE_VERB = rx(r"\b(drop|delete|truncate|alter|remove|wipe|purge|erase|clear|empty|update|mark|"
                  r"set|change|rename|add|destroy)\b")
_ASKING = rx(r"^(how|what|what's|why|when|where|who|which|can|could|is|are|do|does|did|should)\b")
_ALTER = rx(r"\balter\s+(?:the\s+)?(?:table\s+)?(?P<t>\w+)(?:\s+table)?\s*(?P<rest>.*)$")
_ADD_COLUMN = rx(r"\badd\s+(?:an?\s+)?(?:new\s+)?(?:column\s+|field\s+)?(?:called\s+|named\s+)?"
                  r"(?P<c>\w+)(?:\s+column)?(?:\s+(?:of\s+type\s+|as\s+)?\(?(?P<ty>"
                  + "|".join(_TYPES) + r")\)?)?"
                  r"(?:\s+(?:to|in)\s+(?:the\s+)?(?P<t>\w+)(?:\s+table)?)?")
_DROP_COLUMN = rx(r"\b(?:drop|remove|delete)\s+(?:the\s+)?(?:column\s+(?P<c1>\w+)|"
                   r"(?P<c2>\w+)\s+column)(?:\s+(?:from|of|in)\s+(?:the\s+)?(?P<t>\w+))?")
_RENAME = rx(r"\brename\s+(?:the\s+)?(?:(?:table\s+)?(?P<t>\w+)(?:\s+table)?\s+)?(?:column\s+"
              r"(?P<c>\w+)\s+)?to\s+(?P<new>\w+)")
_DROP_TABLE = rx(r"\b(?:drop|remove|delete|destroy)\s+(?:the\s+)?(?:table\s+(?P<t1>\w+)|"
                  r"(?P<t2>\w+)\s+table\b)|^drop\s+(?:the\s+)?(?P<t3>\w+)$")
_EMPTY_TABLE = rx(r"\b(?:truncate|wipe|purge|empty|clear|erase)\s+(?:out\s+)?(?:all\s+)?"
                   r"(?:the\s+)?(?:table\s+)?(?P<t>\w+)")
_MARK = rx(r"\bmark\s+(?:all\s+)?(?:the\s+)?(?:(?P<old>\w+)\s+orders|orders?\s*#?(?P<id>\d+))\s+"
            r"as\s+(?P<v>\w+)")
_ROW = r"(?P<e>customer|client|order|product|item)\s*#?(?P<id>\d+)"
_SET = [rx(rf"\b(?:set|change|update)\s+(?:the\s+)?(?P<col>[a-z_ ]+?)\s+(?:of|for)\s+{_ROW}\s+"
            r"to\s+(?P<v>.+)$"),
        rx(rf"\b(?:update|change|set)\s+{_ROW}(?:'s)?\s+(?P<col>[a-z_ ]+?)\s+to\s+(?P<v>.+)$")]


def write_sql(text: str) -> str | None:
    """The statement a change request asks for, or None when `text` asks for no change."""
    text = text.strip(" .!?")
    low = text.lower()
    if _ASKING.match(low) or not _WRITE_VERB.search(low):
        return None
    for build in (_alter_sql, _drop_sql, _delete_sql, _update_sql):
        if sql := build(low, text):
            return sql
    return None


def _alter_sql(low: str, text: str) -> str | None:
    table, rest = "", low
    if alter := _ALTER.search(low):
        table, rest = _table_name(alter.group("t")), alter.group("rest")
    named_column = alter or re.search(r"\b(column|field)\b", rest)
    add = _ADD_COLUMN.search(rest) if named_column else None
    if add and (table := table or _table_name(add["t"])):
        kind = _TYPES.get((add.group("ty") or "text").lower(), "TEXT")
        return f"ALTER TABLE {table} ADD COLUMN {_ident(add.group('c'))} {kind}"
    if (drop := _DROP_COLUMN.search(rest)) and (table := table or _table_name(drop["t"])):
        return f"ALTER TABLE {table} DROP COLUMN {_ident(drop.group('c1') or drop.group('c2'))}"
    if (rename := _RENAME.search(rest)) and (table := table or _table_name(rename["t"])):
        if rename.group("c"):
            return (f"ALTER TABLE {table} RENAME COLUMN {_ident(rename.group('c'))} TO "
                    f"{_ident(rename.group('new'))}")
        return f"ALTER TABLE {table} RENAME TO {_ident(rename.group('new'))}"
    # "alter the customers table" names no change; adding a column is the mildest one that parses.
    return f"ALTER TABLE {table} ADD COLUMN notes TEXT" if alter and table else None


def _drop_sql(low: str, text: str) -> str | None:
    if m := _DROP_TABLE.search(low):
        word = m.group("t1") or m.group("t2") or m.group("t3")
        if m.group("t3") and not _table_of(word):
            return None
        table = _table_name(word)
        return f"DROP TABLE {table}" if table else None
    if (m := _EMPTY_TABLE.search(low)) and (table := _table_name(m.group("t"))):
        return _delete(table, text)
    return None


def _delete_sql(low: str, text: str) -> str | None:
    if not re.search(r"\b(delete|remove|erase|purge)\b", low):
        return None
    table = _base(low)
    return _delete(table, text) if table else None


def _delete(table: str, text: str) -> str:
    conds = _filters(text, table) if table in _COLUMNS else []
    where = " AND ".join(_scoped(c, table) for c in conds)
    return f"DELETE FROM {table}" + (f" WHERE {where}" if where else "")


def _scoped(cond: _Cond, table: str) -> str:
    """`cond` as a test on `table`'s rows, through subqueries when it is about another table."""
    if cond.table == table:
        return cond.render("")
    hop = cond.table if (table, cond.table) in _LINKS else "orders"
    local, remote = _LINKS[(table, hop)]
    inner = cond.render("") if hop == cond.table else _scoped(cond, hop)
    return f"{local} IN (SELECT {remote} FROM {hop} WHERE {inner})"


def _update_sql(low: str, text: str) -> str | None:
    if m := _MARK.search(low):
        status = _status(m.group("v"))
        if m.group("id"):
            return f"UPDATE orders SET status = {_lit(status)} WHERE id = {int(m.group('id'))}"
        old = _lit(_status(m.group("old")))
        return f"UPDATE orders SET status = {_lit(status)} WHERE status = {old}"
    m = next((found for pattern in _SET if (found := pattern.search(low))), None)
    if m is None:
        return None
    table = _table_of(m["e"])
    column = _FIELDS.get(m["col"].strip(), m["col"].strip().replace(" ", "_"))
    if column not in _COLUMNS[table] or column == "id":
        return None
    # The value keeps the request's spelling ("Ada Lovelace"), so it is cut from `text`.
    raw = text[m.start("v"):] if len(text) == len(low) else m["v"]
    value = _value(column, raw.strip(" '\""))
    return f"UPDATE {table} SET {column} = {_lit(value)} WHERE id = {int(m['id'])}"


def _value(column: str, raw: str) -> str | float:
    if column in ("price_usd", "total_usd", "quantity"):
        number = raw.lstrip("$").replace(",", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", number):
            return int(number) if column == "quantity" else float(number)
    if column == "country":
        return next((c for c, w in _COUNTRIES.items() if re.fullmatch(w, raw.lower())), raw.upper())
    if column == "status":
        return _status(raw)
    return raw.lower() if column == "plan" else raw


def _status(word: str) -> str:
    return next((s for s, w in _STATUSES.items() if re.fullmatch(w, word.lower())), word.lower())


def _table_name(word: str | None) -> str:
    """The schema's name for a table word ("clients" → customers); other words as identifiers."""
    return (_table_of(word) or _ident(word)) if word else ""


def _ident(word: str) -> str:
    name = word.lower()
    if _IDENT.fullmatch(name) and name.upper() not in _SQL_KEYWORDS:
        return name
    return '"' + word.replace('"', '""') + '"'
