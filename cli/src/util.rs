//! Small helpers shared by the commands: durations,
//! UTC times, files (secret files with mode 0600), randomness.

use crate::fail::{error, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Durations in Custody's one grammar (`30s`, `1h30m`, `2d`), shared with
/// policy `within`.
pub use custody_core::duration::{format as format_duration, parse as parse_duration};

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn format_utc(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

pub fn unix_now() -> Result<u64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| error("the system clock is before 1970"))
}

/// `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| error(format!("no randomness available: {e}")))?;
    Ok(buf)
}

/// The text (UTF-8) of `path`, or of standard input for `-`.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes_or_stdin(path)?)
        .map_err(|_| error(format!("{}: not UTF-8 text", shown(path))))
}

/// Whether standard input was already read by an earlier `-` of this command.
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// The bytes of `path`, or of standard input for `-`. Every flag that reads
/// a file takes `-`; standard input can be read once, so a second `-` in one
/// command is an error rather than an empty file.
pub fn read_bytes_or_stdin(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        if STDIN_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(error(
                "standard input was already read: give `-` to one flag only",
            ));
        }
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| error(format!("standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// How a path is named in messages (`-` is standard input).
pub fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

pub fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// Writes a secret (a private key): created with mode 0600, so it is never
/// readable by others even for an instant. An existing file is replaced.
pub fn write_secret(path: &Path, text: &str) -> Result<()> {
    let fail = |e: std::io::Error| error(format!("{}: {e}", path.display()));
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// Writes to standard output; a closed pipe is an error, not a panic.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| error(format!("standard output: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00Z");
        // The known-answer vector's entry 0 iat (docs/history-format.md §10).
        assert_eq!(format_utc(1_776_521_900), "2026-04-18 14:18:20Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31 23:59:59Z");
    }

    #[test]
    fn secrets_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "old").unwrap();
        write_secret(&p, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn randomness() {
        let a = random_bytes(16).unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_bytes(16).unwrap());
    }
}
