//! Host functions a policy may call (imported from `keyward:host/v1`).

/// Writes a line to the server's log (and, for `keyward policy test` and the evaluate API, to
/// the caller). The host keeps at most a few short lines per evaluation and drops the rest.
///
/// Natively (in `cargo test`) the line is kept for [`crate::testing::take_logs`] and printed
/// to stderr.
pub fn log(message: &str) {
    imp::log(message)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod imp {
    #[link(wasm_import_module = "keyward:host/v1")]
    unsafe extern "C" {
        #[link_name = "log"]
        fn host_log(ptr: i32, len: i32);
    }

    pub fn log(message: &str) {
        // SAFETY: the host only reads `len` bytes at `ptr`, which `message` owns.
        unsafe { host_log(message.as_ptr() as usize as i32, message.len() as i32) }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;

    thread_local! {
        pub static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    pub fn log(message: &str) {
        eprintln!("policy log: {message}");
        LINES.with(|l| l.borrow_mut().push(message.to_string()));
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn take_native_logs() -> Vec<String> {
    imp::LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
