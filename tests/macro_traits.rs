//! `#[offload]` on a trait and on impl blocks: the repository pattern. The trait's methods
//! return `Offload<R>`, so it is used through `Arc<dyn Trait>` with no boxing and through
//! generics; one implementation runs on a pool with a `#[local]` connection, a fake one for
//! tests makes its answers with `Offload::ready` and needs no pool.

#![deny(warnings)]
#![allow(missing_docs)]

use offthread::{offload, Offload, Pool};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: u32,
    pub name: String,
}

#[offload]
pub trait UserRepo: Send + Sync {
    /// Becomes `-> Offload<Option<User>>`.
    fn find(&self, id: u32) -> Option<User>;
    fn rename(&self, id: u32, name: &str) -> Result<(), String>;
    /// Left alone: a plain method with a default body.
    #[offload(skip)]
    fn describe(&self) -> &'static str {
        "a user repository"
    }
}

/// Stands for a database connection: one per worker of `DB`.
pub struct Conn {
    queries: u32,
    users: Vec<User>,
}

static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

static DB: LazyLock<Pool> = LazyLock::new(|| {
    Pool::builder()
        .name("repo-db")
        .max_threads(2)
        .worker_local(|| {
            CONNECTIONS.fetch_add(1, Ordering::SeqCst);
            Conn {
                queries: 0,
                users: vec![User {
                    id: 7,
                    name: "ada".into(),
                }],
            }
        })
        .build()
});

/// The real implementation: every method runs on `DB` with the worker's connection.
#[derive(Clone)]
pub struct SqlRepo;

#[offload(pool = DB)]
impl UserRepo for SqlRepo {
    fn find(&self, #[local] conn: &mut Conn, id: u32) -> Option<User> {
        conn.queries += 1;
        conn.users.iter().find(|user| user.id == id).cloned()
    }

    // A method's own options add to the block's.
    #[offload(limit = 1)]
    fn rename(&self, #[local] conn: &mut Conn, id: u32, name: &str) -> Result<(), String> {
        let user = conn.users.iter_mut().find(|user| user.id == id);
        let user = user.ok_or_else(|| format!("no user {id}"))?;
        user.name = name.to_owned();
        Ok(())
    }
}

/// A fake for tests: no pool, no thread, answers made with `Offload::ready`.
pub struct FakeRepo(Vec<User>);

impl UserRepo for FakeRepo {
    fn find(&self, id: u32) -> Offload<Option<User>> {
        Offload::ready(self.0.iter().find(|user| user.id == id).cloned())
    }

    fn rename(&self, _: u32, _: &str) -> Offload<Result<(), String>> {
        Offload::ready(Err("read-only".into()))
    }
}

/// Generic code over the trait.
async fn name_of<R: UserRepo + ?Sized>(repo: &R, id: u32) -> Option<String> {
    repo.find(id).await.map(|user| user.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trait_object_runs_each_implementation_its_own_way() {
    let repos: Vec<Arc<dyn UserRepo>> = vec![
        Arc::new(SqlRepo),
        Arc::new(FakeRepo(vec![User {
            id: 7,
            name: "fake ada".into(),
        }])),
    ];
    let names = [Some("ada".to_owned()), Some("fake ada".to_owned())];
    for (repo, name) in repos.iter().zip(names) {
        assert_eq!(name_of(&**repo, 7).await, name);
        assert_eq!(repo.find(8).await, None);
        assert_eq!(repo.describe(), "a user repository");
    }
    assert_eq!(repos[1].rename(7, "x").await, Err("read-only".to_owned()));
    assert!(CONNECTIONS.load(Ordering::SeqCst) >= 1);
}

#[test]
fn generics_and_block_on() {
    futures::executor::block_on(async {
        assert_eq!(name_of(&SqlRepo, 7).await.as_deref(), Some("ada"));
        assert_eq!(SqlRepo.rename(9, "x").await, Err("no user 9".to_owned()));
        let fake = FakeRepo(Vec::new());
        assert_eq!(name_of(&fake, 7).await, None);
    });
}

#[test]
fn the_fake_needs_no_pool() {
    let before = offthread::default_pool().metrics().submitted;
    let fake = FakeRepo(vec![User {
        id: 1,
        name: "bo".into(),
    }]);
    let found = futures::executor::block_on(fake.find(1));
    assert_eq!(found.map(|user| user.name).as_deref(), Some("bo"));
    // Only this file's offloaded calls could count, and they all run on `DB`.
    assert_eq!(offthread::default_pool().metrics().submitted, before);
}

// ---- inherent impl blocks ----

static SMALL: LazyLock<Pool> = LazyLock::new(|| Pool::builder().name("small").build());

#[derive(Clone)]
pub struct Files {
    root: String,
}

#[offload(pool = SMALL)]
impl Files {
    /// Items other than methods pass through.
    pub const SEPARATOR: char = '/';

    /// A constructor stays a plain function.
    #[offload(skip)]
    pub fn new(root: &str) -> Files {
        Files {
            root: root.to_owned(),
        }
    }

    /// Offloaded with the block's options, but its own `sync` name.
    #[offload(sync = path_blocking)]
    pub fn path(&self, name: &str) -> String {
        #![allow(clippy::manual_strip)]
        format!("{}{}{name}", self.root, Self::SEPARATOR)
    }

    /// The block's `pool` overridden.
    #[offload(pool = offthread::default_pool(), sync = thread_name_blocking)]
    pub fn thread_name(&self) -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_impl_block_offloads_every_method_with_options_per_method() {
    let files = Files::new("/data");
    assert_eq!(files.path("a.txt").await, "/data/a.txt");
    assert_eq!(files.path_blocking("b"), "/data/b");
    let name = files.thread_name().await.unwrap_or_default();
    assert!(name.starts_with("offthread-"), "{name}");
    assert!(files.thread_name_blocking().is_some());
    assert_eq!(Files::SEPARATOR, '/');
}
