//! tshark's dissection of a pcap file, as field values.

use std::path::Path;
use std::process::Command;

/// Whether `tshark` runs here.
pub fn available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tshark -n -r FILE [-Y FILTER] -T fields -e F...`: one row per packet,
/// one column per field; a column holds the field's occurrences separated
/// by commas (`occurrence=a`, `aggregator=,`). Panics, with tshark's
/// stderr, if tshark fails.
pub fn fields(path: &Path, filter: Option<&str>, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(path);
    if let Some(f) = filter {
        cmd.args(["-Y", f]);
    }
    cmd.args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = crate::run_command(&mut cmd);
    out.lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The numbers of one column (decimal or `0x` hexadecimal, separated by
/// commas; empty occurrences left out). Panics on anything else.
pub fn numbers(column: &str) -> Vec<u64> {
    column
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|v| {
            match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|e| panic!("tshark value {v:?} is not a number: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_or_hex() {
        assert_eq!(numbers("1,0x10,,3"), vec![1, 16, 3]);
        assert!(numbers("").is_empty());
    }
}
