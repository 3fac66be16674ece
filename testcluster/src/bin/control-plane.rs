//! `scripts/control-plane build|up|down|status`: the test control plane by hand.
//!
//! - `build`: builds the binaries into the cache (if needed) and prints their directory.
//! - `build-helm`: builds helm (testcluster::helm) into its cache if needed and prints its path.
//! - `up [--dir DIR] [--image PREFIX=BINARY]...`: starts etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler and the test kubelet in the
//!   background, waits until they serve, prints `KUBECONFIG=...`.
//!   Images starting with PREFIX run BINARY (default: `ghcr.io/retl/retl`
//!   and `retl` run target/debug/retl).
//! - `down [--dir DIR]`: stops every process `up` started (by pid) and removes DIR.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testcluster::{ControlPlane, Options, binaries, helm};

const USAGE: &str = "usage: scripts/control-plane build | build-helm | up [--dir DIR] [--image PREFIX=BINARY]... | down [--dir DIR]";

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("retl-control-plane")
}

struct Args {
    command: String,
    dir: PathBuf,
    images: Vec<(String, PathBuf)>,
}

fn parse() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or(USAGE)?;
    let (mut dir, mut images) = (default_dir(), Vec::new());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().ok_or("--dir needs a directory")?),
            "--image" => {
                let v = args.next().ok_or("--image needs PREFIX=BINARY")?;
                let (prefix, bin) = v.split_once('=').ok_or("--image needs PREFIX=BINARY")?;
                images.push((prefix.to_string(), PathBuf::from(bin)));
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if images.is_empty() {
        let retl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/retl");
        images = vec![("ghcr.io/retl/retl".into(), retl.clone()), ("retl".into(), retl)];
    }
    Ok(Args { command, dir, images })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "build" => binaries::ensure_built().map(|d| println!("{}", d.display())).map_err(|e| e.to_string()),
        "build-helm" => helm::ensure_built().map(|h| println!("{}", h.display())).map_err(|e| e.to_string()),
        "up" => up(&args),
        "serve" => serve(&args),
        "down" => down(&args.dir),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("control-plane {}: {e}", args.command);
            ExitCode::FAILURE
        }
    }
}

/// Starts `serve` in the background (its own session) and waits for it to be ready.
fn up(args: &Args) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    if args.dir.join("serve.pid").exists() {
        return Err(format!("a control plane already runs from {} (scripts/control-plane down first)", args.dir.display()));
    }
    binaries::ensure_built().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let log = args.dir.join("serve.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve").arg("--dir").arg(&args.dir);
    for (prefix, bin) in &args.images {
        cmd.arg("--image").arg(format!("{prefix}={}", bin.display()));
    }
    let mut child = cmd.stdin(std::process::Stdio::null()).stdout(out).stderr(err).process_group(0).spawn().map_err(|e| e.to_string())?;
    std::fs::write(args.dir.join("serve.pid"), child.id().to_string()).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(180);
    while Instant::now() < end {
        if args.dir.join("ready").exists() {
            let took = std::fs::read_to_string(args.dir.join("ready")).unwrap_or_default();
            eprintln!("control plane up ({}); stop it with scripts/control-plane down --dir {}", took.trim(), args.dir.display());
            println!("KUBECONFIG={}", args.dir.join("data/kubeconfig").display());
            return Ok(());
        }
        if !matches!(child.try_wait(), Ok(None)) || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("cannot start:")) {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = down(&args.dir);
            return Err(format!("it did not start:\n{output}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = down(&args.dir);
    Err(format!("not ready within 180 s; see {}", log.display()))
}

/// The background process of `up`: runs the control plane until SIGTERM.
fn serve(args: &Args) -> Result<(), String> {
    let images = args.images.clone();
    let map: testcluster::ImageMap =
        Arc::new(move |image: &str| images.iter().find(|(prefix, _)| image.starts_with(prefix.as_str())).map(|(_, bin)| bin.clone()));
    let bin_dir = binaries::ensure_built().map_err(|e| e.to_string())?;
    let mut cp = match ControlPlane::start(Options { dir: args.dir.join("data"), bin_dir, images: map }) {
        Ok(cp) => cp,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return Err(e.to_string());
        }
    };
    let pids: Vec<String> = cp.pids().iter().map(|(name, pid)| format!("{pid} {name}")).collect();
    std::fs::write(args.dir.join("pids"), pids.join("\n") + "\n").map_err(|e| e.to_string())?;
    std::fs::write(args.dir.join("ready"), format!("started in {:.1} s", cp.started_in().as_secs_f64())).map_err(|e| e.to_string())?;
    eprintln!("ready; admin kubeconfig {}", cp.kubeconfig().display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok::<(), String>(())
    })?;
    cp.stop();
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Stops `serve` (which stops its components), then anything left by pid, and removes DIR.
fn down(dir: &Path) -> Result<(), String> {
    let read_pid = |s: &str| s.split_whitespace().next().and_then(|p| p.parse::<i32>().ok());
    let serve = std::fs::read_to_string(dir.join("serve.pid")).ok().and_then(|s| read_pid(&s));
    let components: Vec<i32> = std::fs::read_to_string(dir.join("pids")).unwrap_or_default().lines().filter_map(read_pid).collect();
    if let Some(pid) = serve {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(30);
        while pid_alive(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for pid in serve.into_iter().chain(components) {
        if pid_alive(pid) {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    eprintln!("control plane in {} stopped and removed", dir.display());
    Ok(())
}
