//! click-style prompts on stdin/stdout. When stdin is not a terminal a line is still read,
//! so answers can be piped in; end of input aborts (`Aborted!`, exit 1) as click does.

use std::io::{BufRead, Write};

/// End of input while a prompt waited for an answer.
#[derive(Debug, thiserror::Error)]
#[error("Aborted!")]
pub struct Aborted;

fn read_line(text: &str) -> Result<String, Aborted> {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            let _ = writeln!(out);
            Err(Aborted)
        }
        Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// `click.prompt(text, default=default)`: `text [default]: `; empty answer = default.
///
/// # Errors
/// [`Aborted`] on end of input.
pub fn prompt(text: &str, default: Option<&str>) -> Result<String, Aborted> {
    let shown = match default {
        Some(d) => format!("{text} [{d}]: "),
        None => format!("{text}: "),
    };
    loop {
        let answer = read_line(&shown)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// `click.confirm(text)`: `text [y/N]: `, default no.
///
/// # Errors
/// [`Aborted`] on end of input.
pub fn confirm(text: &str) -> Result<bool, Aborted> {
    loop {
        let answer = read_line(&format!("{text} [y/N]: "))?;
        match answer.trim().to_lowercase().as_str() {
            "y" | "yes" => return Ok(true),
            "" | "n" | "no" => return Ok(false),
            _ => println!("Error: invalid input"),
        }
    }
}
