//! Hand-written multi-row statements shared by the SQLite and MySQL write
//! paths: `{head} VALUES (?, ..), (?, ..) {tail}`, split into chunks that
//! stay under a bind-parameter and a byte budget.
//!
//! (PostgreSQL binds whole columns as arrays and `unnest`s them: one
//! statement per step whatever the batch size, see `pg::write`.)

use diesel::backend::Backend;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};

/// Upper bound of bound parameters per statement. SQLite (bundled, >= 3.32)
/// allows 32766 and MySQL 65535; staying well below keeps statements small
/// to prepare.
pub(crate) const MAX_BINDS: usize = 8_000;

/// Upper bound of the payload bytes (message bodies and extras) of one
/// statement: MySQL refuses packets above `max_allowed_packet` (16 MiB by
/// default on MariaDB, 64 MiB on MySQL 8), and smaller statements are gentler
/// on replication.
pub(crate) const MAX_STATEMENT_BYTES: usize = 4 * 1024 * 1024;

/// Rows of `columns` bound values that fit in one statement.
pub(crate) const fn rows_per_statement(columns: usize) -> usize {
    let n = MAX_BINDS / columns;
    if n == 0 { 1 } else { n }
}

/// `(?, ?, ...), (?, ?, ...)`: `rows` tuples of `columns` placeholders.
pub(crate) fn placeholders(rows: usize, columns: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(", "));
    vec![tuple.as_str(); rows].join(", ")
}

/// `?, ?, ?`: `n` placeholders (for `IN (...)`).
pub(crate) fn list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Splits `rows` into runs of at most `max_rows` rows whose `weight` sums to
/// at most `max_weight` (a single heavier row gets a run of its own).
pub(crate) fn split_by<T>(
    rows: &[T],
    max_rows: usize,
    max_weight: usize,
    weight: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let max_rows = max_rows.max(1);
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let mut n = 0;
        let mut w = 0usize;
        for r in rest.iter().take(max_rows) {
            let rw = weight(r);
            if n > 0 && w.saturating_add(rw) > max_weight {
                break;
            }
            w = w.saturating_add(rw);
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n.max(1).min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// A raw SQL query with dynamically bound values.
pub(crate) type Boxed<'q, DB> = BoxedSqlQuery<'q, DB, SqlQuery>;

/// One `{head} VALUES (..), (..) {tail}` statement per chunk, each row bound
/// by `bind` (which must bind exactly `columns` values).
///
/// Hand-written rather than diesel's batch insert: on SQLite diesel runs a
/// batch as one statement per row, and neither backend's upsert dialect
/// (`ON CONFLICT ... RETURNING`, `ON DUPLICATE KEY UPDATE ... VALUES()`) is
/// fully expressible in the DSL.
pub(crate) fn statements<'q, DB, T>(
    head: &'q str,
    tail: &'q str,
    columns: usize,
    chunks: Vec<&'q [T]>,
    bind: impl Fn(Boxed<'q, DB>, &'q T) -> Boxed<'q, DB> + 'q,
) -> impl Iterator<Item = Boxed<'q, DB>> + 'q
where
    DB: Backend + 'q,
{
    chunks.into_iter().map(move |chunk| {
        let sql = format!(
            "{head} VALUES {} {tail}",
            placeholders(chunk.len(), columns)
        );
        chunk
            .iter()
            .fold(diesel::sql_query(sql).into_boxed::<DB>(), &bind)
    })
}

/// [`statements`] over chunks that fit under [`MAX_BINDS`].
pub(crate) fn chunked<'q, DB, T>(
    head: &'q str,
    tail: &'q str,
    columns: usize,
    rows: &'q [T],
    bind: impl Fn(Boxed<'q, DB>, &'q T) -> Boxed<'q, DB> + 'q,
) -> impl Iterator<Item = Boxed<'q, DB>> + 'q
where
    DB: Backend + 'q,
{
    let chunks = rows.chunks(rows_per_statement(columns)).collect();
    statements(head, tail, columns, chunks, bind)
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::BigInt;
    use diesel::sqlite::Sqlite;

    use super::*;

    #[test]
    fn placeholders_render() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(1, 1), "(?)");
        assert_eq!(list(3), "?, ?, ?");
    }

    #[test]
    fn chunks_stay_under_the_bind_limit() {
        assert_eq!(rows_per_statement(13), 615);
        assert!(rows_per_statement(13) * 13 <= MAX_BINDS);
        assert_eq!(rows_per_statement(MAX_BINDS + 1), 1);
    }

    #[test]
    fn chunked_statements_cover_all_rows() {
        let rows: Vec<i64> = (0..9_000).collect();
        let queries: Vec<String> =
            chunked::<Sqlite, _>("INSERT INTO t (a, b)", "X", 2, &rows, |q, r| {
                q.bind::<BigInt, _>(*r).bind::<BigInt, _>(*r)
            })
            .map(|q| diesel::debug_query::<Sqlite, _>(&q).to_string())
            .collect();
        assert_eq!(queries.len(), 3);
        let first = queries.first().unwrap();
        assert!(first.starts_with("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"));
        assert!(first.contains(") X"));
        let tuples: usize = queries.iter().map(|q| q.matches("(?, ?)").count()).sum();
        assert_eq!(tuples, 9_000);
    }

    #[test]
    fn split_by_respects_rows_and_weight() {
        let rows = [5usize, 5, 5, 20, 1, 1, 1, 1];
        let chunks = split_by(&rows, 3, 10, |w| *w);
        assert_eq!(
            chunks,
            vec![&[5, 5][..], &[5][..], &[20][..], &[1, 1, 1][..], &[1][..]]
        );
        assert!(split_by(&[] as &[usize], 3, 10, |w| *w).is_empty());
        // max_rows 0 is treated as 1
        assert_eq!(split_by(&rows, 0, 100, |w| *w).len(), rows.len());
    }
}
