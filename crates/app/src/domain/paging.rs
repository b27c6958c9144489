//! What every list shares: the number of matching rows, counted only as far as it stays cheap.
//!
//! An exact `count(*)` reads every matching row, so a list of a million rows would pay for a
//! million on every page. Lists count at most [`EXACT_TOTAL_UP_TO`] + 1 rows instead: the
//! total is exact up to that many and past it only says "more than [`EXACT_TOTAL_UP_TO`]".

use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QuerySelect, QueryTrait, Select};

/// Totals up to this many are exact; past it a list answers this number, marked not exact.
pub const EXACT_TOTAL_UP_TO: u64 = 1000;

/// How many rows match a list's filters, as far as they were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    /// The number of rows when `exact`; otherwise [`EXACT_TOTAL_UP_TO`], and there are more.
    pub count: u64,
    pub exact: bool,
}

impl Total {
    /// The total of `counted` rows found when at most `EXACT_TOTAL_UP_TO + 1` were read.
    pub fn of_bounded(counted: u64) -> Total {
        if counted > EXACT_TOTAL_UP_TO {
            Total {
                count: EXACT_TOTAL_UP_TO,
                exact: false,
            }
        } else {
            Total {
                count: counted,
                exact: true,
            }
        }
    }
}

/// Counts the rows of `select` (its filters; its columns and order do not matter), reading at
/// most `EXACT_TOTAL_UP_TO + 1` of them: `SELECT count(*) FROM (SELECT 1 ... LIMIT n)`.
pub async fn bounded_count<E: EntityTrait>(
    db: &impl ConnectionTrait,
    select: Select<E>,
) -> Result<Total, DbErr> {
    let rows = select
        .select_only()
        .expr(Expr::value(1))
        .limit(EXACT_TOTAL_UP_TO + 1)
        .into_query();
    let counted = Query::select()
        .expr_as(Expr::col(Asterisk).count(), Alias::new("counted"))
        .from_subquery(rows, Alias::new("bounded"))
        .to_owned();
    let row = db
        .query_one(&counted)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("count(*) answered no row".into()))?;
    let counted: i64 = row.try_get("", "counted")?;
    Ok(Total::of_bounded(u64::try_from(counted).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_exact_up_to_the_bound() {
        assert_eq!(
            Total::of_bounded(0),
            Total {
                count: 0,
                exact: true
            }
        );
        let last_exact = Total::of_bounded(EXACT_TOTAL_UP_TO);
        assert_eq!(last_exact.count, EXACT_TOTAL_UP_TO);
        assert!(last_exact.exact);
        let more = Total::of_bounded(EXACT_TOTAL_UP_TO + 1);
        assert_eq!(more.count, EXACT_TOTAL_UP_TO);
        assert!(!more.exact);
    }
}
