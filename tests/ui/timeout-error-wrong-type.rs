use offthread::offload;

#[derive(Debug)]
struct DbError;

fn to_string_error(err: offthread::Error) -> String {
    err.to_string()
}

#[offload(timeout = "1s", timeout_error = to_string_error)]
fn lookup(id: u32) -> Result<u32, DbError> {
    Ok(id)
}

fn main() {}
