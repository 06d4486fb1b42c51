//! How the binaries print configuration problems on stderr: one problem per line, each with
//! the YAML path (or environment variable) it is about.

use std::io::Write;

use patroni_config::Problem;

/// Writes `problems` under a header naming the program, one per line.
pub fn write_problems(
    out: &mut impl Write,
    program: &str,
    problems: &[Problem],
) -> std::io::Result<()> {
    let count = problems.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    writeln!(out, "{program}: invalid configuration, {count} {noun}:")?;
    for problem in problems {
        writeln!(out, "{problem}")?;
    }
    Ok(())
}

/// Writes each warning on its own line, prefixed with `<program>: warning: `.
pub fn write_warnings(
    out: &mut impl Write,
    program: &str,
    warnings: &[Problem],
) -> std::io::Result<()> {
    for warning in warnings {
        writeln!(out, "{program}: warning: {warning}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Problems print one per line under a counted header.
    #[test]
    fn prints_one_problem_per_line() {
        let mut out = Vec::new();
        let problems = [Problem::new("a.b", "bad"), Problem::new("", "worse")];
        write_problems(&mut out, "patroni", &problems).expect("write to memory");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "patroni: invalid configuration, 2 problems:\na.b: bad\nworse\n"
        );
    }
}
