use offthread::offload;

#[derive(Debug)]
struct MyErr;

#[offload(timeout = "250ms")]
fn lookup(id: u32) -> Result<String, MyErr> {
    Ok(id.to_string())
}

fn main() {}
