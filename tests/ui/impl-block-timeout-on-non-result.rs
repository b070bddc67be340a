use offthread::offload;

#[derive(Clone)]
struct Db;

// The block's `timeout` reaches every method; `count` cannot take it.
#[offload(timeout = "1s")]
impl Db {
    fn find(&self, id: u32) -> Result<u32, offthread::Error> {
        Ok(id)
    }

    fn count(&self) -> u32 {
        1
    }
}

async fn caller(db: Db) -> u32 {
    db.count().await + db.find(1).await.unwrap_or(0)
}

fn main() {
    let _ = caller(Db);
}
