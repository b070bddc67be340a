//! The expansion names everything absolutely and its locals cannot clash with the user's:
//! it compiles inside `#![no_implicit_prelude]`, next to user items named
//! `core`, `std`, `Result`, `Option`, `Box` and `__private`, with parameters named like the
//! expansion's own locals, and without warnings under `deny(warnings, clippy::pedantic)`
//! (CI runs clippy over the tests).

#![deny(warnings, clippy::pedantic)]
#![allow(missing_docs)]

// Items that would capture a relative `core::..`, `Result`, `__private::..` in the expansion.
#[allow(dead_code)]
mod core {}
#[allow(dead_code)]
mod __private {}
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct Send;
#[allow(dead_code)]
struct Future;
#[allow(dead_code)]
struct ToOwned;
#[allow(dead_code)]
struct Borrow;
#[allow(dead_code)]
struct Duration;
#[allow(dead_code)]
struct Arc;
#[allow(dead_code)]
struct Limit;

mod shadows_std {
    // A module named `std` makes every `std::..` in this module ambiguous or wrong.
    #[allow(dead_code)]
    mod std {}

    use offthread::offload;

    #[offload]
    pub fn len(text: &str) -> usize {
        text.len()
    }
}

static POOL: ::std::sync::LazyLock<offthread::Pool> =
    ::std::sync::LazyLock::new(|| offthread::Pool::builder().name("hygiene").build());

pub mod no_prelude {
    #![no_implicit_prelude]

    use ::offthread::offload;
    use ::std::string::String;

    #[derive(::std::fmt::Debug)]
    pub struct MyErr;

    impl ::std::convert::From<::offthread::Error> for MyErr {
        fn from(_: ::offthread::Error) -> Self {
            MyErr
        }
    }

    #[offload]
    pub fn plain(a: u32, name: &str) -> usize {
        name.len() + a as usize
    }

    /// Every option at once.
    ///
    /// # Errors
    ///
    /// `MyErr` when the call times out.
    #[offload(pool = super::POOL, limit = 2, timeout = "5s", sync = options_blocking)]
    pub fn options(bytes: &[u8], mut n: u8) -> ::std::result::Result<u8, MyErr> {
        n += bytes[0];
        ::std::result::Result::Ok(n)
    }

    #[derive(::std::clone::Clone)]
    pub struct Thing {
        pub label: String,
    }

    impl Thing {
        #[offload]
        pub fn label(&self, suffix: &str) -> String {
            let mut out = ::std::clone::Clone::clone(&self.label);
            out.push_str(suffix);
            out
        }

        #[offload]
        pub fn into_label(self) -> String {
            self.label
        }
    }

    /// Parameters named like the expansion's locals.
    #[offload]
    #[allow(non_snake_case, clippy::used_underscore_binding, clippy::similar_names)]
    pub fn clashing(
        __job: u32,
        __self: u32,
        __copy0: &str,
        __copy1: &str,
        __arg0: u32,
        __self_copy: u32,
        __OFFTHREAD_LIMIT: usize,
    ) -> usize {
        let sum = __job + __self + __arg0 + __self_copy;
        sum as usize + __OFFTHREAD_LIMIT + __copy0.len() - __copy1.len()
    }

    impl Thing {
        /// `&self` next to a parameter named like the hidden receiver.
        #[offload(limit = 1)]
        #[allow(clippy::used_underscore_binding)]
        pub fn with_hidden_names(&self, __self: &str, __self_copy: u32) -> String {
            let mut out = ::std::clone::Clone::clone(&self.label);
            out.push_str(__self);
            out.push_str(if __self_copy > 0 { "+" } else { "-" });
            out
        }
    }
}

/// Exercises every expansion above, so clippy sees them used.
async fn run_all() {
    assert_eq!(shadows_std::len("abc").await, 3);
    assert_eq!(no_prelude::plain(1, "ab").await, 3);
    assert_eq!(no_prelude::options(&[2], 3).await.unwrap(), 5);
    assert_eq!(no_prelude::options_blocking(&[2], 3).unwrap(), 5);
    let thing = no_prelude::Thing { label: "t".into() };
    assert_eq!(thing.label("!").await, "t!");
    assert_eq!(thing.with_hidden_names("x", 1).await, "tx+");
    assert_eq!(thing.into_label().await, "t");
    assert_eq!(no_prelude::clashing(1, 2, "abc", "a", 3, 4, 5).await, 17);
}

#[test]
fn the_expansion_is_hygienic() {
    futures::executor::block_on(run_all());
}
