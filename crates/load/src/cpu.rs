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

    /// Burns CPU until the reading moves. Without schedstat the fallback counts 10 ms clock
    /// ticks, so a fixed short loop (as this test once had) may end inside one tick: keep
    /// working, in rounds, up to a generous bound.
    #[test]
    fn reads_own_cpu_time() {
        let t0 = current_thread_ns();
        let mut x = 0u64;
        let mut advanced = false;
        for _round in 0..500 {
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            if current_thread_ns() > t0 {
                advanced = true;
                break;
            }
        }
        std::hint::black_box(x);
        assert!(advanced, "CPU time advances");
        assert!(thread_cpu_ns("no-such-thread-prefix") == 0);
    }
}
