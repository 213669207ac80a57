//! The WASI a plugin's libc asks for, answered inside the plugin: the component imports no WASI.
//!
//! Rust's std for `wasm32-wasip2` links a few WASI functions through wasi-libc even when a
//! plugin never does I/O: stdio and terminal handles (the panic message goes to stderr), the
//! environment (the panic hook reads `RUST_BACKTRACE`) and `exit`. Each import the component
//! keeps costs every call: the runtime instantiates a plugin afresh per call, and every lowered
//! import is a trampoline to look up and wire at instantiation
//! (docs/decisions/0008-plugin-imports-no-wasi.md). The libc reaches those imports through
//! undefined symbols (`__wasm_import_*`, from its generated WASI bindings); the linker resolves
//! a symbol to a definition when one exists, so defining them here, in the SDK every plugin
//! links, removes the imports. That is what `memcmp.rs` does for `memcmp`.
//!
//! The answers grant nothing, as the runtime's sandbox would: an empty environment, no
//! terminals, `exit` traps. What the plugin writes to stdout or stderr goes, line by line, to
//! the controller's log through the plugin's own `log` import (stdout at info, stderr at error),
//! so a panic message still reaches the runtime, which uses it to explain the trap.
//!
//! If a toolchain's libc renames these symbols, the definitions go unused and the component
//! imports WASI again: plugins still work (the runtime links a WASI that grants nothing), only
//! slower. `host/runtime/tests/plugin_imports.rs` checks the built-in plugins import no WASI.
//!
//! Each function mirrors one WASI 0.2 function in the canonical ABI: results that do not fit
//! in a return value are written to a return area the caller passes (`ret`). A `result` or
//! `option` starts with its case byte (0: `ok` / `none`).

use std::sync::Mutex;

use crate::log::{log, Level};

/// Handles this module gives out. Resource handles are opaque to the libc; any non-zero value
/// works, distinct ones keep stdout and stderr apart.
const STDIN: i32 = 1;
const STDOUT: i32 = 2;
const STDERR: i32 = 3;
const POLLABLE: i32 = 4;

/// How much a single write may pass (`check-write`'s answer): the libc loops for larger writes.
const WRITE_BUDGET: u64 = 1 << 16;

/// Output not yet ended by a newline, per stream (stdout, stderr).
static PENDING: Mutex<[Vec<u8>; 2]> = Mutex::new([Vec::new(), Vec::new()]);

/// Sends each complete line of `bytes` to the log; keeps an unfinished line for the next write.
fn forward(stream: i32, bytes: &[u8]) {
    let (slot, level) = match stream {
        STDOUT => (0, Level::Info),
        STDERR => (1, Level::Error),
        _ => return,
    };
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    let buffer = &mut pending[slot];
    buffer.extend_from_slice(bytes);
    while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buffer.drain(..=end).collect();
        let text = String::from_utf8_lossy(&line[..end]);
        log(level, text.trim_end_matches('\r'));
    }
}

/// # Safety
///
/// `ret` must be a return area the caller provides, of at least `len` bytes.
unsafe fn write_case(ret: *mut u8, case: u8) {
    // SAFETY: the caller passes a return area; its first byte is the case.
    unsafe { ret.write(case) }
}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_io_error_error_drop(_: i32) {}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_poll_pollable_drop(_: i32) {}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_streams_input_stream_drop(_: i32) {}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_streams_output_stream_drop(_: i32) {}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_terminal_input_terminal_input_drop(_: i32) {}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_terminal_output_terminal_output_drop(_: i32) {}

/// `get-environment: func() -> list<tuple<string, string>>`: empty (a null pointer and length
/// zero; the libc frees nothing of an empty list).
///
/// # Safety
///
/// `ret` is the caller's return area for a list (pointer and length, 8 bytes).
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_environment_get_environment(ret: *mut u32) {
    // SAFETY: a list's return area holds two u32s.
    unsafe {
        ret.write(0);
        ret.add(1).write(0);
    }
}

/// `exit: func(status: result)`: a plugin cannot end the controller's process; the call traps.
#[unsafe(no_mangle)]
extern "C" fn __wasm_import_exit_exit(_: i32) -> ! {
    core::arch::wasm32::unreachable()
}

/// `pollable.block`: writes never wait, so there is nothing to wait for.
#[unsafe(no_mangle)]
extern "C" fn __wasm_import_poll_method_pollable_block(_: i32) {}

/// `output-stream.check-write: func() -> result<u64, stream-error>`.
///
/// # Safety
///
/// `ret` is the caller's return area for that result (16 bytes, the u64 at offset 8).
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_streams_method_output_stream_check_write(_: i32, ret: *mut u8) {
    // SAFETY: see above.
    unsafe {
        write_case(ret, 0);
        ret.add(8).cast::<u64>().write(WRITE_BUDGET);
    }
}

/// `output-stream.write: func(contents: list<u8>) -> result<_, stream-error>`.
///
/// # Safety
///
/// `ptr` and `len` are the list the caller passes; `ret` the return area for the result.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_streams_method_output_stream_write(
    stream: i32,
    ptr: *const u8,
    len: usize,
    ret: *mut u8,
) {
    // SAFETY: the caller passes a valid list of `len` bytes (an empty one may be dangling).
    let bytes = if len == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, len) }
    };
    forward(stream, bytes);
    // SAFETY: see above.
    unsafe { write_case(ret, 0) }
}

/// `output-stream.blocking-flush: func() -> result<_, stream-error>`: lines go out as they end.
///
/// # Safety
///
/// `ret` is the caller's return area for the result.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_streams_method_output_stream_blocking_flush(
    _: i32,
    ret: *mut u8,
) {
    // SAFETY: see above.
    unsafe { write_case(ret, 0) }
}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_streams_method_output_stream_subscribe(_: i32) -> i32 {
    POLLABLE
}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_stdin_get_stdin() -> i32 {
    STDIN
}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_stdout_get_stdout() -> i32 {
    STDOUT
}

#[unsafe(no_mangle)]
extern "C" fn __wasm_import_stderr_get_stderr() -> i32 {
    STDERR
}

/// `get-terminal-stdin: func() -> option<terminal-input>`: none, as for the two below.
///
/// # Safety
///
/// `ret` is the caller's return area for the option.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_terminal_stdin_get_terminal_stdin(ret: *mut u8) {
    // SAFETY: see above.
    unsafe { write_case(ret, 0) }
}

/// # Safety
///
/// `ret` is the caller's return area for the option.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_terminal_stdout_get_terminal_stdout(ret: *mut u8) {
    // SAFETY: see above.
    unsafe { write_case(ret, 0) }
}

/// # Safety
///
/// `ret` is the caller's return area for the option.
#[unsafe(no_mangle)]
unsafe extern "C" fn __wasm_import_terminal_stderr_get_terminal_stderr(ret: *mut u8) {
    // SAFETY: see above.
    unsafe { write_case(ret, 0) }
}
