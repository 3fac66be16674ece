//! Samples processes from /proc once a second: CPU seconds (utime + stime
//! of /proc/PID/stat, in USER_HZ ticks, which Linux fixes at 100 per second)
//! and resident memory (VmRSS and its peak VmHWM of /proc/PID/status).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::Timestamp;

/// USER_HZ: the unit of utime and stime in /proc/PID/stat.
const TICKS_PER_SECOND: f64 = 100.0;

/// One look at one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub cpu_seconds: f64,
    /// CPU of its children that have exited and been waited for (cutime + cstime).
    pub children_cpu_seconds: f64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

/// One look at every sampled process, in the order they were named.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Timestamp,
    pub readings: Vec<Option<Reading>>,
}

pub struct Sampler {
    pub names: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

/// CPU and memory of process `pid`, if it still runs.
pub fn read(pid: u32) -> Option<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let cutime: f64 = fields.get(13)?.parse().ok()?;
    let cstime: f64 = fields.get(14)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    Some(Reading {
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
        children_cpu_seconds: (cutime + cstime) / TICKS_PER_SECOND,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

impl Sampler {
    pub fn start(processes: Vec<(String, u32)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let names = processes.iter().map(|(n, _)| n.clone()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let readings = processes.iter().map(|(_, pid)| read(*pid)).collect();
                samples.push(Sample { at: Timestamp::now(), readings });
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        });
        Sampler { names, stop, thread }
    }

    pub fn finish(self) -> (Vec<String>, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        (self.names, self.thread.join().unwrap_or_default())
    }
}

/// The sample taken closest to `t`.
fn nearest(samples: &[Sample], t: Timestamp) -> Option<&Sample> {
    samples.iter().min_by_key(|s| s.at.duration_since(t).abs())
}

/// How much of `measure` process `i` used between `from` and `to` (from
/// the samples nearest to both).
pub fn cpu_between(samples: &[Sample], i: usize, from: Timestamp, to: Timestamp, measure: fn(&Reading) -> f64) -> Option<f64> {
    let a = nearest(samples, from)?.readings.get(i).copied().flatten()?;
    let b = nearest(samples, to)?.readings.get(i).copied().flatten()?;
    Some(measure(&b) - measure(&a))
}

/// The largest VmRSS of process `i` sampled between `from` and `to`, in MiB.
pub fn max_rss_between(samples: &[Sample], i: usize, from: Timestamp, to: Timestamp) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .filter_map(|s| s.readings.get(i).copied().flatten())
        .map(|r| r.rss_kb as f64 / 1024.0)
        .reduce(f64::max)
}

/// The last VmHWM (peak resident memory since the process started) of process `i`, in MiB.
pub fn peak_rss(samples: &[Sample], i: usize) -> Option<f64> {
    samples.iter().rev().find_map(|s| s.readings.get(i).copied().flatten()).map(|r| r.hwm_kb as f64 / 1024.0)
}
