//! Process figures from `/proc`: CPU seconds (utime + stime) and RSS.

use std::io;

/// `AT_CLKTCK` in the auxiliary vector: the kernel's `sysconf(_SC_CLK_TCK)`.
const AT_CLKTCK: u64 = 17;

/// Clock ticks per second of `/proc/<pid>/stat` times, read from
/// `/proc/self/auxv` (no `unsafe` libc call); 100 (Linux's value) when the
/// vector cannot be read.
pub fn clk_tck() -> u64 {
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        return 100;
    };
    for pair in auxv.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let (Ok(k), Ok(v)) = (<[u8; 8]>::try_from(k), <[u8; 8]>::try_from(v)) else {
            break;
        };
        if u64::from_ne_bytes(k) == AT_CLKTCK {
            let v = u64::from_ne_bytes(v);
            return if v == 0 { 100 } else { v };
        }
    }
    100
}

/// A process id, or `self`.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    This,
    Of(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::This => "/proc/self".to_owned(),
            Self::Of(p) => format!("/proc/{p}"),
        }
    }
}

/// User + system CPU seconds the process has used so far (all threads).
pub fn cpu_secs(pid: Pid, tck: u64) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir()))?;
    // The command name (field 2) may contain spaces and parentheses: the
    // fixed fields start after the last ')'. Field 3 (state) is index 0,
    // utime (14) index 11, stime (15) index 12.
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .ok_or_else(|| bad("no ')' in stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("short stat line"))
    };
    let ticks = num(11)? + num(12)?;
    Ok(ticks as f64 / tck as f64)
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: Pid) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir()))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .map_err(|_| bad("bad VmRSS"))?;
            return Ok(kb * 1024);
        }
    }
    Err(bad("no VmRSS"))
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: Pid) -> io::Result<usize> {
    Ok(std::fs::read_dir(format!("{}/fd", pid.dir()))?.count())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let tck = clk_tck();
        assert!(tck > 0);
        assert!(cpu_secs(Pid::This, tck).unwrap() >= 0.0);
        assert!(rss_bytes(Pid::This).unwrap() > 0);
        assert!(open_fds(Pid::This).unwrap() > 0);
    }
}
