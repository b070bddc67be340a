use offthread::offload;

#[derive(Debug)]
struct DbError;

fn to_db_error(_: offthread::Error) -> DbError {
    DbError
}

#[offload(timeout_error = to_db_error)]
fn lookup(id: u32) -> Result<u32, DbError> {
    Ok(id)
}

fn main() {}
