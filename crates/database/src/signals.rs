//! Names of Linux signals and `si_code` values, for human-readable metadata.

use nix::libc;
use nix::sys::signal::Signal;

/// The name of signal `signo`, e.g. `"SIGSEGV"`; `None` for real-time or
/// unknown signals.
pub fn signal_name(signo: i32) -> Option<&'static str> {
    Signal::try_from(signo).ok().map(Signal::as_str)
}

/// The name of `si_code` `code` for signal `signo`, e.g. `"SEGV_MAPERR"`.
///
/// Positive codes (other than `SI_KERNEL`) are specific to the signal; zero,
/// `SI_KERNEL` and negative codes mean the same for every signal (who sent it).
pub fn signal_code_name(signo: i32, code: i32) -> Option<&'static str> {
    let generic = match code {
        0 => Some("SI_USER"),
        0x80 => Some("SI_KERNEL"),
        -1 => Some("SI_QUEUE"),
        -2 => Some("SI_TIMER"),
        -3 => Some("SI_MESGQ"),
        -4 => Some("SI_ASYNCIO"),
        -5 => Some("SI_SIGIO"),
        -6 => Some("SI_TKILL"),
        -7 => Some("SI_DETHREAD"),
        _ => None,
    };
    if generic.is_some() {
        return generic;
    }
    let names: &[&'static str] = match signo {
        libc::SIGILL => &[
            "ILL_ILLOPC",
            "ILL_ILLOPN",
            "ILL_ILLADR",
            "ILL_ILLTRP",
            "ILL_PRVOPC",
            "ILL_PRVREG",
            "ILL_COPROC",
            "ILL_BADSTK",
        ],
        libc::SIGFPE => &[
            "FPE_INTDIV",
            "FPE_INTOVF",
            "FPE_FLTDIV",
            "FPE_FLTOVF",
            "FPE_FLTUND",
            "FPE_FLTRES",
            "FPE_FLTINV",
            "FPE_FLTSUB",
        ],
        libc::SIGSEGV => &["SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR"],
        libc::SIGBUS => &["BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO"],
        libc::SIGTRAP => &["TRAP_BRKPT", "TRAP_TRACE", "TRAP_BRANCH", "TRAP_HWBKPT"],
        libc::SIGSYS => &["SYS_SECCOMP"],
        _ => &[],
    };
    // Signal-specific codes start at 1.
    let index = usize::try_from(code).ok()?.checked_sub(1)?;
    names.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(signal_name(libc::SIGSEGV), Some("SIGSEGV"));
        assert_eq!(signal_name(libc::SIGABRT), Some("SIGABRT"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_name(libc::SIGRTMIN() + 1), None);

        assert_eq!(signal_code_name(libc::SIGSEGV, 1), Some("SEGV_MAPERR"));
        assert_eq!(signal_code_name(libc::SIGSEGV, 4), Some("SEGV_PKUERR"));
        assert_eq!(signal_code_name(libc::SIGSEGV, 5), None);
        assert_eq!(signal_code_name(libc::SIGBUS, 2), Some("BUS_ADRERR"));
        assert_eq!(signal_code_name(libc::SIGFPE, 1), Some("FPE_INTDIV"));
        assert_eq!(signal_code_name(libc::SIGFPE, 8), Some("FPE_FLTSUB"));
        assert_eq!(signal_code_name(libc::SIGILL, 8), Some("ILL_BADSTK"));
        assert_eq!(signal_code_name(libc::SIGTRAP, 2), Some("TRAP_TRACE"));
        assert_eq!(signal_code_name(libc::SIGSYS, 1), Some("SYS_SECCOMP"));
        assert_eq!(signal_code_name(libc::SIGABRT, 1), None);
        assert_eq!(signal_code_name(libc::SIGABRT, -6), Some("SI_TKILL"));
        assert_eq!(signal_code_name(libc::SIGSEGV, 0x80), Some("SI_KERNEL"));
        assert_eq!(signal_code_name(libc::SIGKILL, 0), Some("SI_USER"));
        assert_eq!(signal_code_name(libc::SIGUSR1, -1), Some("SI_QUEUE"));
        assert_eq!(signal_code_name(libc::SIGUSR1, -100), None);
    }
}
