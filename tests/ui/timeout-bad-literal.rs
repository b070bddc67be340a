use offthread::offload;

#[derive(Debug)]
struct MyErr;

impl From<offthread::Error> for MyErr {
    fn from(_: offthread::Error) -> Self {
        MyErr
    }
}

#[offload(timeout = "fast")]
fn slow() -> Result<u32, MyErr> {
    Ok(1)
}

#[offload(timeout = 250)]
fn also_slow() -> Result<u32, MyErr> {
    Ok(1)
}

fn main() {}
