//! Ctrl-C during `--via batch` on a terminal: ask whether the provider's batches are cancelled
//! or left running (`--on-interrupt` answers for scripts and when no terminal is there).
//!
//! It asks and reads one answer; it must not know the batches or how they are cancelled.

use crate::offline::OnInterrupt;
use std::io::{BufRead, IsTerminal, Write};

/// Whether someone can answer: stdin and stderr are both a terminal.
pub(crate) fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Ask on stderr and read the answer from stdin (blocking): "c" or "cancel" cancels, anything
/// else (an empty line, end of input) leaves them.
pub(crate) fn ask() -> OnInterrupt {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\npaceline: stop: cancel the provider's batches (c), or leave them running for the same \
         command to collect (L)? "
    );
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return OnInterrupt::Leave;
    }
    parse(&answer)
}

fn parse(answer: &str) -> OnInterrupt {
    match answer.trim().to_ascii_lowercase().as_str() {
        "c" | "cancel" => OnInterrupt::Cancel,
        _ => OnInterrupt::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_clear_cancel_cancels() {
        assert_eq!(parse("c\n"), OnInterrupt::Cancel);
        assert_eq!(parse(" Cancel "), OnInterrupt::Cancel);
        assert_eq!(parse("\n"), OnInterrupt::Leave);
        assert_eq!(parse("l"), OnInterrupt::Leave);
        assert_eq!(parse("yes"), OnInterrupt::Leave);
    }
}
