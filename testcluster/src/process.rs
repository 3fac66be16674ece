//! Subprocesses with captured output (stdout and stderr interleaved into one
//! buffer), which die with the process that started them.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running process whose output is captured; killed when dropped.
pub struct Process {
    name: String,
    child: Mutex<Child>,
    logs: Arc<Mutex<String>>,
}

fn pump(r: impl Read + Send + 'static, logs: Arc<Mutex<String>>, echo: Option<String>) {
    std::thread::spawn(move || {
        let reader = BufReader::new(r);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(prefix) = &echo {
                eprintln!("[{prefix}] {text}");
            }
            let mut l = logs.lock().unwrap_or_else(|e| e.into_inner());
            l.push_str(&text);
            l.push('\n');
        }
    });
}

/// Makes `cmd`'s child get SIGKILL when the thread that spawned it ends, so
/// that nothing outlives a test binary that was killed or exited.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Process {
    /// Spawns `cmd` with piped output. Set `TESTCLUSTER_ECHO=1` to also echo its lines to stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<Process> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn()?;
        let logs = Arc::new(Mutex::new(String::new()));
        let echo = std::env::var_os("TESTCLUSTER_ECHO").map(|_| name.to_string());
        if let Some(o) = child.stdout.take() {
            pump(o, logs.clone(), echo.clone());
        }
        if let Some(e) = child.stderr.take() {
            pump(e, logs.clone(), echo);
        }
        Ok(Process { name: name.into(), child: Mutex::new(child), logs })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Everything printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until the logs contain `needle`; false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.logs().contains(needle)
    }

    /// The exit code once it has exited (None while running; 128 + signal when killed by one).
    pub fn exit_code(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        c.try_wait().ok().flatten().map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&self) {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Sends SIGTERM and waits up to `grace` before killing; the exit code.
    /// Freezes the process (SIGSTOP), as a stalled node or a long pause
    /// would: it runs nothing until [`Process::thaw`].
    pub fn freeze(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    pub fn terminate(&self, grace: Duration) -> Option<i32> {
        signal(self.pid(), libc::SIGTERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Some(code) = self.exit_code() {
                return Some(code);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        self.exit_code()
    }
}

/// Sends `sig` to `pid` (no error if it is gone).
pub fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall with integer arguments.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `sig` to the process group led by `pid` (no error if it is gone).
pub fn signal_group(pid: u32, sig: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall with integer arguments.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}
