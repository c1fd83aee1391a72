"""Stable ids: re-ingesting the same content gives the same ids on any machine and polars version.

response_id = hash(context, response); prompt_id = hash(context). Hashes are BLAKE2b over a
canonical text (turns joined with ASCII separators), 80 bits, hex."""

from __future__ import annotations

from hashlib import blake2b

import polars as pl

_DIGEST = 10  # bytes -> 20 hex chars; 80 bits keep collisions negligible at 10^8 responses


def stable_hash(*parts: str) -> str:
    """Hash of the parts, separated by a control character that does not occur in text keys."""
    return blake2b("\x1d".join(parts).encode("utf-8", "surrogatepass"), digest_size=_DIGEST).hexdigest()


def context_key_expr(col: str = "context") -> pl.Expr:
    """Canonical text of a context (list of {role, content}): role\\x1fcontent joined by \\x1e."""
    return (
        pl.col(col)
        .list.eval(pl.element().struct.field("role").fill_null("") + "\x1f" + pl.element().struct.field("content").fill_null(""))
        .list.join("\x1e")
        .fill_null("")
    )


def context_key(context: list[dict]) -> str:
    return "\x1e".join(f"{t.get('role') or ''}\x1f{t.get('content') or ''}" for t in context)


def hash_series(*cols: pl.Series) -> pl.Series:
    """Row-wise stable_hash over string columns (nulls hash as empty strings): the parts are joined
    by polars, so Python only runs the hash itself (same ids as stable_hash; polars strings are
    valid UTF-8, so "surrogatepass" has nothing to pass)."""
    if not cols or len(cols[0]) == 0:
        return pl.Series([], dtype=pl.String)
    joined = pl.select(pl.concat_str([pl.lit(c.fill_null("")) for c in cols], separator="\x1d")).to_series().to_list()
    return pl.Series([blake2b(t.encode(), digest_size=_DIGEST).hexdigest() for t in joined], dtype=pl.String)


def response_id(context: list[dict], response: str) -> str:
    return stable_hash(context_key(context), response)


def prompt_id(context: list[dict]) -> str:
    """The id of a prompt (its conversation before the response): the readers' rule, for callers and tests."""
    return stable_hash(context_key(context))
