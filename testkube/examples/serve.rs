//! Runs a test API server in the foreground, for poking at it with kubectl:
//! `cargo run -p testkube --example serve` then `KUBECONFIG=<printed path> kubectl get ns`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = testkube::TestApiServer::start_blocking(testkube::ServerConfig::default())?;
    let dir = std::env::temp_dir().join(format!("testkube-serve-{}", server.addr().port()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("kubeconfig");
    std::fs::write(&path, testkube::harness::kubeconfig_yaml(&server.url()))?;
    println!("{}", server.url());
    println!("KUBECONFIG={}", path.display());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
