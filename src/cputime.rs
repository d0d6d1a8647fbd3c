//! Per-thread CPU time, for the benchmarks' accounting and for the threads the agent starts
//! (the prober's, the fake runtime's): `pthread_getcpuclockid` and `clock_gettime`.

use std::time::Duration;

/// The CPU-time clock of a thread we still hold the handle of.
pub fn thread_cpu_clock<T>(thread: &std::thread::JoinHandle<T>) -> Option<libc::clockid_t> {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: the pthread_t comes from a JoinHandle we hold, so the thread is not yet joined
    // and the handle is valid; `clock` is a valid out-pointer.
    let rc = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    (rc == 0).then_some(clock)
}

/// CPU time (user + system) consumed so far on a CPU-time clock.
pub fn clock_cpu_time(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; an invalid clock only makes the call fail.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time consumed so far by the calling thread.
pub fn current_thread_cpu_time() -> Duration {
    clock_cpu_time(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_is_charged_and_an_idle_one_is_not() {
        // The spinner runs until it has used 30 ms of CPU by its own clock, however busy the
        // machine, then waits; the clock read from outside must show at least that.
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let spin = std::thread::spawn(move || {
            let mut x = 0u64;
            while current_thread_cpu_time() < Duration::from_millis(30) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            ready_tx.send(()).unwrap();
            let _ = wait.recv();
        });
        let (go2, wait2) = std::sync::mpsc::channel::<()>();
        let idle = std::thread::spawn(move || {
            let _ = wait2.recv();
        });
        ready.recv().unwrap();
        let spun = clock_cpu_time(thread_cpu_clock(&spin).unwrap()).unwrap();
        let idled = clock_cpu_time(thread_cpu_clock(&idle).unwrap()).unwrap();
        go.send(()).unwrap();
        go2.send(()).unwrap();
        spin.join().unwrap();
        idle.join().unwrap();
        assert!(
            spun >= Duration::from_millis(30),
            "spinning thread: {spun:?}"
        );
        assert!(idled < Duration::from_millis(20), "idle thread: {idled:?}");
    }
}
