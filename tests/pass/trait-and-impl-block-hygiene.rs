// `#[offload]` on a trait and on impl blocks compiles without warnings, with every lint
// denied, in a `#![no_implicit_prelude]` module next to items named like the expansion's
// paths, and the trait is used as `dyn`.
#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub)]
//! A binary crate.

mod repo {
    #![no_implicit_prelude]

    use ::offthread::offload;
    use ::std::string::String;

    #[allow(dead_code)]
    mod core {}
    #[allow(dead_code)]
    mod __private {}
    #[allow(dead_code)]
    struct Result;

    /// A repository.
    #[offload]
    pub(crate) trait Names: ::core::marker::Send + ::core::marker::Sync {
        /// The name of `id`.
        fn name(&self, id: u32) -> String;
        /// The number of names, with an error type.
        fn count(&self) -> ::core::result::Result<u32, ::offthread::Error>;
        /// A plain method.
        #[offload(skip)]
        fn kind(&self) -> &'static str {
            "names"
        }
    }

    /// One implementation.
    #[derive(Clone)]
    pub(crate) struct Fixed;

    #[offload(limit = 2)]
    impl Names for Fixed {
        fn name(&self, id: u32) -> String {
            ::std::format!("n{id}")
        }

        #[offload(timeout = "1s")]
        fn count(&self) -> ::core::result::Result<u32, ::offthread::Error> {
            ::core::result::Result::Ok(1)
        }
    }

    #[offload]
    impl Fixed {
        /// A constant passes through.
        pub(crate) const ID: u32 = 3;

        /// Not offloaded.
        #[offload(skip)]
        pub(crate) fn new() -> Fixed {
            Fixed
        }

        /// Offloaded, with a blocking twin.
        #[offload(sync = twice_blocking)]
        #[must_use]
        pub(crate) fn twice(&self, n: u32) -> u32 {
            n * 2
        }
    }
}

use repo::Names;

fn main() {
    let names: std::sync::Arc<dyn Names> = std::sync::Arc::new(repo::Fixed::new());
    futures::executor::block_on(async {
        assert_eq!(names.name(repo::Fixed::ID).await, "n3");
        assert_eq!(names.count().await.unwrap(), 1);
        assert_eq!(names.kind(), "names");
        assert_eq!(repo::Fixed.twice(2).await, 4);
        assert_eq!(repo::Fixed.twice_blocking(2), 4);
    });
}
