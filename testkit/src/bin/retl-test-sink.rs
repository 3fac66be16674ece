//! Runs the test sink as its own process (for benchmarks and manual tries):
//! `retl-test-sink [ADDR]` prints its URL and serves until Ctrl-C.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let sink = testkit::sink::Sink::start_on(&addr).await?;
    println!("{}", sink.url());
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("{} requests, {} records accepted", sink.requests(), sink.received().len());
    Ok(())
}
