//! The exported C functions and the preload constructor: pointer handling
//! only, everything else is in the safe functions of the crate root.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};

use crate::code;

/// Borrow a C string as UTF-8; `None` for NULL or invalid UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the
/// returned borrow.
unsafe fn str_arg<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// See `crashmon.h`.
///
/// # Safety
/// `database` is NULL or a valid NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_init(database: *const c_char) -> i32 {
    if database.is_null() {
        return crate::init(None);
    }
    // SAFETY: non-NULL, and the caller promises a C string.
    match unsafe { str_arg(database) } {
        Some(db) => crate::init(Some(db)),
        None => crate::fail(code::INVALID, "database is not UTF-8"),
    }
}

/// See `crashmon.h`.
///
/// # Safety
/// `key` and `value` are valid NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_annotate(key: *const c_char, value: *const c_char) -> i32 {
    // SAFETY: the caller promises C strings (or NULL, which we refuse).
    match unsafe { (str_arg(key), str_arg(value)) } {
        (Some(k), Some(v)) => crate::annotate(k, v),
        _ => crate::fail(code::INVALID, "key and value must be non-NULL UTF-8 strings"),
    }
}

/// See `crashmon.h`.
///
/// # Safety
/// `reason` is a valid NUL-terminated string; `report_id` is NULL or points
/// to at least 37 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn crashmon_request_dump(reason: *const c_char, report_id: *mut c_char) -> i32 {
    // SAFETY: the caller promises a C string (or NULL, which we refuse).
    let Some(reason) = (unsafe { str_arg(reason) }) else {
        return crate::fail(code::INVALID, "reason must be a non-NULL UTF-8 string");
    };
    match crate::request_dump(reason) {
        Ok(id) => {
            if !report_id.is_null() {
                let bytes = id.as_bytes();
                let n = bytes.len().min(36);
                // SAFETY: the caller provides 37 bytes; we write n <= 36 and
                // a NUL.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), report_id, n);
                    *report_id.add(n) = 0;
                }
            }
            code::OK
        }
        Err(rc) => rc,
    }
}

/// See `crashmon.h`.
#[unsafe(no_mangle)]
pub extern "C" fn crashmon_shutdown() {
    crate::shutdown();
}

/// See `crashmon.h`.
#[unsafe(no_mangle)]
pub extern "C" fn crashmon_last_error() -> *const c_char {
    // The CString lives in a thread-local until the next call on this
    // thread, as the header documents.
    crate::LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs when the library is loaded (`LD_PRELOAD` by `crashmon run`).
extern "C" fn preload_constructor() {
    if std::env::var_os(crate::PRELOAD_ENV).is_none_or(|v| v != "1") {
        return;
    }
    // SAFETY: a library constructor runs before the program's main, while
    // the process has a single thread: nothing reads the environment
    // concurrently.
    unsafe { std::env::remove_var(crate::PRELOAD_ENV) };
    crate::preload();
}

/// Registers [`preload_constructor`] to run at load time.
#[used]
// SAFETY: .init_array holds pointers to functions the loader calls with no
// arguments; ours has that signature.
#[unsafe(link_section = ".init_array")]
static PRELOAD: extern "C" fn() = preload_constructor;
