use offthread::offload;

#[offload]
fn evens(limit: &mut u8) -> impl Iterator<Item = u8> + Send {
    (0..*limit).filter(|n| n % 2 == 0)
}

async fn caller() -> usize {
    let mut limit = 10;
    evens(&mut limit).await.count()
}

fn main() {
    let _ = caller();
}
