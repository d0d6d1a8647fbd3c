//! `pause`: the infrastructure container of every pod sandbox.
//!
//! It holds the pod's namespaces open for the pod's lifetime. As PID 1 of the pod's PID namespace
//! it reaps orphaned zombies (SIGCHLD), and it exits 0 on SIGINT or SIGTERM so that StopPodSandbox
//! is quick. It is built as a static binary by `scripts/runtime` and packed into
//! `127.0.0.1:5000/kubelet-rs/pause:<version>`.

use std::ffi::c_int;

extern "C" fn on_terminate(_sig: c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

extern "C" fn on_child(_sig: c_int) {
    // Reap every exited child without blocking; waitpid is async-signal-safe.
    loop {
        // SAFETY: plain syscall with a null status pointer.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn install(sig: c_int, handler: extern "C" fn(c_int)) -> std::io::Result<()> {
    // SAFETY: sigaction is zero-initialisable; the handler only calls async-signal-safe functions.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("-v") {
        println!(
            "pause.c-compatible kubelet-rs pause {}",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!("Warning: pause should be the first process");
    }
    for (sig, handler) in [
        (libc::SIGINT, on_terminate as extern "C" fn(c_int)),
        (libc::SIGTERM, on_terminate),
        (libc::SIGCHLD, on_child),
    ] {
        if let Err(e) = install(sig, handler) {
            eprintln!("pause: cannot install handler for signal {sig}: {e}");
            std::process::exit(1);
        }
    }
    loop {
        // SAFETY: pause blocks until a signal handler runs.
        unsafe { libc::pause() };
    }
}
