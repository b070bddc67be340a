//! The service: an axum application whose handlers await offloaded Diesel calls. The data
//! layer is a trait (`Shop`) behind `Arc<dyn Shop>` in the application's state, as real
//! applications keep it; its implementation runs the orm example's queries (their
//! blocking twins) on the `DATA` pool, on SQLite or PostgreSQL, each worker with its own
//! connection.

use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use diesel::result::{DatabaseErrorKind, Error as DbError};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use offthread::offload;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::db::{self, Db, Order, Placed, TopCustomer, User};

/// Why the data layer gave no answer: the database's own error, or offthread's when the
/// call could not run its query (the worker could not connect to the database: it is down
/// or restarting; the pool is shut down). Diesel's error cannot hold the second, so the
/// methods return this type, whose `From<offthread::Error>` makes a failed connect an `Err`
/// like any other instead of a panic in the handler.
#[derive(Debug)]
pub enum ShopError {
    Db(DbError),
    Unavailable(offthread::Error),
}

impl From<DbError> for ShopError {
    fn from(e: DbError) -> ShopError {
        ShopError::Db(e)
    }
}

impl From<offthread::Error> for ShopError {
    fn from(e: offthread::Error) -> ShopError {
        ShopError::Unavailable(e)
    }
}

pub type ShopResult<T> = Result<T, ShopError>;

/// What the handlers need from the database. `#[offload]` makes each method return an
/// `Offload<R>`, so the trait works as `dyn Shop` with no boxed futures, and a test double
/// can answer with `Offload::ready`.
#[offload]
pub trait Shop: Send + Sync {
    /// A user by id.
    fn user(&self, id: i64) -> ShopResult<Option<User>>;
    /// A page of a user's orders, newest first.
    fn orders(&self, user_id: i64, limit: i64, offset: i64) -> ShopResult<Vec<Order>>;
    /// Places an order; `NotFound` if the user does not exist.
    fn place_order(&self, user_id: i64, amount_cents: i32) -> ShopResult<Placed>;
    /// The `n` customers who spent most over the whole history (a slow aggregate).
    fn top_customers(&self, n: i64) -> ShopResult<Vec<TopCustomer>>;
}

/// `Shop` on the orm example's database (SQLite or PostgreSQL), on its `DATA` pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct DbShop;

#[offload(pool = db::DATA)]
impl Shop for DbShop {
    fn user(&self, #[local] conn: &mut Db, id: i64) -> ShopResult<Option<User>> {
        // On a `data` worker, inside the request's span (offthread's `tracing` feature).
        tracing::debug!(id, "find user");
        Ok(db::find_user_blocking(conn, id)?)
    }

    fn orders(
        &self,
        #[local] conn: &mut Db,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> ShopResult<Vec<Order>> {
        let newest = db::recent_orders_blocking(conn, user_id, offset + limit)?;
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(newest
            .into_iter()
            .skip(skip)
            .map(|(order, _)| order)
            .collect())
    }

    // SQLite has one writer: the others wait asynchronously, not in its busy handler (and
    // on PostgreSQL, as in the orm example, writes keep the same limit).
    #[offload(limit = 1)]
    fn place_order(
        &self,
        #[local] conn: &mut Db,
        user_id: i64,
        amount_cents: i32,
    ) -> ShopResult<Placed> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Ok(db::place_order_blocking(conn, user_id, amount_cents, now)?)
    }

    fn top_customers(&self, #[local] conn: &mut Db, n: i64) -> ShopResult<Vec<TopCustomer>> {
        Ok(db::top_customers_blocking(conn, i64::MIN, i64::MAX, n)?)
    }
}

/// The application's state: the data layer, and what renders `/metrics`.
#[derive(Clone)]
pub struct AppState {
    pub shop: Arc<dyn Shop>,
    /// Renders the installed Prometheus recorder's figures.
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
}

/// Buckets, in seconds, for offthread's latency histograms, 100 µs to 10 s
/// (`offthread_function_queue_wait_seconds`, `offthread_function_run_seconds`).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The Prometheus exporter the service installs: the `*_seconds` histograms rendered as
/// Prometheus histograms with `LATENCY_BUCKETS` (which a dashboard can sum over instances
/// and turn into a p99 with `histogram_quantile`), not as the exporter's default summaries.
pub fn prometheus() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
        .expect("buckets are not empty")
}

/// The routes. Every error, an unknown route's 404 and a wrong method's 405 included, is
/// answered with a JSON body `{"error": "..."}`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/users/{id}", get(user))
        .route("/users/{id}/orders", get(orders))
        .route("/orders", post(place_order))
        .route("/reports/top-customers", get(top_customers))
        .route("/metrics", get(metrics))
        // After the routes: it applies to those registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(in_a_span))
        .with_state(state)
}

/// Runs each request in a span of its own; with offthread's `tracing` feature, the span
/// is entered on the worker that runs the request's offloaded calls too.
async fn in_a_span(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path()
    );
    next.run(request).instrument(span).await
}

/// A JSON error body with its status: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        match e {
            // An order for a user that does not exist fails the orders table's foreign key.
            DbError::NotFound
            | DbError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
                ApiError(StatusCode::NOT_FOUND, "no such user".to_owned())
            }
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl From<ShopError> for ApiError {
    fn from(e: ShopError) -> ApiError {
        match e {
            ShopError::Db(e) => e.into(),
            // The database is down or restarting: a client may retry (elsewhere) soon.
            ShopError::Unavailable(e) => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

fn bad_request(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, e.to_string())
}

/// A query parameter's value: `default` when it is absent, a 400 when it is out of `range`.
fn param(
    name: &str,
    value: Option<i64>,
    default: i64,
    range: RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(bad_request(format!(
            "{name} must be {} to {}, not {value}",
            range.start(),
            range.end()
        )))
    }
}

/// Any path no route matches: a 404.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// A route's path with a method it does not serve: a 405 (axum adds the `Allow` header).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// `GET /users/{id}`: the user. An id that is not an integer is a 400, an unknown one a 404.
async fn user(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<User>, ApiError> {
    let Path(id) = id.map_err(bad_request)?;
    match state.shop.user(id).await? {
        Some(user) => Ok(Json(user)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no user {id}"))),
    }
}

/// `?limit=20&offset=0`, both optional.
#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The largest `offset` (a page is read from the newest order on, so a deep one costs).
const MAX_OFFSET: i64 = 10_000;

/// `GET /users/{id}/orders?limit=20&offset=0`: a page of the user's orders, newest first.
/// `limit` is 1 to 100 (default 20), `offset` 0 to 10000 (default 0); a value out of its
/// range, or not an integer, is a 400; an unknown user a 404.
async fn orders(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Vec<Order>>, ApiError> {
    let Path(id) = id.map_err(bad_request)?;
    let Query(page) = page.map_err(bad_request)?;
    let limit = param("limit", page.limit, 20, 1..=100)?;
    let offset = param("offset", page.offset, 0, 0..=MAX_OFFSET)?;
    if state.shop.user(id).await?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no user {id}")));
    }
    Ok(Json(state.shop.orders(id, limit, offset).await?))
}

/// The body of `POST /orders`.
#[derive(Serialize, Deserialize)]
pub struct NewOrder {
    pub user_id: i64,
    pub amount_cents: i32,
}

/// `POST /orders` with a `NewOrder`: 201 and the placed order. A body that is not a
/// `NewOrder`, or an `amount_cents` under 1, is a 400; an unknown user a 404.
async fn place_order(
    State(state): State<AppState>,
    order: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Placed>), ApiError> {
    let Json(order) = order.map_err(bad_request)?;
    if order.amount_cents <= 0 {
        return Err(bad_request("amount_cents must be positive"));
    }
    let placed = state
        .shop
        .place_order(order.user_id, order.amount_cents)
        .await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

#[derive(Deserialize)]
struct ReportQuery {
    n: Option<i64>,
}

/// `GET /reports/top-customers?n=10`: the `n` customers who spent most. `n` is 1 to 1000
/// (default 10); a value out of that range, or not an integer, is a 400.
async fn top_customers(
    State(state): State<AppState>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<Vec<TopCustomer>>, ApiError> {
    let Query(query) = query.map_err(bad_request)?;
    let n = param("n", query.n, 10, 1..=1000)?;
    Ok(Json(state.shop.top_customers(n).await?))
}

/// The pools' and functions' figures, in Prometheus' text format.
async fn metrics(State(state): State<AppState>) -> String {
    // `offthread::publish_metrics()` with the facade's `metrics` feature; this workspace's
    // examples reach the runtime's directly.
    offthread_runtime::publish_metrics();
    (state.metrics)()
}
