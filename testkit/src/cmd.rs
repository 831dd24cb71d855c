//! Commands with errors that say what failed.

use std::process::{Command, Output};

/// A command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not start `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; its stdout if it exits 0.
pub fn try_run_command(cmd: &mut Command) -> Result<String, Error> {
    let out: Output = cmd.output().map_err(|source| Error::Spawn {
        cmd: describe(cmd),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Failed {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// [`try_run_command`], panicking with the error.
pub fn run_command(cmd: &mut Command) -> String {
    try_run_command(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `args[0]` with the rest as arguments; its stdout.
pub fn try_run(args: &[&str]) -> Result<String, Error> {
    let (program, rest) = args.split_first().ok_or_else(|| Error::Spawn {
        cmd: String::new(),
        source: std::io::Error::other("empty command line"),
    })?;
    try_run_command(Command::new(program).args(rest))
}

/// [`try_run`], panicking with the error.
pub fn run(args: &[&str]) -> String {
    try_run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip ARGS...`; its stdout.
pub fn try_ip(args: &[&str]) -> Result<String, Error> {
    try_run_command(Command::new("ip").args(args))
}

/// [`try_ip`], panicking with the error.
pub fn ip(args: &[&str]) -> String {
    try_ip(args).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_command_and_its_stderr() {
        assert_eq!(run(&["sh", "-c", "echo hi"]), "hi\n");
        let e = try_run(&["sh", "-c", "echo oops >&2; exit 3"]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("sh -c echo oops >&2; exit 3"), "{msg}");
        assert!(msg.contains("oops") && msg.contains('3'), "{msg}");
        let e = try_run(&["no-such-command-clt"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("could not start `no-such-command-clt`")
        );
        assert!(try_run(&[]).is_err());
    }
}
