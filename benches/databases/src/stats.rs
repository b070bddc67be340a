//! Timing and statistics: the heartbeat, quantiles, the process's CPU time and threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HEARTBEAT: Duration = Duration::from_millis(1);

/// Records how late a task that wants to wake every millisecond actually wakes, until `stop`.
pub async fn heartbeat(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lateness = Vec::new();
    let mut due = Instant::now() + HEARTBEAT;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        lateness.push(now - due);
        due = now + HEARTBEAT;
    }
    lateness
}

/// The `q` quantile of `v` (sorted in place), in milliseconds.
pub fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The CPU time (user + system) this process has used so far, all threads.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given; sysconf reads a constant.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The CPU time (user + system) used so far by the server whose postmaster has process id
/// `postmaster`: its own, and its children's, counting the ones that have exited (their
/// parent's `cutime`/`cstime`). The server's share of the cost when it runs on this machine,
/// as in this benchmark; other servers on the machine are left out.
pub fn server_cpu_time(postmaster: u32) -> Duration {
    let ticks_per_s = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    };
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
    {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some((pid, _)), Some((_, rest))) = (stat.split_once(' '), stat.rsplit_once(')'))
        else {
            continue;
        };
        // After the parenthesised name: field 3 (state), 4 (ppid), ... 14-17 (utime, stime,
        // cutime, cstime).
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1).and_then(|f| f.parse::<u32>().ok());
        if pid.parse::<u32>().ok() != Some(postmaster) && ppid != Some(postmaster) {
            continue;
        }
        ticks += fields
            .iter()
            .skip(11)
            .take(4)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    Duration::from_micros(ticks * 1_000_000 / ticks_per_s)
}

/// The postmaster of the server that runs the backend `backend_pid`, if that backend is a
/// process on this machine.
pub fn postmaster_of(backend_pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{backend_pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
}

/// The process's threads now (`/proc/self/task`), leaving out those whose name starts with
/// `except` (another variant's idle pool).
pub fn threads(except: Option<&str>) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| match except {
            None => true,
            Some(prefix) => std::fs::read_to_string(task.path().join("comm"))
                .map_or(true, |name| !name.starts_with(prefix)),
        })
        .count()
}

/// The process's threads now, by name, with how many of each and their CPU ticks (for `BENCH_THREADS=1`).
pub fn thread_names() -> String {
    let mut names = std::collections::BTreeMap::<String, (usize, usize)>::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.filter_map(Result::ok) {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // utime and stime, in clock ticks: fields 14 and 15, after the parenthesised name.
            let ticks: usize = stat
                .rsplit_once(')')
                .map(|(_, rest)| {
                    rest.split_whitespace()
                        .skip(11)
                        .take(2)
                        .filter_map(|f| f.parse::<usize>().ok())
                        .sum()
                })
                .unwrap_or(0);
            let entry = names.entry(name.trim().to_owned()).or_default();
            entry.0 += 1;
            entry.1 += ticks;
        }
    }
    names
        .iter()
        .map(|(n, (c, t))| format!("{n} x{c} ({t} ticks)"))
        .collect::<Vec<_>>()
        .join(", ")
}
