//! Alternate signal stacks (`sigaltstack`), so a stack overflow can still
//! be handled. Normal context only (install, thread start, thread exit).
#![allow(unsafe_code)]

use core::ptr;

use libc::c_void;

use crate::ALT_STACK_SIZE;

/// An alternate signal stack this crate mapped for the calling thread: a
/// guard page below [`ALT_STACK_SIZE`] bytes of stack. Dropping it (on the
/// same thread) disables it, if it is still the thread's, and unmaps it.
#[derive(Debug)]
pub struct AltStack {
    mem: *mut c_void,
    len: usize,
}

impl AltStack {
    /// Give the calling thread an alternate signal stack unless it already
    /// has one of at least [`ALT_STACK_SIZE`] bytes (then `Ok(None)`).
    /// Errors are errno values.
    pub fn install() -> Result<Option<AltStack>, i32> {
        // SAFETY: sigaltstack/mmap/mprotect with valid pointers.
        unsafe {
            let mut current: libc::stack_t = core::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) == 0
                && current.ss_flags & libc::SS_DISABLE == 0
                && current.ss_size >= ALT_STACK_SIZE
            {
                return Ok(None);
            }
            let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize;
            let len = ALT_STACK_SIZE + page;
            let mem = libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            );
            if mem == libc::MAP_FAILED {
                return Err(crate::sys::errno());
            }
            // Guard page at the low end: an overflow of the handler itself
            // faults instead of scribbling over other memory.
            libc::mprotect(mem, page, libc::PROT_NONE);
            let stack =
                libc::stack_t { ss_sp: mem.cast::<u8>().add(page).cast(), ss_flags: 0, ss_size: ALT_STACK_SIZE };
            if libc::sigaltstack(&stack, ptr::null_mut()) != 0 {
                let errno = crate::sys::errno();
                libc::munmap(mem, len);
                return Err(errno);
            }
            Ok(Some(AltStack { mem, len }))
        }
    }
}

/// Make sure the calling thread has an alternate signal stack of at least
/// [`ALT_STACK_SIZE`]; a stack mapped here is kept for ever (for the main
/// thread). Errors are errno values.
pub fn ensure_alt_stack() -> Result<(), i32> {
    if let Some(stack) = AltStack::install()? {
        core::mem::forget(stack);
    }
    Ok(())
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: sigaltstack with valid pointers; the mapping is ours and
        // no longer the thread's signal stack when it is unmapped.
        unsafe {
            let mut current: libc::stack_t = core::mem::zeroed();
            if libc::sigaltstack(ptr::null(), &mut current) == 0 {
                let ours = current.ss_sp.cast::<u8>() >= self.mem.cast::<u8>()
                    && current.ss_sp.cast::<u8>() < self.mem.cast::<u8>().add(self.len);
                if ours {
                    if current.ss_flags & libc::SS_ONSTACK != 0 {
                        // Running on it (cannot happen outside a handler):
                        // leak rather than pull the stack from under us.
                        return;
                    }
                    let disable = libc::stack_t { ss_sp: ptr::null_mut(), ss_flags: libc::SS_DISABLE, ss_size: 0 };
                    libc::sigaltstack(&disable, ptr::null_mut());
                }
            }
            libc::munmap(self.mem, self.len);
        }
    }
}
