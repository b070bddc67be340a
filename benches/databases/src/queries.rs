//! The shop's three queries, once for a blocking `PgConnection` (inline, spawn_blocking,
//! deadpool-diesel and offthread all run these same functions) and once for diesel-async's
//! `AsyncPgConnection` (the same Diesel DSL, awaited).

use diesel::dsl::{count, sum};
use diesel::prelude::*;

use crate::db::{orders, users, Answer, NewOrder, Order, Placed, Request, TopCustomer, User, PAGE};

/// Blocking: one request, on `conn`.
pub fn serve(conn: &mut PgConnection, request: Request) -> QueryResult<Answer> {
    Ok(match request {
        Request::Read { user_id } => crate::db::digest(read_user(conn, user_id)?),
        Request::Write {
            user_id,
            amount_cents,
            placed_at,
        } => Answer::Write(place_order(conn, user_id, amount_cents, placed_at)?),
        Request::Report { from, to, sleep } => {
            crate::db::digest(top_customers(conn, from, to, sleep)?)
        }
    })
}

/// A user and their `PAGE` latest orders.
pub fn read_user(conn: &mut PgConnection, user_id: i64) -> QueryResult<(Option<User>, Vec<Order>)> {
    let user = users::table
        .find(user_id)
        .select(User::as_select())
        .first(conn)
        .optional()?;
    let latest = orders::table
        .filter(orders::user_id.eq(user_id))
        .order((orders::placed_at.desc(), orders::id.desc()))
        .limit(PAGE)
        .select(Order::as_select())
        .load(conn)?;
    Ok((user, latest))
}

/// Places an order and updates the user's totals, in one transaction.
pub fn place_order(
    conn: &mut PgConnection,
    user_id: i64,
    amount_cents: i32,
    placed_at: i64,
) -> QueryResult<Placed> {
    conn.transaction(|conn| {
        let order_count = diesel::update(users::table.find(user_id))
            .set((
                users::order_count.eq(users::order_count + 1),
                users::total_cents.eq(users::total_cents + i64::from(amount_cents)),
            ))
            .returning(users::order_count)
            .get_result(conn)?;
        let order_id = diesel::insert_into(orders::table)
            .values(NewOrder {
                user_id,
                amount_cents,
                placed_at,
            })
            .returning(orders::id)
            .get_result(conn)?;
        Ok(Placed {
            order_id,
            order_count,
        })
    })
}

/// The `PAGE` customers who spent most in `[from, to)`; with `sleep`, after holding the
/// connection in `pg_sleep(0.05)` (a slow report).
pub fn top_customers(
    conn: &mut PgConnection,
    from: i64,
    to: i64,
    sleep: bool,
) -> QueryResult<Vec<TopCustomer>> {
    if sleep {
        diesel::sql_query("SELECT pg_sleep(0.05)").execute(conn)?;
    }
    orders::table
        .inner_join(users::table)
        .filter(orders::placed_at.ge(from).and(orders::placed_at.lt(to)))
        .group_by((users::id, users::name))
        .select((
            users::id,
            users::name,
            sum(orders::amount_cents),
            count(orders::id),
        ))
        .order((sum(orders::amount_cents).desc(), users::id))
        .limit(PAGE)
        .load(conn)
}

/// The same queries on diesel-async.
pub mod nonblocking {
    use diesel::dsl::{count, sum};
    use diesel::prelude::*;
    use diesel_async::scoped_futures::ScopedFutureExt;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    use crate::db::{
        orders, users, Answer, NewOrder, Order, Placed, Request, TopCustomer, User, PAGE,
    };

    pub async fn serve(conn: &mut AsyncPgConnection, request: Request) -> QueryResult<Answer> {
        Ok(match request {
            Request::Read { user_id } => crate::db::digest(read_user(conn, user_id).await?),
            Request::Write {
                user_id,
                amount_cents,
                placed_at,
            } => Answer::Write(place_order(conn, user_id, amount_cents, placed_at).await?),
            Request::Report { from, to, sleep } => {
                crate::db::digest(top_customers(conn, from, to, sleep).await?)
            }
        })
    }

    pub async fn read_user(
        conn: &mut AsyncPgConnection,
        user_id: i64,
    ) -> QueryResult<(Option<User>, Vec<Order>)> {
        let user = users::table
            .find(user_id)
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?;
        let latest = orders::table
            .filter(orders::user_id.eq(user_id))
            .order((orders::placed_at.desc(), orders::id.desc()))
            .limit(PAGE)
            .select(Order::as_select())
            .load(conn)
            .await?;
        Ok((user, latest))
    }

    pub async fn place_order(
        conn: &mut AsyncPgConnection,
        user_id: i64,
        amount_cents: i32,
        placed_at: i64,
    ) -> QueryResult<Placed> {
        conn.transaction(|conn| {
            async move {
                let order_count = diesel::update(users::table.find(user_id))
                    .set((
                        users::order_count.eq(users::order_count + 1),
                        users::total_cents.eq(users::total_cents + i64::from(amount_cents)),
                    ))
                    .returning(users::order_count)
                    .get_result(conn)
                    .await?;
                let order_id = diesel::insert_into(orders::table)
                    .values(NewOrder {
                        user_id,
                        amount_cents,
                        placed_at,
                    })
                    .returning(orders::id)
                    .get_result(conn)
                    .await?;
                Ok(Placed {
                    order_id,
                    order_count,
                })
            }
            .scope_boxed()
        })
        .await
    }

    pub async fn top_customers(
        conn: &mut AsyncPgConnection,
        from: i64,
        to: i64,
        sleep: bool,
    ) -> QueryResult<Vec<TopCustomer>> {
        if sleep {
            diesel::sql_query("SELECT pg_sleep(0.05)")
                .execute(conn)
                .await?;
        }
        orders::table
            .inner_join(users::table)
            .filter(orders::placed_at.ge(from).and(orders::placed_at.lt(to)))
            .group_by((users::id, users::name))
            .select((
                users::id,
                users::name,
                sum(orders::amount_cents),
                count(orders::id),
            ))
            .order((sum(orders::amount_cents).desc(), users::id))
            .limit(PAGE)
            .load(conn)
            .await
    }
}
