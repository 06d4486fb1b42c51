//! What the fence reads from `/proc`: a process's start time (so a recycled pid is never
//! killed), its children, and the other fence processes of a data directory.

use std::path::Path;

/// `/proc/PID/stat`'s start time (field 22, clock ticks since boot); `None` when the process
/// is gone or the file cannot be read.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(18)?.parse().ok())
}

/// The parent pid of `pid` (field 4).
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid).and_then(|f| f.first()?.parse().ok())
}

/// The fields of `/proc/PID/stat` after the state (field 4 onwards: field N at index N − 4);
/// the command name before them may itself hold spaces and parentheses.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().skip(1).map(String::from).collect())
}

/// Every running pid.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The direct children of `pid` (a postmaster's are all its server processes).
pub fn children(pid: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|p| parent(*p) == Some(pid))
        .collect()
}

/// Fence processes for `data_dir` other than `except`: their command line is
/// `… --lease-fence DATA_DIR`.
pub fn fences_of(data_dir: &Path, except: Option<u32>) -> Vec<u32> {
    let me = std::process::id();
    pids()
        .into_iter()
        .filter(|p| *p != me && Some(*p) != except)
        .filter(|p| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{p}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2).any(|w| {
                w[0] == super::GUARD_FLAG.as_bytes()
                    && w[1] == data_dir.as_os_str().as_encoded_bytes()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_children() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        assert!(children(me).contains(&child.id()));
        assert_eq!(parent(child.id()), Some(me));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(start_time(child.id()), None);
    }
}
