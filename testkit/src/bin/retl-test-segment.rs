//! Runs the Segment-compatible test server as its own process (for the
//! example and manual tries): `retl-test-segment [ADDR] [WRITE_KEY]` prints
//! its base URL and serves until Ctrl-C, then prints what it received.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let key = std::env::args().nth(2).unwrap_or_else(|| "test-write-key".to_string());
    let server = testkit::segment::SegmentServer::start_on(&addr, &key).await?;
    println!("{}", server.base_url());
    let _ = tokio::signal::ctrl_c().await;
    for m in server.messages() {
        println!("{m}");
    }
    eprintln!("{} requests, {} messages accepted, {} duplicates", server.answered().len(), server.messages().len(), server.duplicates());
    Ok(())
}
