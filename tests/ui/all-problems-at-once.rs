use offthread::offload;

#[offload(limit = 0, retries = 3, sync = everything_blocking)]
async unsafe fn everything(out: &mut String, n: u32) -> &str {
    out.push_str(&n.to_string());
    ""
}

async fn caller() -> usize {
    let (mut out, mut other) = (String::new(), String::new());
    let awaited: &str = unsafe { everything(&mut out, 1) }.await;
    let blocking = unsafe { everything_blocking(&mut other, 2) };
    awaited.len() + blocking.await.len()
}

fn main() {
    let _ = caller();
}
