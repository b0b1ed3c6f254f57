//! CPU-seconds as the benchmarks count them (shared by `render` and `piper`).

/// CPU-seconds used so far by this process and by every child it has waited for.
pub fn cpu_seconds() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    });
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, so utime, stime, cutime, cstime (14–17) are at 11..15 here.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap())
        .collect();
    fields.iter().sum::<f64>() / ticks
}
