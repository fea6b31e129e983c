//! Where a measurement ran: the machine, for reports (when: [`crate::utc`]).

use serde::Serialize;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model name (from /proc/cpuinfo where there is one).
    pub cpu: String,
    /// Logical CPUs this process may use.
    pub logical_cpus: usize,
    /// Operating system.
    pub os: String,
    /// CPU architecture.
    pub arch: String,
    /// The 1-minute load average when the run started (other work competing for the
    /// CPUs; `None` where the system does not say).
    pub load_average: Option<f64>,
    /// The CPU code llama.cpp runs (the CPU backend variant it loaded, e.g. `icelake`).
    pub cpu_code: String,
}

impl Machine {
    /// Describes the running machine.
    pub fn current() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
            cpu_code: uniskip_engine::cpu::variant(),
        }
    }

    /// One line: `Intel Xeon (2 logical CPUs, linux x86_64, CPU code icelake, load 0.3)`.
    pub fn summary(&self) -> String {
        let load = self
            .load_average
            .map_or(String::new(), |l| format!(", load {l:.1}"));
        format!(
            "{} ({} logical CPUs, {} {}, CPU code {}{load})",
            self.cpu, self.logical_cpus, self.os, self.arch, self.cpu_code
        )
    }
}

/// CPU time this process has used so far (user + system, all threads), in seconds, where
/// the system says (Linux). Next to the wall time it tells a slow machine from a busy one.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in USER_HZ ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = process_cpu_seconds() else {
            return; // not Linux
        };
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = process_cpu_seconds().unwrap();
        assert!(after > before, "{before} -> {after}");
    }

    #[test]
    fn the_machine_is_described() {
        let m = Machine::current();
        assert!(m.logical_cpus >= 1);
        assert!(m.summary().contains("logical CPUs"));
    }
}
