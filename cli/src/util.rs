//! Small helpers shared by the `ca` and `history` commands: durations,
//! UTC times, files (secret files with mode 0600), randomness.

use crate::fail::{error, Result};
use std::io::{Read, Write};
use std::path::Path;

/// Parses a duration like `30s`, `10m`, `1h`, `1h30m`, `2d`: one or more
/// `<digits><unit>` with units `d`, `h`, `m`, `s`, each at most once and in
/// that order. Returns seconds.
pub fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let bad = || format!("bad duration {text:?}: use e.g. 30s, 10m, 1h, 1h30m, 2d");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS: units must come in order, once each
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == c)
            .ok_or_else(bad)?;
        if digits.is_empty() {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let (_, secs) = UNITS[next_unit + pos];
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        next_unit += pos + 1;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Formats seconds as `1h30m`, `45s`, `2d3h`, `0s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

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

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// The bytes of `path`, or of standard input for `-`.
pub fn read_bytes_or_stdin(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| error(format!("standard input: {e}")))?;
        return Ok(buf);
    }
    std::fs::read(path).map_err(|e| error(format!("{}: {e}", path.display())))
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
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1h30m15s"), Ok(5415));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("0s"), Ok(0));
        for bad in [
            "",
            "10",
            "h",
            "1x",
            "1h1h",
            "30m1h",
            "1 h",
            "-1s",
            "1.5h",
            "s30",
            "1h30",
            "99999999999999999999s",
            "999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_duration("1x").unwrap_err().contains("\"1x\""));
    }

    #[test]
    fn duration_round_trip() {
        for s in [0, 1, 59, 60, 61, 3600, 5400, 86_400, 90_061] {
            assert_eq!(parse_duration(&format_duration(s)), Ok(s), "{s}");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(90_061), "1d1h1m1s");
    }

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
