//! `#[offload(crate = path)]` with the facade renamed in Cargo.toml
//! (`renamed = { package = "offthread", .. }`): this crate has no `offthread` to fall back on.

use renamed::offload;

/// The error of [`all`].
#[derive(Debug)]
pub struct MyErr;

impl From<renamed::Error> for MyErr {
    fn from(_: renamed::Error) -> Self {
        MyErr
    }
}

static POOL: std::sync::LazyLock<renamed::Pool> =
    std::sync::LazyLock::new(|| renamed::Pool::builder().name("renamed").build());

/// The path as written in `Cargo.toml`.
#[offload(crate = renamed)]
pub fn plain(name: &str) -> usize {
    name.len()
}

/// Every option, with an absolute path.
///
/// # Errors
///
/// `MyErr` on a timeout.
#[offload(crate = ::renamed, pool = POOL, limit = 1, timeout = "5s", sync = all_blocking)]
pub fn all(n: u32) -> Result<u32, MyErr> {
    Ok(n + 1)
}

/// A method, in a module, with the string form (as tokio and serde spell it).
pub mod inner {
    /// Something to offload a method of.
    #[derive(Clone)]
    pub struct Thing(pub u8);

    impl Thing {
        /// `&self` copied through the renamed crate's `ToOwned`.
        #[renamed::offload(crate = "renamed")]
        pub fn doubled(&self) -> u8 {
            self.0 * 2
        }
    }
}

/// An error type with no `From<renamed::Error>`.
#[derive(Debug)]
pub struct Foreign;

fn to_foreign(_: renamed::Error) -> Foreign {
    Foreign
}

/// A trait whose methods return the renamed crate's `Offload`.
#[offload(crate = renamed)]
pub trait Store: Send + Sync {
    /// The value under `key`.
    ///
    /// # Errors
    ///
    /// `Foreign` on a timeout.
    fn get(&self, key: u8) -> Result<u8, Foreign>;
}

/// An implementation, every option through the renamed crate.
#[derive(Clone)]
pub struct Mem;

#[offload(crate = renamed, pool = POOL, timeout = "5s", timeout_error = to_foreign)]
impl Store for Mem {
    fn get(&self, key: u8) -> Result<u8, Foreign> {
        Ok(key + 1)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn crate_option_works_with_a_renamed_dependency() {
        assert_eq!(futures::executor::block_on(super::plain("abc")), 3);
        assert_eq!(futures::executor::block_on(super::all(1)).unwrap(), 2);
        assert_eq!(super::all_blocking(2).unwrap(), 3);
        let thing = super::inner::Thing(4);
        assert_eq!(futures::executor::block_on(thing.doubled()), 8);
        let store: &dyn super::Store = &super::Mem;
        assert_eq!(futures::executor::block_on(store.get(1)).unwrap(), 2);
    }
}
