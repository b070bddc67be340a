// A `#[local]` parameter compiles without warnings, with every lint denied, in a
// `#![no_implicit_prelude]` module, next to a constant and a parameter named like the
// expansion's own names (`__local`, `__copy0`), in every form: `&mut T` and `&T`, with
// every option, on a method with `&self`, and in a trait impl.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]
//! A binary crate.

static DB: ::std::sync::LazyLock<::offthread::Pool> = ::std::sync::LazyLock::new(|| {
    ::offthread::Pool::builder()
        .name("db")
        .max_threads(1)
        .worker_local(|| data::Conn { queries: 0 })
        .build()
});

mod data {
    #![no_implicit_prelude]

    use ::offthread::offload;
    use ::std::string::String;

    /// Stands for a database connection.
    pub(crate) struct Conn {
        pub(crate) queries: u32,
    }

    #[allow(dead_code, non_upper_case_globals)]
    const __local: u8 = 0;

    /// A parameter named like the expansion's copy of it.
    #[offload(pool = crate::DB, limit = 1, timeout = "5s", sync = query_blocking)]
    pub(crate) fn query(
        __copy0: &str,
        #[local] mut conn: &mut Conn,
    ) -> ::std::result::Result<String, ::offthread::Error> {
        conn.queries += 1;
        conn = &mut *conn;
        ::std::result::Result::Ok(::std::format!("{__copy0}{}", conn.queries))
    }

    /// A shared borrow of the worker's value.
    #[offload(pool = crate::DB)]
    pub(crate) fn queries(#[local] conn: &Conn) -> u32 {
        conn.queries
    }

    /// A repository with a receiver.
    #[derive(::std::clone::Clone)]
    pub(crate) struct Repo;

    impl Repo {
        /// `&self` and a local.
        #[offload(pool = crate::DB)]
        pub(crate) fn count(&self, #[local] conn: &mut Conn) -> u32 {
            let _ = self;
            conn.queries
        }
    }

    /// A trait whose method is offloaded in its impl.
    pub(crate) trait Store {
        /// How many queries the worker's connection ran.
        fn seen(&self) -> impl ::std::future::Future<Output = u32> + ::std::marker::Send;
    }

    impl Store for Repo {
        #[offload(pool = crate::DB)]
        fn seen(&self, #[local] conn: &Conn) -> u32 {
            conn.queries
        }
    }
}

use data::Store;

fn main() {
    let out = futures::executor::block_on(data::query("q")).unwrap();
    assert_eq!(out, "q1");
    assert_eq!(futures::executor::block_on(data::queries()), 1);
    assert_eq!(futures::executor::block_on(data::Repo.count()), 1);
    assert_eq!(futures::executor::block_on(data::Repo.seen()), 1);
    let mut mine = data::Conn { queries: 41 };
    assert_eq!(data::query_blocking("q", &mut mine).unwrap(), "q42");
}
