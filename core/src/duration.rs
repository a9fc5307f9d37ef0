//! The one duration grammar of Custody, for policy `within` and every CLI
//! flag that takes a time (`--ttl`, `--age`, `--backdate`): one or more
//! `<digits><unit>` with units `d`, `h`, `m`, `s`, each at most once and in
//! that order (`30s`, `10m`, `1h30m`, `2d`). Values are whole seconds.

/// Parses a duration; returns seconds.
pub fn parse(text: &str) -> Result<u64, String> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let bad = || format!("bad duration {text:?}: use e.g. 30s, 10m, 1h, 1h30m, 2d");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS: units must come in order, once each
    let mut digits = 0; // digits of the current number (bounds the parse below)
    let mut n: u64 = 0;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            digits += 1;
            n = n
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
                .ok_or_else(bad)?;
            continue;
        }
        let pos = UNITS
            .get(next_unit..)
            .unwrap_or_default()
            .iter()
            .position(|(u, _)| *u == c)
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let (_, secs) = UNITS.get(next_unit + pos).copied().ok_or_else(bad)?;
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        next_unit += pos + 1;
        digits = 0;
        n = 0;
    }
    if digits != 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats seconds in the same grammar: `1h30m`, `45s`, `2d3h`, `0s`.
pub fn format(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn parses_the_grammar() {
        assert_eq!(parse("30s"), Ok(30));
        assert_eq!(parse("10m"), Ok(600));
        assert_eq!(parse("1h"), Ok(3600));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse("1h30m15s"), Ok(5415));
        assert_eq!(parse("2h0m5s"), Ok(7205));
        assert_eq!(parse("1d"), Ok(86_400));
        assert_eq!(parse("2d"), Ok(172_800));
        assert_eq!(parse("90s"), Ok(90));
        assert_eq!(parse("0s"), Ok(0));
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
            "1w",
            "1H",
            "１s",
            "99999999999999999999s",
            "999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse("1x").unwrap_err().contains("\"1x\""));
    }

    #[test]
    fn formats_what_it_parses() {
        for s in [0, 1, 59, 60, 61, 3600, 5400, 86_400, 90_061, 30 * 86_400] {
            assert_eq!(parse(&format(s)), Ok(s), "{s}");
        }
        assert_eq!(format(5400), "1h30m");
        assert_eq!(format(90_061), "1d1h1m1s");
        assert_eq!(format(86_400), "1d");
    }
}
