//! CPU time of threads from `/proc` (per-thread `schedstat`: nanoseconds on
//! CPU; falls back to `stat` utime+stime in clock ticks of 10 ms).

use std::fs;

/// Total CPU time, in nanoseconds, of this process's threads whose name
/// starts with `prefix` (e.g. `mg-relay` for the relay workers).
pub(crate) fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .map(|e| task_ns(&e.path()))
        .sum()
}

/// CPU time of the calling thread, in nanoseconds.
pub(crate) fn current_thread_ns() -> u64 {
    task_ns(std::path::Path::new("/proc/thread-self"))
}

fn task_ns(task: &std::path::Path) -> u64 {
    if let Some(ns) = fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
    {
        return ns;
    }
    // stat: fields 14 and 15 (utime, stime) after the parenthesised name.
    fs::read_to_string(task.join("stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks * 10_000_000)
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() {
        let t0 = current_thread_ns();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(current_thread_ns() > t0, "CPU time advances");
    }
}
